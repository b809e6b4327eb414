"""Retriever service: dense (primary) and lexical BM25 (fallback) search over a durable store."""
