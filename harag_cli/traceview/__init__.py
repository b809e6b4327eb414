"""A built-in trace viewer: an OTLP/gRPC trace receiver with a JSON query API, and terminal
rendering for `harag traces` / `harag trace <id>`, so traces can be read without Jaeger."""
