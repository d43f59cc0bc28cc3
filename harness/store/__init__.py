"""The results store: one SQLite file of runs, cells, items and the response cache, read as frozen records."""

from harness.store.export import export_run, item_row
from harness.store.records import (
    CalibrationRow,
    ItemAnswer,
    ItemCost,
    ItemLedger,
    ItemRecord,
    ItemScores,
    RaceCell,
    StoredCell,
    StoredDigest,
    StoredItem,
    StoredLedger,
    StoredPrices,
    StoredRace,
    StoredRun,
)
from harness.store.store import DEFAULT_DB, Store

__all__ = [
    "DEFAULT_DB",
    "CalibrationRow",
    "ItemAnswer",
    "ItemCost",
    "ItemLedger",
    "ItemRecord",
    "ItemScores",
    "RaceCell",
    "Store",
    "StoredCell",
    "StoredDigest",
    "StoredItem",
    "StoredLedger",
    "StoredPrices",
    "StoredRace",
    "StoredRun",
    "export_run",
    "item_row",
]
