"""Replay-store records as a Ray Dataset, for offline training (the paper's phases 2 and 3)."""

from __future__ import annotations

from pathlib import Path

import ray

from actors.replay_store import ReplayStore


def store_dataset(store_dir: str | Path, kind: str | None = None) -> ray.data.Dataset:
    """Every record of the store folder (of `kind`, if given) as a Dataset, in insertion order.

    Reads the store's SQLite file directly (any process may, alongside a running store actor) and
    materialises the records on the driver, which suits stores up to a few hundred thousand groups.
    """
    store = ReplayStore(store_dir)
    try:
        items = list(store.iter_records(kind))
    finally:
        store.close()
    return ray.data.from_items(items)
