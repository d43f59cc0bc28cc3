"""Model identity is model *content*: a rewritten adapter at the same path is a new model.

Reproducers for stale reuse: ``harness ab --adapter out`` used to reuse the finished run of
an earlier adapter at the same path (the run identity held the path, not the content), and
the HF identity hashed only the first/last MiB of weight files and no chat template or
max_length. Everything here runs on a tiny random Llama with a byte-level tokenizer built in
the test (no hub, no embedded model), so the whole file takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from harness.backends import ModelSpec
from harness.store.store import Store
from tests.helpers import cli, write_task

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


def build_tiny_model(folder: Path) -> Path:
    """A 1-layer random Llama plus a byte-level BPE tokenizer (no merges) with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<pad>", "<s>", "</s>", *pre_tokenizers.ByteLevel.alphabet()])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


def build_adapter(model: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights, so it really changes the model's scores."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(str(model))
    torch.manual_seed(seed)
    lora = LoraConfig(r=2, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(autouse=True)
def _own_fingerprint_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "harness-cache"))


def _identity(spec: ModelSpec) -> dict:
    from harness.backends.hf.backend import HFBackend

    return HFBackend.identity_of(spec)


def _tuned_responses(db: Path, run_id: str) -> dict[str, list[float]]:
    rows = Store(db).items([run_id])
    return {r.item_id: [x["logprob"] for x in r.response] for r in rows}


def test_rewritten_adapter_at_the_same_path_is_a_new_run_and_an_unchanged_one_is_reused(
    tmp_path: Path, db_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_task(tmp_path / "tasks", rows=6)
    adapter = build_adapter(tiny_model, tmp_path / "out", seed=1)
    args = ["ab", "--db", db_path, "--tasks-dir", tmp_path / "tasks", "--task", "toy", "--base", f"hf:{tiny_model}",
            "--adapter", adapter, "--shots", "0", "--quiet", "--json"]
    tuned_label = f"hf:{tiny_model}+{adapter}"

    assert cli(*args) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert "reusing" not in captured.err
    assert len(Store(db_path).runs()) == 2

    # unchanged adapter: both finished runs are reused, and the tuned reuse is said in one line
    assert cli(*args) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert len(Store(db_path).runs()) == 2 and again["tuned_run"] == first["tuned_run"] and again["tasks"] == first["tasks"]
    assert f"reusing finished run {first['tuned_run']} for {tuned_label} (same config and model content)" in captured.err.splitlines()

    # `rm -rf out; harness tune -o out`: new weights at the same path
    before = _identity(ModelSpec(model=str(tiny_model), adapter=str(adapter)))
    shutil.rmtree(adapter)
    build_adapter(tiny_model, adapter, seed=2)
    after = _identity(ModelSpec(model=str(tiny_model), adapter=str(adapter)))
    assert after["adapter"] != before["adapter"] and after["model_content"] == before["model_content"]

    assert cli(*args) == 0
    captured = capsys.readouterr()
    third = json.loads(captured.out)
    assert third["base_run"] == first["base_run"]  # the base did not change: still reused
    assert third["tuned_run"] != first["tuned_run"]  # the tuned model did: a new run
    assert f"reusing finished run {first['base_run']} for hf:{tiny_model}" in captured.err
    assert f"reusing finished run {first['tuned_run']}" not in captured.err
    assert len(Store(db_path).runs()) == 3
    # the new run's numbers come from the new adapter, not from the cache of the old one
    old, new = _tuned_responses(db_path, first["tuned_run"]), _tuned_responses(db_path, third["tuned_run"])
    assert old.keys() == new.keys() and all(old[k] != new[k] for k in old)
    store = Store(db_path)
    assert all(not row.cached for row in store.items([third["tuned_run"]]))
    (cell,) = store.cells([third["tuned_run"]])
    assert cell.model_json["adapter"] == after["adapter"]

    from harness.backends.hf.backend import HFBackend
    from harness.requests import LoglikelihoodRequest

    fresh = HFBackend(ModelSpec(model=str(tiny_model), adapter=str(adapter)))
    row = store.items([third["tuned_run"]])[0]
    requests = [LoglikelihoodRequest(context=row.prompt, continuation=c) for c in row.continuations]
    assert [r.logprob for r in fresh.loglikelihood(requests)] == pytest.approx(new[row.item_id], abs=1e-5)


def test_identity_covers_every_setting_and_file_that_changes_outputs(tmp_path: Path, tiny_model: Path) -> None:
    model = shutil.copytree(tiny_model, tmp_path / "model")
    spec = ModelSpec(model=str(model))
    base = _identity(spec)
    assert base["backend"] == "hf" and base["dtype"] == "float32" and base["device"] == "cpu"
    assert _identity(spec) == base  # deterministic
    assert _identity(spec.model_copy(update={"max_length": 64})) != base
    assert _identity(spec.model_copy(update={"dtype": "bfloat16"})) != base
    assert _identity(spec.model_copy(update={"trust_remote_code": True})) != base
    # the name of an adapter-less copy at another path does not matter, its content does
    assert _identity(spec)["model_content"] == _identity(ModelSpec(model=str(tiny_model)))["model_content"]

    template = model / "chat_template.jinja"
    assert template.exists()
    template.write_text(template.read_text() + "{{ '\\n' }}")
    changed = _identity(spec)
    assert changed["model_content"]["tokenizer"] != base["model_content"]["tokenizer"]
    assert changed["model_content"]["weights"] == base["model_content"]["weights"]

    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 77}))
    assert _identity(spec)["model_content"]["tokenizer"] != changed["model_content"]["tokenizer"]

    # files that never change outputs (notes, harness's tuning card) do not change the identity
    settled = _identity(spec)
    (model / "README.md").write_text("# notes")
    (model / "tune_card.json").write_text("{}")
    assert _identity(spec) == settled


