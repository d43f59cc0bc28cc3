"""Per-choice contexts on the HF scoring paths: each choice has its own context (sharing the
demonstrations and the sentence up to the blank) and all share one continuation. Packed scoring
and the three-level scorer group requests by context token ids; they must give what one plain
forward pass per request gives, on tiny random models and through HFBackend on a real rendering."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.backends.hf.packed import PackedScorer  # noqa: E402
from harness.backends.hf.prefix_cache import SharedPrefixScorer  # noqa: E402
from harness.requests import loglikelihood_requests  # noqa: E402
from tests.backends.test_packed import MODELS, _plain  # noqa: E402
from tests.backends.tiny_models import VOCAB  # noqa: E402


def _per_choice_pairs(seed: int) -> list[tuple[list[int], list[int]]]:
    """Items as per-choice contexts give them: 40 demonstration tokens, a sentence start, then each
    option (1-3 tokens, 2-3 options), the same continuation for every option. Item 0's second
    context extends its first (a context that is a prefix of another), item 1's options differ only
    in their last token, item 5 has no demonstrations."""
    rng = random.Random(seed)
    words = lambda n: [rng.randrange(1, VOCAB) for _ in range(n)]  # noqa: E731
    demos = words(40)
    pairs = []
    for item in range(6):
        sentence = words(rng.randrange(3, 12))
        options = [words(rng.randrange(1, 4)) for _ in range(rng.randrange(2, 4))]
        if item == 0:
            options = [options[0], options[0] + words(2)]
        if item == 1:
            options = [options[0][:-1] + [t] for t in words(3)] if len(options[0]) > 1 else [[t] for t in words(3)]
        continuation = words(rng.randrange(1, 6))
        pairs += [((demos if item < 5 else []) + sentence + option, continuation) for option in options]
    return pairs


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("budget", [(64, 8), (4096, 256)])
def test_per_choice_contexts_score_the_same_packed_three_level_and_plain(name: str, budget: tuple[int, int]) -> None:
    model = MODELS[name]()
    pairs = _per_choice_pairs(3)
    assert len({tuple(c) for c, _ in pairs}) == len(pairs)  # every request has its own context
    packed = PackedScorer(model, 0, "cpu", budget, min_saving=0).score(pairs)  # min_saving=0: the demonstrations are cached
    three_level = SharedPrefixScorer(model, 0, "cpu", *budget).score(pairs)
    for got_packed, got_three, (logprob, greedy) in zip(packed, three_level, _plain(model, pairs)):
        assert got_packed.logprob == pytest.approx(logprob, abs=1e-4)
        assert got_three.logprob == pytest.approx(logprob, abs=1e-4)
        assert got_packed.is_greedy == greedy == got_three.is_greedy


def test_hf_backend_scores_a_rendered_per_choice_task_alike_on_every_path(tiny_gemma: Path, tmp_path: Path) -> None:
    """The shipped tasks/winogrande rendered 2-shot (real tokenizer: trailing-space moves and
    merges at the context/continuation boundary): packed, three-level and plain agree."""
    from harness.backends import ModelSpec
    from harness.backends.hf.backend import HFBackend
    from harness.prompts.template import load_prompt
    from tests.runner.test_plan_per_choice_contexts import winogrande

    task = winogrande(tmp_path)
    template = load_prompt(task, "lm_eval")
    requests: list[Any] = []
    for item in task.items():
        requests += loglikelihood_requests(template.render(task, item, task.items("fewshot")[:2]))
    backend = HFBackend(ModelSpec(model=str(tiny_gemma)))
    backend.max_batch_tokens = 128  # several batches
    packed = backend.loglikelihood(requests)
    assert backend.packing is True
    backend.packing = False
    three_level = backend.loglikelihood(requests)
    backend.share_prefix = False
    plain = backend.loglikelihood(requests)
    for a, b, c in zip(packed, three_level, plain):
        assert a.logprob == pytest.approx(c.logprob, abs=1e-4) and b.logprob == pytest.approx(c.logprob, abs=1e-4)
        assert a.n_tokens == b.n_tokens == c.n_tokens and a.is_greedy == b.is_greedy == c.is_greedy
    assert all(requests[i].context != requests[i + 1].context for i in range(0, len(requests), 2))  # each choice its own
    assert len({r.n_tokens for r in plain}) > 1
