"""DocumentStore durability: round-trips, torn log tails, compaction, and its failure modes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retriever_svc import records
from retriever_svc.records import StoredDocument
from retriever_svc.store import SNAPSHOT, SNAPSHOT_TMP, WAL, DocumentStore, StoreError


def doc(doc_id: str, text: str = "", seed: int = 0, **metadata: str) -> StoredDocument:
    rng = np.random.default_rng(seed)
    return StoredDocument(
        doc_id,
        text or f"text of {doc_id} — ünïcode ✓",
        dict(metadata),
        {
            "model-a": rng.standard_normal(8).astype(np.float32),
            "model-b": rng.standard_normal(3).astype(np.float32),
        },
    )


def snapshot_of(store: DocumentStore) -> dict[str, tuple]:
    """Everything a document holds, in a form == can compare (vectors as exact bytes)."""
    return {
        d.id: (d.text, d.metadata, {m: v.tobytes() for m, v in sorted(d.embeddings.items())})
        for d in store.documents.values()
    }


def reopen(store: DocumentStore, snapshot_every: int = 500) -> DocumentStore:
    store.close()
    return DocumentStore(store.directory, snapshot_every)


def test_round_trip_keeps_text_metadata_and_exact_vectors(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path)
    store.upsert([doc("a", seed=1, lang="en"), doc("b", seed=2), doc("c", seed=3, tag="x")])
    store.upsert([doc("b", "replaced", seed=4, lang="fr")])
    assert [d.id for d in store.delete(["a", "missing"])] == ["a"]
    before = snapshot_of(store)

    after = reopen(store)
    assert snapshot_of(after) == before
    assert set(before) == {"b", "c"}
    assert before["b"][0] == "replaced"
    assert after.documents["b"].embeddings["model-a"].dtype == np.float32


def test_delete_of_unknown_ids_writes_nothing(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path)
    assert store.delete(["nope"]) == []
    assert (tmp_path / WAL).stat().st_size == 0


def write_three_records(directory: Path) -> tuple[DocumentStore, list[int]]:
    """Three upserts; returns the store and the log size after each record."""
    store = DocumentStore(directory)
    sizes = []
    for i in range(3):
        store.upsert([doc(f"d{i}", seed=i)])
        sizes.append((directory / WAL).stat().st_size)
    return store, sizes


def test_garbage_after_the_last_record_is_discarded(tmp_path: Path) -> None:
    store, sizes = write_three_records(tmp_path)
    expected = snapshot_of(store)
    store.close()
    garbage = b"\x17\x00\x00\x00garbage that is not a frame"
    with open(tmp_path / WAL, "ab") as wal:
        wal.write(garbage)

    loaded = DocumentStore(tmp_path)
    assert snapshot_of(loaded) == expected
    assert (tmp_path / WAL).stat().st_size == sizes[-1]  # the torn tail was cut off
    [aside] = tmp_path.glob(f"{WAL}.discarded-*")
    assert aside.read_bytes() == garbage


def test_intact_but_unreadable_record_stops_the_load_instead_of_truncating(
    tmp_path: Path,
) -> None:
    store, sizes = write_three_records(tmp_path)
    store.close()
    with open(tmp_path / WAL, "ab") as wal:
        wal.write(records.frame(b"\x01\x05\x00\x00\x00{nope"))

    with pytest.raises(StoreError, match="unreadable record"):
        DocumentStore(tmp_path)
    assert (tmp_path / WAL).stat().st_size > sizes[-1]  # nothing was thrown away


@pytest.mark.parametrize("cut", [1, 4, 7, 9, 20, -1])
def test_record_torn_mid_write_is_dropped_and_earlier_ones_kept(tmp_path: Path, cut: int) -> None:
    store, sizes = write_three_records(tmp_path)
    store.close()
    torn_at = sizes[1] + (cut if cut > 0 else (sizes[2] - sizes[1]) + cut)
    os.truncate(tmp_path / WAL, torn_at)

    loaded = DocumentStore(tmp_path)
    assert sorted(loaded.documents) == ["d0", "d1"]
    # The next append must land after the last good record, not after the torn bytes.
    loaded.upsert([doc("d3", seed=3)])
    assert sorted(reopen(loaded).documents) == ["d0", "d1", "d3"]


def test_record_with_a_flipped_bit_is_rejected(tmp_path: Path) -> None:
    store, sizes = write_three_records(tmp_path)
    store.close()
    with open(tmp_path / WAL, "r+b") as wal:
        wal.seek(sizes[1] + 30)
        byte = wal.read(1)
        wal.seek(sizes[1] + 30)
        wal.write(bytes([byte[0] ^ 0x01]))

    assert sorted(DocumentStore(tmp_path).documents) == ["d0", "d1"]


def test_compaction_writes_a_snapshot_and_empties_the_log(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, snapshot_every=3)
    for i in range(7):
        store.upsert([doc(f"d{i}", seed=i, n=str(i))])
        if i == 4:
            store.delete(["d1", "d3"])
    # 8 records with compaction every 3: two compactions, then 2 records in the log
    assert (tmp_path / SNAPSHOT).exists()
    assert len(list(records.read_frames((tmp_path / WAL).read_bytes()))) == 2
    expected = snapshot_of(store)
    assert sorted(expected) == ["d0", "d2", "d4", "d5", "d6"]

    assert snapshot_of(reopen(store, snapshot_every=3)) == expected


def test_crash_between_snapshot_and_log_reset_replays_harmlessly(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, snapshot_every=1000)
    store.upsert([doc("a", seed=1), doc("b", seed=2)])
    store.delete(["a"])
    store.upsert([doc("a", "a again", seed=3)])
    old_log = (tmp_path / WAL).read_bytes()
    expected = snapshot_of(store)
    store.compact()
    store.close()
    # As if the process died after os.replace(snapshot) but before the log was truncated.
    (tmp_path / WAL).write_bytes(old_log)

    assert snapshot_of(DocumentStore(tmp_path)) == expected


def test_unfinished_snapshot_file_is_ignored_and_removed(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, snapshot_every=1)
    store.upsert([doc("a")])
    store.close()
    (tmp_path / SNAPSHOT_TMP).write_bytes(b"half a snapshot")

    assert sorted(DocumentStore(tmp_path).documents) == ["a"]
    assert not (tmp_path / SNAPSHOT_TMP).exists()


def test_damaged_snapshot_refuses_to_load(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, snapshot_every=1)
    store.upsert([doc("a"), doc("b")])
    store.close()
    data = (tmp_path / SNAPSHOT).read_bytes()
    (tmp_path / SNAPSHOT).write_bytes(data[: len(data) - 5])

    with pytest.raises(StoreError, match="corrupt snapshot"):
        DocumentStore(tmp_path)


def test_a_second_process_cannot_open_the_same_directory(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path)
    with pytest.raises(StoreError, match="in use"):
        DocumentStore(tmp_path)
    store.close()
    DocumentStore(tmp_path).close()


def test_failed_append_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DocumentStore(tmp_path)
    store.upsert([doc("a")])
    size = (tmp_path / WAL).stat().st_size
    real_fdatasync = os.fdatasync
    calls = {"n": 0}

    def fail_first(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fail_first)
    with pytest.raises(StoreError, match="append failed"):
        store.upsert([doc("b")])
    assert "b" not in store.documents
    assert (tmp_path / WAL).stat().st_size == size

    store.upsert([doc("c")])
    assert sorted(reopen(store).documents) == ["a", "c"]


def test_disk_bytes_counts_snapshot_and_log(tmp_path: Path) -> None:
    store = DocumentStore(tmp_path, snapshot_every=2)
    assert store.disk_bytes() == 0
    store.upsert([doc("a")])
    store.upsert([doc("b")])
    store.upsert([doc("c")])
    on_disk = (tmp_path / SNAPSHOT).stat().st_size + (tmp_path / WAL).stat().st_size
    assert store.disk_bytes() == on_disk > 0
