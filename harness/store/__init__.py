"""The results store: one SQLite file of runs, cells, items and the response cache, read as frozen records."""

from harness.store.export import export_run, item_row
from harness.store.records import (
    CalibrationRow,
    ItemAnswer,
    ItemCost,
    ItemRecord,
    ItemScores,
    RaceCell,
    StoredCell,
    StoredDigest,
    StoredItem,
    StoredRace,
    StoredRun,
)
from harness.store.store import DEFAULT_DB, Store

__all__ = [
    "DEFAULT_DB",
    "CalibrationRow",
    "ItemAnswer",
    "ItemCost",
    "ItemRecord",
    "ItemScores",
    "RaceCell",
    "Store",
    "StoredCell",
    "StoredDigest",
    "StoredItem",
    "StoredRace",
    "StoredRun",
    "export_run",
    "item_row",
]
