"""What every ha-rag service process shares: config, server bootstrap, logging, errors, faults."""
