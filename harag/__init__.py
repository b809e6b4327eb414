"""ha-rag's Python client library: the generated contract in `harag.v1` and a typed client.

`harag.v1` is a leaf: generated code that imports nothing of the project. The operator
tooling (the `harag` CLI, the local supervisor, the demo and the trace viewer) lives in
`harag_cli`, apart from what a service image or a client application installs.
"""
