"""transformers' own output kept off the user's screen while harness calls it, unless ``--verbose``.

On every run transformers printed a ``past_key_values`` FutureWarning (a deprecation inside its
own Gemma 3 forward, not something a user can act on; it also tore the progress bar), a
"Loading weights" bar, and on first use the GGUF conversion's bars. ``quiet()`` (a context
manager and a decorator) lowers transformers' logging to errors, turns its and huggingface_hub's
tqdm bars off and ignores deprecation warnings raised from transformers' modules, for the
duration of the call only, and restores all three after. Exceptions are untouched, as are
warnings from anywhere else; ``--verbose`` (``HARNESS_VERBOSE=1``) shows everything.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from harness.core.progress import verbose

# deprecation notices raised from transformers' own modules, or pointing at our calls into it
# (the module is where the warning points: the caller of a deprecated keyword)
_LIBRARY_MODULES = r"(transformers|huggingface_hub|harness\.backends\.hf)(\..*)?$"


@contextmanager
def quiet() -> Iterator[None]:
    """Inside: transformers logs errors only, no tqdm bars, no deprecation warnings from it; after: as before."""
    if verbose():
        yield
        return
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled() and not are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=_LIBRARY_MODULES)
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def gguf_bars_off() -> Iterator[None]:
    """The GGUF reader's "Converting and de-quantizing" bar (plain ``tqdm.auto``, which transformers'
    switch does not reach) disabled for one conversion, unless ``--verbose``."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if verbose() or original is None:
        yield
        return
    setattr(gguf_utils, "tqdm", partial(original, disable=True))  # noqa: B010  (mypy: not an exported name)
    try:
        yield
    finally:
        setattr(gguf_utils, "tqdm", original)  # noqa: B010
