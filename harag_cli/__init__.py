"""The `harag` operator CLI: run the mesh, query it, ingest, read health, inject faults."""