def test_weights_are_hashed_in_full_not_by_head_and_tail(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    blob = bytearray(os.urandom(5 << 20))
    (folder / "model.safetensors").write_bytes(bytes(blob))
    before = _identity(ModelSpec(model=str(folder)))
    blob[len(blob) // 2] ^= 0xFF  # a change in the middle: same size, same first and last MiB
    (folder / "model.safetensors").write_bytes(bytes(blob))
    assert _identity(ModelSpec(model=str(folder)))["model_content"]["weights"] != before["model_content"]["weights"]


def test_weight_hashes_are_memoised_and_invalidated_by_mtime_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.core import fingerprint as backend_base

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    weights = folder / "model.safetensors"
    weights.write_bytes(os.urandom(3 << 20))
    reads: list[str] = []
    real = backend_base.read_sha256

    def counting(path: Path) -> str:
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(backend_base, "read_sha256", counting)
    spec = ModelSpec(model=str(folder))
    first = _identity(spec)
    assert reads.count("model.safetensors") == 1
    assert (tmp_path / "harness-cache").is_dir() and any((tmp_path / "harness-cache").iterdir())  # the memo is on disk
    reads.clear()
    assert _identity(spec) == first and "model.safetensors" not in reads  # memo hit: the weights are not read again

    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _identity(spec) == first and reads.count("model.safetensors") == 1  # mtime changed: re-read, same content
    reads.clear()
    assert _identity(spec) == first and "model.safetensors" not in reads  # and memoised again (small files are just read)

    with open(weights, "ab") as handle:
        handle.write(b"x")
    os.utime(weights, ns=(stat.st_atime_ns, weights.stat().st_mtime_ns))  # size changes even where mtime would not
    changed = _identity(spec)
    assert reads.count("model.safetensors") == 1 and changed["model_content"]["weights"] != first["model_content"]["weights"]


def test_hub_id_resolves_its_commit_from_the_local_cache_without_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--someorg--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    resolved = _identity(ModelSpec(model="someorg/tiny"))
    assert resolved["revision"] == commit and "revision_note" not in resolved
    assert _identity(ModelSpec(model="someorg/tiny", revision=commit))["revision"] == commit

    missing = _identity(ModelSpec(model="someorg/not-downloaded", revision="v2"))
    assert missing["revision"] == "v2" and "not in the local Hugging Face cache" in missing["revision_note"]
    assert _identity(ModelSpec(model="someorg/not-downloaded"))["revision"] == "main"


def test_openai_identity_has_what_changes_answers_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backends.openai.backend import OpenAIBackend

    secret = "sk-verysecret-123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    spec = ModelSpec(backend="openai", model="gpt-x", base_url=f"https://u:{secret}@host.example/v1?api-version=2024-02-01&api_key={secret}",
                     extra_headers={"Authorization": f"Bearer {secret}", "X-Route": secret})
    identity = OpenAIBackend.identity_of(spec)
    assert secret not in json.dumps(identity)
    assert "api_key=***" in identity["base_url"] and "api_key=***" in spec.model_dump(mode="json")["base_url"]  # the run config neither
    assert "api-version=2024-02-01" in identity["base_url"] and identity["header_names"] == ["authorization", "x-route"]
    changes = [{"model": "gpt-y"}, {"endpoint": "chat"}, {"extra_params": {"top_p": 0.5}}, {"mc_fallback": "generate"},
               {"revision": "2024-05-13"}, {"base_url": "https://host.example/v1?api-version=2025-01-01"}]
    for change in changes:
        assert OpenAIBackend.identity_of(spec.model_copy(update=change)) != identity, change
    # settings that do not change answers (and the key itself) leave it alone
    same = [{"concurrency": 16}, {"timeout_s": 5.0}, {"max_retries": 0}, {"extra_headers": {"Authorization": "Bearer other", "X-Route": "x"}}]
    for change in same:
        assert OpenAIBackend.identity_of(spec.model_copy(update=change)) == identity, change
    monkeypatch.setenv("OPENAI_API_KEY", "sk-another-key-0000")
    assert OpenAIBackend.identity_of(spec) == identity
