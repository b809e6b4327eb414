"""Fixtures of the integration tests besides the shared mesh (tests/conftest.py)."""

from redis_support import redis_server  # noqa: F401 - a fixture: a real redis-server per test
