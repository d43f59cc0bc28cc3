"""``evaluate:<name-or-path>[#key]``: any Hugging Face ``evaluate`` metric as a harness metric.

``evaluate:exact_match`` loads a hub metric (online, or from the local HF cache);
``evaluate:./metrics/my_metric.py`` or ``evaluate:/abs/folder`` loads a local metric script
offline. ``#key`` picks one entry of the dict the metric returns (default: the entry named
like the metric, else its first number). The cell score is the metric computed over all
items at once (aggregation "corpus"); each item's own score is the metric on that item.
HF metrics do not declare a direction: keys that are errors or losses (ter, wer, cer, loss,
perplexity, mae, mse, rmse) are lower-is-better, everything else higher-is-better.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from harness.core.deps import require
from harness.core.errors import HarnessError
from harness.scoring.metrics import TEXT_ANSWER_KINDS, CorpusItem, Metric, Outcome, register_family

LOWER_IS_BETTER = {"ter", "wer", "cer", "loss", "perplexity", "mae", "mse", "rmse"}


@cache
def load_module(source: str) -> Any:
    require("evaluate", "metrics", what=f"metric 'evaluate:{source}'")
    import evaluate
    path = Path(source).expanduser()
    try:
        return evaluate.load(str(path.resolve()) if path.exists() else source)
    except Exception as exc:  # evaluate raises many kinds (FileNotFoundError, ConnectionError, ...)
        where = "local script" if path.exists() else "hub metric (needs the network or a cached copy)"
        raise HarnessError(f"could not load evaluate metric '{source}' as a {where}: {type(exc).__name__}: {exc}") from None


def _wants_lists(module: Any) -> bool:
    """Whether the metric's ``references`` feature is a sequence (several references per item)."""
    features = module.features if not isinstance(module.features, list) else module.features[0]
    feature = features.get("references") if hasattr(features, "get") else None
    return type(feature).__name__ in ("Sequence", "List", "LargeList", "list")


def _pick(result: dict[str, Any], key: str | None, metric: str) -> float:
    if key is not None:
        if key not in result:
            raise HarnessError(f"evaluate metric '{metric}' returned no key '{key}'; it returned: {', '.join(result)}")
        return float(result[key])
    stem = Path(metric).stem
    if stem in result:
        return float(result[stem])
    for value in result.values():
        if isinstance(value, (int, float)):
            return float(value)
    raise HarnessError(f"evaluate metric '{metric}' returned no number ({result!r}); name one with '#key'")


def _compute(source: str, key: str | None, items: Sequence[CorpusItem]) -> float:
    module = load_module(source)
    predictions = [item.prediction or "" for item in items]
    references: list[Any] = [list(item.references) if _wants_lists(module) else item.references[0] for item in items]
    return _pick(module.compute(predictions=predictions, references=references), key, source)


def _factory(match: re.Match[str]) -> Metric:
    source, key = match.group(1), match.group(2)
    load_module(source)  # fail at task validation, not in the middle of a run

    def score(outcome: Outcome) -> float:
        return _compute(source, key, [CorpusItem(outcome.extracted, outcome.item.references)])  # as the corpus score sees it

    def corpus(items: Sequence[CorpusItem]) -> float:
        return _compute(source, key, items)

    lower = (key or Path(source).stem).lower() in LOWER_IS_BETTER
    return Metric(
        match.group(0), f"Hugging Face evaluate metric '{source}'" + (f" [{key}]" if key else ""), not lower, "continuous",
        TEXT_ANSWER_KINDS, score, aggregation="corpus", corpus=corpus,
    )


register_family(r"evaluate:([^#]+)(?:#(\w+))?", _factory)
