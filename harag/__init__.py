"""ha-rag's Python client: the generated stubs in `harag.v1`, a typed client and the `harag` CLI."""
