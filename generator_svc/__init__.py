"""GeneratorService: composes a cited answer from retrieved context, offline and deterministic."""
