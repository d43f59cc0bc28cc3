"""METEOR through nltk's own implementation (``nltk.translate.meteor_score``), never re-implemented.

METEOR aligns hypothesis and reference words in three stages: exact matches, Porter-stem matches,
then WordNet synonyms. WordNet is data nltk downloads (``nltk.download("wordnet")``); it is not on
the package registries, so it may be missing, and a METEOR computed without it is a different,
lower number. So there are two metrics and neither changes silently:

- ``meteor``: all three stages; needs WordNet in nltk's data path (``$NLTK_DATA``), and says how
  to get it, or to use ``meteor_nosyn``, when it is missing;
- ``meteor_nosyn``: exact and stem stages only (nltk's code with the synonym stage given no
  synonyms): the same on every machine, comparable only with itself.

Both take nltk's defaults (alpha 0.9, beta 3, gamma 0.5, lower-casing), the best score over the
references, and the mean over items. Words are runs of word characters and single punctuation marks (nltk's
``word_tokenize`` needs its punkt data, which has the same problem as WordNet).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from harness.core.deps import require
from harness.core.errors import HarnessError
from harness.scoring.metrics import GENERATION_KINDS, Metric, Outcome, register_metric

_WORDS = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORDS.findall(text)


class NoSynonyms:
    """Stands in for nltk's WordNet reader: no word has synonyms, so the synonym stage matches nothing."""

    def synsets(self, *_: Any, **__: Any) -> list[Any]:
        return []


@lru_cache(maxsize=1)
def wordnet() -> Any:
    """The WordNet reader of nltk, once its data is found; else a clear error."""
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            raise HarnessError(
                "metric 'meteor' needs nltk's WordNet data, which is not in nltk's data path ($NLTK_DATA; looked in "
                f"{', '.join(nltk.data.path[:4])}, ...). Get it with python -m nltk.downloader wordnet where the internet is "
                "reachable, or use 'meteor_nosyn' (exact and stem matches only, a different number)"
            ) from None
    from nltk.corpus import wordnet as reader

    return reader


def _meteor(synonyms: bool) -> Metric:
    def score(outcome: Outcome) -> float:
        require("nltk", "metrics", what="METEOR")
        from nltk.translate.meteor_score import meteor_score

        hypothesis = words(outcome.extracted or "")
        references = [words(r) for r in outcome.item.references]
        return float(meteor_score(references, hypothesis, wordnet=wordnet() if synonyms else NoSynonyms()))

    if synonyms:
        name, what = "meteor", "METEOR (nltk): exact, stem and WordNet-synonym matches; needs WordNet data"
    else:
        name, what = "meteor_nosyn", "METEOR without synonyms (nltk, exact and stem matches only): not comparable with 'meteor'"
    return Metric(name, f"{what}; best over references", True, "continuous", GENERATION_KINDS, score, worst=0.0, bounds=(0.0, 1.0),
                  requires=wordnet if synonyms else None)


register_metric(_meteor(synonyms=True))
register_metric(_meteor(synonyms=False))
