"""A Lua script run on Redis by its SHA1 (EVALSHA), sent whole (EVAL) only when Redis does
not know it: after a restart, a failover or SCRIPT FLUSH. EVAL also caches the script, so
the next call is an EVALSHA again."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

Arg = str | int | float | bytes


class LuaScript:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, client: Redis, keys: Sequence[str], args: Sequence[Arg]) -> object:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)
