"""Generic resilience layer: pure asyncio + stdlib, no knowledge of RAG or protos.

One pattern per module (import from the module); every pattern reads time through an
injectable `Clock` (and draws randomness from an injectable `random.Random`) so tests are
deterministic.
"""
