"""The probe verdicts kept per model and software (harness/backends/hf/verdicts.py): a probe runs once per key, and
anything that could change a verdict is part of the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.backends.hf import verdicts
from harness.backends.hf.verdicts import cached_verdict, verdict_key

IDENTITY = {"backend": "hf", "model": "m", "model_content": {"weights": "w1", "tokenizer": "t", "config": "c"}, "dtype": "float32", "device": "cpu"}
VERSIONS = {"torch": "2.13.0", "transformers": "5.25.0"}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


def test_a_probe_runs_once_per_key_and_name() -> None:
    calls: list[str] = []

    def probe(name: str, verdict: bool) -> bool:
        calls.append(name)
        return verdict

    key = verdict_key(IDENTITY, "sdpa", VERSIONS)
    assert cached_verdict(key, "packed", lambda: probe("packed", True)) is True
    assert cached_verdict(key, "packed", lambda: probe("packed", False)) is True  # stored: the probe is not asked again
    assert cached_verdict(key, "argmax_head", lambda: probe("argmax_head", False)) is False
    assert cached_verdict(key, "argmax_head", lambda: probe("argmax_head", True)) is False
    assert calls == ["packed", "argmax_head"]
    assert json.loads((verdicts.verdicts_dir() / f"{key}.json").read_text()) == {"argmax_head": False, "packed": True}


@pytest.mark.parametrize(
    "change",
    [
        {"identity": {**IDENTITY, "model_content": {**IDENTITY["model_content"], "weights": "w2"}}},  # other weights
        {"identity": {**IDENTITY, "adapter": {"weights": "a"}}},
        {"identity": {**IDENTITY, "dtype": "bfloat16"}},
        {"identity": {**IDENTITY, "device": "cuda"}},
        {"attention": "eager"},
        {"versions": {**VERSIONS, "transformers": "5.26.0"}},
        {"versions": {**VERSIONS, "torch": "2.14.0"}},
    ],
)
def test_whatever_could_change_a_verdict_is_a_new_key(change: dict[str, object]) -> None:
    base = {"identity": IDENTITY, "attention": "sdpa", "versions": VERSIONS}
    assert verdict_key(**{**base, **change}) != verdict_key(**base)  # type: ignore[arg-type]
    assert verdict_key(**base) == verdict_key(**base)  # type: ignore[arg-type]


def test_the_scoring_code_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A change to packed.py (or any scoring module) must re-run the probes."""
    before = verdict_key(IDENTITY, "sdpa", VERSIONS)
    fake = tmp_path / "code"
    fake.mkdir()
    real = Path(verdicts.__file__).parent
    for name in verdicts.SCORING_MODULES:
        (fake / name).write_bytes((real / name).read_bytes())
    (fake / "verdicts.py").write_text("")
    monkeypatch.setattr(verdicts, "__file__", str(fake / "verdicts.py"))
    assert verdict_key(IDENTITY, "sdpa", VERSIONS) == before
    (fake / "packed.py").write_bytes((real / "packed.py").read_bytes() + b"\n# changed\n")
    assert verdict_key(IDENTITY, "sdpa", VERSIONS) != before


def test_an_unsettled_identity_is_never_cached() -> None:
    """A hub id not in the local cache names a requested revision, not a commit: its content is unknown."""
    assert verdict_key({**IDENTITY, "revision_note": "not in the local Hugging Face cache"}, "sdpa", VERSIONS) is None
    calls: list[int] = []
    for _ in range(2):
        assert cached_verdict(None, "packed", lambda: calls.append(1) or True) is True
    assert calls == [1, 1]
    assert not verdicts.verdicts_dir().exists()


def test_a_damaged_file_is_replaced_and_a_failed_probe_stores_nothing() -> None:
    key = verdict_key(IDENTITY, "sdpa", VERSIONS)
    assert key is not None
    path = verdicts.verdicts_dir() / f"{key}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert cached_verdict(key, "packed", lambda: True) is True
    assert json.loads(path.read_text()) == {"packed": True}
    path.write_text('["a list"]')
    assert cached_verdict(key, "packed", lambda: False) is False
    assert json.loads(path.read_text()) == {"packed": False}

    def boom() -> bool:
        raise MemoryError("the probe ran out of memory")

    with pytest.raises(MemoryError):
        cached_verdict(key, "argmax_head", boom)
    assert json.loads(path.read_text()) == {"packed": False}
    assert list(path.parent.iterdir()) == [path]  # no temporary left behind


def test_an_unwritable_cache_still_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(blocker))  # a file where the folder should be
    assert cached_verdict(verdict_key(IDENTITY, "sdpa", VERSIONS), "packed", lambda: True) is True


def test_the_backend_probes_once_per_model_and_reuses_the_verdicts(tiny_gemma: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two backends on the same tiny Gemma: the first runs the probes and stores their verdicts, the second scores with
    the same packed path and chunked heads without probing, and its log-probs are the same."""
    from harness.backends.base import parse_model
    from harness.backends.hf import backend as hf_backend
    from harness.backends.hf.argmax_head import ArgmaxHead
    from harness.requests import LoglikelihoodRequest

    probes: list[str] = []
    real_packing, real_agrees = hf_backend.packing_verified, ArgmaxHead.agrees

    def counted_packing(*args: object, **kwargs: object) -> bool:
        probes.append("packing")
        return real_packing(*args, **kwargs)  # type: ignore[arg-type]

    def counted_agrees(self: ArgmaxHead, *args: object) -> bool:
        probes.append("argmax")
        return real_agrees(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(hf_backend, "packing_verified", counted_packing)
    monkeypatch.setattr(ArgmaxHead, "agrees", counted_agrees)
    requests = [LoglikelihoodRequest(f"Question {i}: is it so?\nAnswer:", f" {word}") for i in range(3) for word in ("yes", "no")]
    first = hf_backend.HFBackend(parse_model(f"hf:{tiny_gemma}"))
    scores = [r.logprob for r in first.loglikelihood(requests)]
    assert probes == ["argmax", "packing"] and first.packing and first.score_head is not None
    second = hf_backend.HFBackend(parse_model(f"hf:{tiny_gemma}"))
    assert [r.logprob for r in second.loglikelihood(requests)] == scores
    assert probes == ["argmax", "packing"] and second.packing and second.score_head is not None
    assert len(list(verdicts.verdicts_dir().iterdir())) == 1
