"""A tuning run's card (``tune_card.json`` beside the adapter or model): what was trained on
what, selected how, with which curve; read by the reports and by ``harness ab``'s overlap check."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_JSON = "tune_card.json"
CARD_MD = "TUNE_CARD.md"


@dataclass(frozen=True)
class TuneCard:
    """A tuning card as the report needs it: where it came from and its JSON."""

    folder: Path
    data: Mapping[str, Any]

    @property
    def metric(self) -> str:
        return str(self.data.get("metric", "metric"))

    @property
    def max_steps(self) -> int:
        return int(self.data.get("config", {}).get("max_steps") or self.data.get("steps") or 1)

    @property
    def stopped_early(self) -> bool:
        return bool(self.data.get("stopped_early", int(self.data.get("steps") or 0) < self.max_steps))


def load_card(folder: Path) -> TuneCard | None:
    """The card in ``folder``, or None when the folder is not a tuning output."""
    path = Path(folder) / CARD_JSON
    if not path.is_file():
        return None
    return TuneCard(Path(folder), json.loads(path.read_text()))
