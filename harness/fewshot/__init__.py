"""Few-shot selectors (first_k, random, balanced, knn, mmr, ...) and the embeddings they use."""

from harness.fewshot.embeddings import encoder_for
from harness.fewshot.selectors import SELECTORS, Selector, register_selector

__all__ = [
    "SELECTORS", "Selector", "encoder_for", "register_selector",
]
