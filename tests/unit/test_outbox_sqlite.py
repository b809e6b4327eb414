"""The local outbox (SQLite, WAL): what survives a gateway dying between reading and acking,
the lease that keeps delivery to one process, order, dead letters and job counts that a write
delivered twice does not double. A real database file in a temporary directory."""

from __future__ import annotations

from pathlib import Path

from gateway.outbox.sqlite_store import SqliteOutbox
from gateway.outbox.store import REMOVE, REPLACE, Write


async def test_an_entry_taken_but_not_acked_survives_a_restart_and_is_delivered_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = SqliteOutbox(path)
    ids = await first.append(
        "r", [Write(REPLACE, b"upsert", "", 1), Write(REMOVE, b"delete", "", 1)]
    )
    assert await first.lease("r", "gateway-a", ttl_s=0.05)
    taken = await first.take("r", "gateway-a", 10)
    assert taken is not None and [e.payload for e in taken] == [b"upsert", b"delete"]
    await first.close()  # gateway-a dies here: nothing acked

    second = SqliteOutbox(path)
    again = await second.take("r", "gateway-b", 10)
    assert again is not None
    assert [(e.id, e.kind, e.deliveries) for e in again] == [
        (ids[0], REPLACE, 2),
        (ids[1], REMOVE, 2),
    ], "same order, counted as a second delivery"
    assert (await second.counts("r")).backlog == 2
    await second.close()


async def test_the_lease_keeps_a_retriever_to_one_deliverer_until_it_expires(
    tmp_path: Path,
) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite3")
    assert await outbox.lease("r", "a", ttl_s=60)
    assert not await outbox.lease("r", "b", ttl_s=60)
    assert await outbox.lease("r", "a", ttl_s=0.0)  # renewed, and expired at once
    assert await outbox.lease("r", "b", ttl_s=60)
    assert await outbox.lease("other", "a", ttl_s=60), "leases are per retriever"
    await outbox.close()


async def test_acking_twice_counts_a_job_once_and_dead_letters_are_kept(tmp_path: Path) -> None:
    outbox = SqliteOutbox(tmp_path / "outbox.sqlite3")
    await outbox.create_job("j", accepted=5, lease_s=60)
    await outbox.job_progress(
        "j", embedded=5, unchanged=0, failed=0, failures=[], queued={"r": 5}, lease_s=60
    )
    await outbox.append("r", [Write(REPLACE, b"a", "j", 3), Write(REPLACE, b"b", "j", 2)])
    taken = await outbox.take("r", "gw", 10)
    assert taken is not None
    await outbox.ack("r", taken[0], b"reply", indexed=3, refused=0)
    await outbox.ack("r", taken[0], b"reply", indexed=3, refused=0)  # delivered twice
    await outbox.dead_letter("r", taken[1], "refused: INVALID_ARGUMENT")
    job = await outbox.get_job("j")
    assert job is not None and job.alive
    counts = job.retrievers["r"]
    assert (counts.queued, counts.indexed, counts.failed) == (5, 3, 2)
    outcomes = await outbox.outcomes("r", [taken[0].id, taken[1].id])
    assert outcomes[taken[0].id].applied and outcomes[taken[0].id].reply == b"reply"
    assert not outcomes[taken[1].id].applied and "INVALID_ARGUMENT" in outcomes[taken[1].id].reason
    state = await outbox.counts("r")
    assert (state.backlog, state.dead_letters) == (0, 1)
    assert await outbox.take("r", "gw", 10) == []
    await outbox.close()
