"""The stored form of a model entry is pinned: it is part of every run's config, so of the run
identity (config hash) that resumes, ``harness ab`` reuse and calibration look runs up by.

Recorded before the per-backend option models replaced the flat union ``ModelSpec``: runs
made before that change must still be found (same config JSON, same hash), credentials stay
masked in it, and a stored entry reads back into the same model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.backends.hf.backend import HFBackend
from harness.backends.openai.backend import OpenAIBackend
from harness.runner.planning import plan
from harness.runner.provenance import config_snapshot, stable_hash
from harness.runner.spec import ExperimentSpec
from tests.helpers import write_task

KEY = "sk-secret-123456"
HF_FOLDER = {"backend": "hf", "model": "models/tiny", "adapter": "adapters/a", "dtype": "bfloat16", "device": "cpu"}
API = {"backend": "openai", "model": "gpt-x", "name": "api", "concurrency": 8,
       "base_url": f"https://u:{KEY}@host.example/v1?api-version=2024-02-01&api_key={KEY}",
       "extra_headers": {"Authorization": f"Bearer {KEY}", "X-Team": "evals"}}

# the flat record every model entry was stored as: every backend's keys, defaults where unset
DEFAULTS: dict[str, Any] = {
    "backend": "hf", "model": "gemma-3-270m", "name": None, "adapter": None, "revision": None, "dtype": "auto", "device": "auto",
    "max_batch_tokens": None, "max_length": None, "trust_remote_code": False, "base_url": None, "api_key_env": "OPENAI_API_KEY",
    "endpoint": "auto", "concurrency": 4, "timeout_s": 60.0, "max_retries": 6, "extra_headers": {}, "extra_params": {},
    "mc_fallback": "error",
}
RECORDED = [  # (entry as written in an experiment file, stored record, sha256 of the stored spec)
    (None, DEFAULTS, "44120f9a4e8aa6b6e5307933c5a3a140eb5e6cefa92fcfc776a6f6fc6b0b5939"),
    (HF_FOLDER, {**DEFAULTS, **HF_FOLDER}, "a9a0fdab10f7310367fdeca4d37a35a1309cc98afe67f11f7b32e60ced1e51ec"),
    (API, {**DEFAULTS, **API, "base_url": "https://host.example/v1?api-version=2024-02-01&api_key=***",
           "extra_headers": {"Authorization": "***", "X-Team": "evals"}},
     "52bbc5e2f6a8c0eeefcd1055f404341cbe40a88d46f325846713bd1223e3fb49"),
]
UNSET = {"sample", "stratify", "race", "prices", "anchors"}  # fields the stored spec leaves out when unset (prices always: no identity)
SPEC_REST: dict[str, Any] = {
    "tasks": ["toy"], "prompts": None, "shots": [0], "selectors": ["first_k"], "limit": None, "max_tokens": None, "seed": 1234,
    "split": "test", "fewshot_split": "fewshot", "tasks_dirs": ["tasks"], "prompts_dirs": [], "data_dirs": [], "chunk_items": 64,
    "draws": 1,
}


@pytest.fixture
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A task and fake model/adapter folders at fixed relative paths (the stored spec holds the paths)."""
    monkeypatch.chdir(tmp_path)
    write_task(Path("tasks"))
    for folder, files in {"models/tiny": {"config.json": "{}", "model.safetensors": "w", "tokenizer_config.json": "{}"},
                          "adapters/a": {"adapter_config.json": "{}", "adapter_model.safetensors": "a"}}.items():
        Path(folder).mkdir(parents=True)
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(("entry", "record", "digest"), RECORDED, ids=["embedded", "hf-folder-adapter", "openai-headers"])
def test_stored_model_record_and_spec_hash_are_unchanged(folders: Path, entry: Any, record: dict[str, Any], digest: str) -> None:
    spec = ExperimentSpec(tasks=["toy"], tasks_dirs=["tasks"], models=[entry])
    stored = config_snapshot(spec, plan(spec), identities=[{"fixed": "identity"}])["spec"]
    assert list(stored["models"][0]) == list(DEFAULTS)  # the same keys in the same order
    assert stored == {**SPEC_REST, "models": [record]}
    assert stored == spec.model_dump(mode="json", exclude=UNSET)
    assert stable_hash(stored) == digest
    assert KEY not in json.dumps(stored)
    # read back as the store readers do (calibration, overlap checks): the same model, or its masked form
    again = ExperimentSpec.model_validate(stored)
    assert again.model_dump(mode="json", exclude=UNSET) == stored
    if entry is not API:
        assert again == spec


def test_model_identities_are_unchanged(folders: Path) -> None:
    hf = ExperimentSpec(tasks=["toy"], models=[HF_FOLDER]).models[0]
    assert HFBackend.identity_of(hf) == {
        "backend": "hf", "model": "models/tiny",
        "model_content": {"weights": "70852018dd61554666c8f6d0fda64eecbb0e378ce2a42c0647283c9c512736b0",
                          "tokenizer": "0b84b471431b85043d1f495b5b5c3170062583e4de5a7631a7b3754901a2c9fd",
                          "config": "bef6acf233bd20dd9e6db488ed06d5f0e0cf0e3730765a3ef7f28c7de705b168"},
        "adapter": {"weights": "1dfa33538028bc80ba385308da87fa2709595de2ab652d9b6d0527fb45dfe1a0", "tokenizer": None,
                    "config": "361b57d64702fbe93616d10bf5830063fd84888c723c5689c3de97a75dee449e"},
        "dtype": "bfloat16", "max_length": None, "trust_remote_code": False, "device": "cpu",
    }
    api = ExperimentSpec(tasks=["toy"], models=[API]).models[0]
    assert OpenAIBackend.identity_of(api) == {
        "backend": "openai", "model": "gpt-x", "base_url": "https://host.example/v1?api-version=2024-02-01&api_key=***",
        "endpoint": "auto", "extra_params": {}, "mc_fallback": "error", "header_names": ["authorization", "x-team"],
    }
