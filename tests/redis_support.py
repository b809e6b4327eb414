"""A real `redis-server` for tests, on a free port, never the system one on 6379.

`redis_server` (a pytest fixture, import it into a test module) starts one per test with
nothing persisted, waits until it answers PING, and kills it after the test, also when the
test left it frozen. The helpers act on it mid-test: `kill` (SIGKILL), `freeze`
(SIGSTOP), `thaw` (SIGCONT), `restart` (a fresh empty server on the same port); `client()`
is a redis-py asyncio client to look inside.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from harag_cli.redis_server import LocalRedis, RedisServerError, ping


class RedisServer(LocalRedis):
    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Redis:
        return Redis.from_url(self.url, socket_timeout=5)

    def answers(self) -> bool:
        return ping(self.port)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except RedisServerError as exc:
        pytest.fail(str(exc))
    with server:
        yield server


__all__ = ["RedisServer", "redis_server"]
