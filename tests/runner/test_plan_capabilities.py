"""Capabilities a backend class declares, checked by planning for every cell before any cell runs.

Reproducers: a chat template (``NAME.chat.jinja``) on an HF model without a chat template
failed only when its cell reached the model (after the other cells had run, the model loaded);
a multiple-choice task on an API model set to ``endpoint: chat`` failed at its first request;
``supports_loglikelihood`` / ``supports_chat`` were declared and never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BACKENDS, Capabilities, ModelSpec
from harness.backends.hf import files as hf_files
from harness.backends.hf.backend import HFBackend
from harness.backends.hf.files import has_chat_template
from harness.backends.scripted import ScriptedBackend
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.planning import plan
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import MC_TEMPLATE, write_task

CHAT = "@@ user\n{{ input }}"
GEMMA_LIKE = {"bos_token": "<bos>", "eos_token": "<eos>", "model_max_length": 32768, "tokenizer_class": "GemmaTokenizer"}


def hf_folder(root: Path, **tokenizer_config: Any) -> Path:
    """What planning reads of a local model: its tokenizer files (no weights are needed, none are loaded)."""
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "tokenizer_config.json").write_text(json.dumps({**GEMMA_LIKE, **tokenizer_config}))
    return root


def _spec(tmp_path: Path, models: list[Any], prompts: list[str], **task: Any) -> ExperimentSpec:
    if not (tmp_path / "tasks" / "toy").exists():
        write_task(tmp_path / "tasks", templates={"plain": MC_TEMPLATE, "chat.chat": CHAT}, spec=task or None)
    return ExperimentSpec(tasks=["toy"], tasks_dirs=[str(tmp_path / "tasks")], models=models, prompts=prompts)


# -- chat prompts on HF models ---------------------------------------------------------------------
def test_chat_template_on_a_model_without_one_fails_at_planning_naming_both(tmp_path: Path) -> None:
    base = hf_folder(tmp_path / "base")
    assert has_chat_template(ModelSpec(model=str(base))) is False
    with pytest.raises(HarnessError) as refused:
        plan(_spec(tmp_path, [{"model": str(base)}], ["plain", "chat"]))
    message = str(refused.value)
    assert f"model 'hf:{base}' has no chat template" in message and "template 'chat'" in message and "chat.chat.jinja" in message
    assert "use a plain-text template (*.jinja)" in message
    assert len(plan(_spec(tmp_path, [{"model": str(base)}], ["plain"]))) == 1  # its text templates are fine


@pytest.mark.parametrize("where", ["tokenizer_config", "chat_template.jinja", "chat_template.json", "additional_chat_templates"])
def test_a_model_with_a_chat_template_takes_chat_prompts(tmp_path: Path, where: str) -> None:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    folder = hf_folder(tmp_path / "chat", **({"chat_template": template} if where == "tokenizer_config" else {}))
    if where.startswith("chat_template."):
        (folder / where).write_text(template)
    elif where == "additional_chat_templates":
        (folder / where).mkdir()
    assert has_chat_template(ModelSpec(model=str(folder))) is True
    assert len(plan(_spec(tmp_path, [{"model": str(folder)}], ["chat"]))) == 1


def test_the_embedded_base_model_is_refused_chat_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converted = hf_folder(tmp_path / "gemma")  # the converted embedded model's tokenizer_config.json holds no chat_template
    monkeypatch.setattr(hf_files, "embedded_model_path", lambda: converted)
    with pytest.raises(HarnessError, match=r"template 'chat' .* model 'hf:gemma-3-270m' has no chat template \(none in the embedded base model"):
        plan(_spec(tmp_path, [None], ["chat"]))


def test_a_hub_id_that_is_not_downloaded_is_left_to_loading(tmp_path: Path) -> None:
    spec = ModelSpec(model="someorg/not-downloaded")
    assert has_chat_template(spec) is None
    assert HFBackend.capabilities(spec, chat=True).prompt
    assert len(plan(_spec(tmp_path, [{"model": "someorg/not-downloaded"}], ["chat"]))) == 1


def test_a_downloaded_hub_id_is_told_from_the_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HF cache layout: refs/main -> commit, snapshots/<commit>/<file>, .no_exist/<commit>/<file> for
    files the hub said it does not have (what from_pretrained records for chat_template.jinja)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    for repo, template in (("base", None), ("chat", "{{ messages }}"), ("unknown", None)):
        cache = tmp_path / "hub" / f"models--org--{repo}"
        (cache / "refs").mkdir(parents=True)
        (cache / "refs" / "main").write_text(commit)
        hf_folder(cache / "snapshots" / commit, **({"chat_template": template} if template else {}))
        if repo != "unknown":  # "unknown": whether the hub has chat_template.jinja was never asked
            (cache / ".no_exist" / commit).mkdir(parents=True)
            for name in hf_files.CHAT_TEMPLATE_FILES:
                (cache / ".no_exist" / commit / name).touch()
    assert [has_chat_template(ModelSpec(model=f"org/{r}")) for r in ("base", "chat", "unknown")] == [False, True, None]
    with pytest.raises(HarnessError, match="model 'hf:org/base' has no chat template"):
        plan(_spec(tmp_path, [{"model": "org/base"}], ["chat"]))
    assert len(plan(_spec(tmp_path, [{"model": "org/chat"}, {"model": "org/unknown"}], ["chat"]))) == 2


def test_nothing_runs_when_a_later_cell_cannot(tmp_path: Path) -> None:
    base = hf_folder(tmp_path / "base")
    store = Store(tmp_path / "h.db")
    with pytest.raises(HarnessError, match="has no chat template"):
        run_experiment(_spec(tmp_path, ["scripted:first", {"model": str(base)}], ["chat"]), store, show_progress=False)
    assert store.runs() == [] and store.cache_stats()["entries"] == 0


# -- log-likelihood scoring over an API --------------------------------------------------------------
API = {"backend": "openai", "model": "toy", "base_url": "http://127.0.0.1:9/v1"}


def test_multiple_choice_on_a_chat_endpoint_fails_at_planning_unless_the_fallback_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"task 'toy' scores each choice by its log-likelihood, but model 'openai:toy' would get chat "
                                           r"prompts \(endpoint: chat\).*mc_fallback: generate"):
        plan(_spec(tmp_path, [{**API, "endpoint": "chat"}], ["plain"]))
    with pytest.raises(HarnessError, match=r"would get chat prompts \(a \*\.chat\.jinja template\)"):
        plan(_spec(tmp_path, [API], ["chat"]))
    assert len(plan(_spec(tmp_path, [{**API, "endpoint": "chat", "mc_fallback": "generate"}], ["plain", "chat"]))) == 2
    assert len(plan(_spec(tmp_path, [API], ["plain"]))) == 1  # echo over /v1/completions: only asking the server tells


def test_generation_on_a_chat_endpoint_is_fine_but_a_chat_template_needs_a_chat_endpoint(tmp_path: Path) -> None:
    generate = {"type": "generate", "target": "{{ options[answer] }}", "metrics": ["exact_match"], "choices": None}
    assert len(plan(_spec(tmp_path, [{**API, "endpoint": "chat"}], ["plain", "chat"], **generate))) == 2
    with pytest.raises(HarnessError, match=r"template 'chat' .* is a chat template \(\*\.chat\.jinja\), but model 'openai:toy' is set to "
                                           r"endpoint: completions, which takes text only"):
        plan(_spec(tmp_path, [{**API, "endpoint": "completions"}], ["chat"]))


# -- a plugin backend's own declaration ------------------------------------------------------------
class GenerateOnly(ScriptedBackend):
    """A backend that can only generate: it says so, and planning holds it to that."""

    @classmethod
    def capabilities(cls, spec: ModelSpec, *, chat: bool) -> Capabilities:
        return Capabilities(loglikelihood=False, why={"loglikelihood": "only generates text (no log-probabilities)"})


if "generate_only" not in BACKENDS:
    BACKENDS.add("generate_only", lambda: GenerateOnly)


def test_a_backend_without_loglikelihoods_is_refused_multiple_choice_at_planning(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="task 'toy' scores each choice by its log-likelihood, but model 'generate_only:m' only generates"):
        plan(_spec(tmp_path, ["generate_only:m"], ["plain"]))
    assert ScriptedBackend.capabilities(ModelSpec(backend="scripted"), chat=True) == Capabilities()  # the default: everything


@pytest.mark.slow
def test_the_real_embedded_model_has_no_chat_template(embedded_model: Path, tmp_path: Path) -> None:
    assert has_chat_template(ModelSpec()) is False
    with pytest.raises(HarnessError, match="model 'hf:gemma-3-270m' has no chat template"):
        plan(_spec(tmp_path, [None], ["chat"]))
