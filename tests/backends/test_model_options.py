"""Per-backend options: each backend's own pydantic model with extra="forbid".

Reproducers: ``ModelSpec`` was one union of the HF and API options, so ``hf:`` silently took
``base_url`` and ``concurrency`` (and ``--dtype`` reached API models), and nothing told a
misspelt key from another backend's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.backends import BACKEND_OPTIONS, BACKENDS, ModelSpec, options_model
from harness.backends.base import RECORD, Backend
from harness.backends.hf.options import HFOptions, hf_options
from harness.backends.openai.options import OpenAIOptions, openai_options
from harness.backends.scripted import ScriptedOptions
from harness.core.errors import HarnessError
from harness.runner.spec import ExperimentSpec
from tests.helpers import cli, write_task

SECRET = "sk-never-print-me-9876"


def _experiment(tmp_path: Path, models: list[object]) -> Path:
    write_task(tmp_path / "tasks")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"tasks": ["toy"], "tasks_dirs": [str(tmp_path / "tasks")], "models": models}))
    return path


def _refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str], models: list[object]) -> str:
    path = _experiment(tmp_path, models)
    assert cli("run", str(path), "--db", str(tmp_path / "h.db"), "--quiet") == 2
    return capsys.readouterr().err


def test_each_backend_gets_its_own_options() -> None:
    hf = ModelSpec(model="m", dtype="bfloat16", adapter="a")
    assert isinstance(hf.options, HFOptions) and hf_options(hf).dtype == "bfloat16" and hf.adapter == "a" and hf.label == "hf:m+a"
    api = ModelSpec(backend="openai", model="gpt-x", concurrency=8)
    assert isinstance(api.options, OpenAIOptions) and openai_options(api).concurrency == 8 and api.adapter is None
    assert isinstance(ModelSpec(backend="scripted", model="m").options, ScriptedOptions)
    assert not hasattr(api.options, "dtype") and not hasattr(hf.options, "base_url")  # no union any more
    with pytest.raises(TypeError, match="HFOptions"):
        hf_options(api)


def test_a_key_of_another_backend_is_refused_with_its_owner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(tmp_path, capsys, [{"backend": "hf", "model": "gemma-3-270m", "base_url": "http://127.0.0.1:9/v1"}])
    assert str(tmp_path / "exp.yaml") in err and "unknown key 'models.0.base_url'" in err
    assert "backend hf has no option 'base_url' (that is an option of openai:)" in err and "hf: entries take" in err and "dtype" in err
    err = _refusal(tmp_path, capsys, [{"backend": "openai", "model": "x", "dtype": "bfloat16"}])
    assert "unknown key 'models.0.dtype'" in err and "backend openai has no option 'dtype' (that is an option of hf: and vllm:)" in err
    err = _refusal(tmp_path, capsys, ["scripted:a", {"backend": "scripted", "model": "b", "concurrency": 2}])
    assert "unknown key 'models.1.concurrency'" in err and "backend scripted has no option 'concurrency' (that is an option of openai:)" in err


def test_a_misspelt_key_gets_a_did_you_mean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(tmp_path, capsys, [{"backend": "hf", "model": "m", "dtyp": "bfloat16"}])
    assert "unknown key 'models.0.dtyp'" in err and "Did you mean 'dtype'?" in err
    err = _refusal(tmp_path, capsys, [{"backend": "openai", "model": "m", "concurency": 2}])
    assert "Did you mean 'concurrency'?" in err
    err = _refusal(tmp_path, capsys, [{"backend": "hff", "model": "m"}])
    assert "models.0.backend" in err and "unknown backend 'hff'" in err and "Did you mean 'hf'?" in err
    err = _refusal(tmp_path, capsys, [{"backend": "hf", "model": "m", "dtype": "fp8"}])  # values are still checked by the options model
    assert "field 'models.0.dtype'" in err and "'bfloat16'" in err


def test_a_refused_value_is_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refusal(tmp_path, capsys, [{"backend": "hf", "model": "m", "extra_headers": {"Authorization": f"Bearer {SECRET}"}}])
    assert "models.0.extra_headers" in err and "openai:" in err and SECRET not in err


def test_model_copy_validates_its_update() -> None:
    hf = ModelSpec(model="m")
    assert hf_options(hf.model_copy(update={"dtype": "float16"})).dtype == "float16"
    assert hf.model_copy(update={"name": "n"}).label == "n" and hf.model_copy() == hf
    with pytest.raises(HarnessError, match=r"model 'hf:m'.*unknown key 'concurrency'.*openai:"):
        hf.model_copy(update={"concurrency": 2})
    with pytest.raises(HarnessError, match=r"field 'max_length'"):
        hf.model_copy(update={"max_length": 2})
    api = ModelSpec(backend="openai", model="x", extra_headers={"Authorization": f"Bearer {SECRET}"})
    moved = api.model_copy(update={"base_url": "http://h/v1"})
    assert openai_options(moved).extra_headers == {"Authorization": f"Bearer {SECRET}"}  # real values carried, not the masked dump
    assert moved.model_dump(mode="json")["extra_headers"] == {"Authorization": "***"}


def test_a_stored_record_reads_back_but_a_set_foreign_key_is_still_refused() -> None:
    api = ModelSpec(backend="openai", model="x", concurrency=3)
    record = api.model_dump(mode="json")
    assert set(record) == set(RECORD) and record["dtype"] == "auto"  # the flat record: hf keys at their defaults
    assert ModelSpec.model_validate(record) == api
    with pytest.raises(ValueError, match="backend openai has no option 'dtype'"):
        ModelSpec.model_validate({**record, "dtype": "bfloat16"})  # not a default: a setting openai does not take
    with pytest.raises(ValueError, match="backend openai has no option 'dtype'"):
        ModelSpec.model_validate({"backend": "openai", "model": "x", "dtype": "auto"})  # an entry, not a record
    assert ExperimentSpec.model_validate(json.loads(json.dumps(ExperimentSpec(tasks=["t"], models=[api]).model_dump(mode="json")))).models == [api]


def test_dump_include_and_exclude_apply_to_the_flat_keys() -> None:
    spec = ModelSpec(model="m", dtype="float16")
    assert spec.model_dump(mode="json", include={"backend", "model", "revision", "dtype", "device"}) == {
        "backend": "hf", "model": "m", "revision": None, "dtype": "float16", "device": "auto"}
    assert "options" not in spec.model_dump() and "dtype" not in spec.model_dump(exclude={"dtype"})


def test_options_are_registered_light_and_match_the_backend_classes() -> None:
    for name in ("hf", "openai", "scripted"):
        assert BACKEND_OPTIONS.get(name) is BACKENDS.get(name)().options_model
    import tests.decide_support  # noqa: F401 - registers skilled, a ScriptedBackend without registered options

    assert "skilled" not in BACKEND_OPTIONS and options_model("skilled") is ScriptedOptions
    assert not hasattr(Backend, "describe") and not hasattr(Backend, "supports_chat") and not hasattr(Backend, "supports_loglikelihood")


# -- flags of `harness run` that belong to one backend ---------------------------------------------
@pytest.mark.parametrize(("flags", "model", "says"), [
    (["--base-url", "http://127.0.0.1:9/v1"], "hf:m",
     "--base-url does not apply to model 'hf:m': backend hf has no option 'base_url' (that is an option of openai:)"),
    (["--concurrency", "2"], "scripted:m", "--concurrency does not apply to model 'scripted:m': backend scripted has no option 'concurrency'"),
    (["--dtype", "bfloat16"], "openai:x",
     "--dtype does not apply to model 'openai:x': backend openai has no option 'dtype' (that is an option of hf: and vllm:)"),
    (["--device", "cpu"], "openai:x", "--device does not apply to model 'openai:x'"),
    (["--adapter", "out"], "openai:x", "--adapter does not apply to model 'openai:x': backend openai has no option 'adapter'"),
])
def test_backend_flags_refuse_models_that_do_not_take_them(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                                           model: str, says: str) -> None:
    write_task(tmp_path / "tasks")
    assert cli("run", "--tasks-dir", str(tmp_path / "tasks"), "--task", "toy", "--model", model, "--db", str(tmp_path / "h.db"),
               "--quiet", *flags) == 2
    assert says in capsys.readouterr().err


def test_a_backend_flag_applies_to_every_model_so_a_mixed_list_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path / "tasks")
    base = ["run", "--tasks-dir", str(tmp_path / "tasks"), "--task", "toy", "--db", str(tmp_path / "h.db"), "--quiet", "--json"]
    assert cli(*base, "--model", "openai:x", "--model", "scripted:m", "--base-url", "http://127.0.0.1:9/v1") == 2
    assert "--base-url does not apply to model 'scripted:m'" in capsys.readouterr().err
    assert cli(*base, "--model", "scripted:m", "--adapter", str(tmp_path)) == 0  # the scripted stand-in takes an adapter folder
    assert json.loads(capsys.readouterr().out)["ranking"][0]["model"] == f"scripted:m+{tmp_path}"
