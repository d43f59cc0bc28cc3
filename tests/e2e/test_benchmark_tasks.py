"""The shipped benchmark tasks (tasks/<name>, data in ../shared/data) and the task features
they rely on: classification by verbalizers, group tasks, repeats, corpus metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sacrebleu
import yaml

from harness.analysis.compare import summarize
from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.spec import ExperimentSpec
from harness.scoring.checks import check_task
from harness.store.store import Store
from harness.tasks.task import find_task
from tests.conftest import ROOT as PROJECT_ROOT

TASKS_DIR = PROJECT_ROOT / "tasks"
BENCHMARKS = [
    "arc_easy", "arc_challenge", "hellaswag", "boolq", "mmlu", "sst2", "ag_news", "clue_eprstmt", "gsm8k",
    "xquad", "xquad_zh", "xsum", "wmt22_en_zh", "wmt22_zh_en",
]


def test_harness_tasks_lists_every_benchmark_with_its_rows(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", "--data-dir", str(shared_data), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in BENCHMARKS:
        assert isinstance(rows[name]["rows"], int) and rows[name]["rows"] > 0, rows[name]
        assert len(rows[name]["prompts"]) >= 2
    assert rows["mmlu"]["rows"] == 14042 and rows["mmlu"]["type"] == "multiple_choice (group of 57)"
    assert rows["ag_news"]["type"] == "classification"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_validate_renders_every_variant_from_real_rows(name: str, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", name, "--data-dir", str(shared_data), "-n", "1", "--shots", "1"]) == 0
    out = capsys.readouterr().out
    task = find_task(name, data_dirs=[shared_data])
    for prompt in task.spec.prompts:
        assert f"{prompt} · item" in out


def test_missing_data_names_the_file_the_data_dir_and_where_to_get_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "arc_easy"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "arc_easy/test.jsonl" in err and "--data-dir" in err and "HARNESS_DATA_DIR" in err
    assert "allenai.org/data/arc" in err  # the task's 'source:' hint


def test_data_dir_from_the_environment(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(shared_data))
    assert len(find_task("sst2").items()) == 872


def test_mmlu_is_a_group_of_subject_tasks(shared_data: Path) -> None:
    mmlu = find_task("mmlu", data_dirs=[shared_data])
    members = mmlu.members()
    assert len(members) == 57 and members[0].name == "mmlu_abstract_algebra"
    anatomy = find_task("mmlu_anatomy", data_dirs=[shared_data])
    assert anatomy.group == "mmlu" and len(anatomy.items()) == 135
    assert {i.row["subject"] for i in anatomy.items("fewshot")} == {"anatomy"}  # demonstrations from the same subject
    with pytest.raises(HarnessError, match="no member 'anatomyy'.*Did you mean 'anatomy'"):
        find_task("mmlu_anatomyy", data_dirs=[shared_data])


def test_group_micro_and_macro_aggregates(shared_data: Path, db_path: Path) -> None:
    spec = ExperimentSpec.model_validate({
        "tasks": ["mmlu_anatomy", "mmlu_astronomy"], "prompts": ["lm_eval"], "models": ["scripted:m"], "limit": 10,
        "data_dirs": [str(shared_data)],
    })
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False)
    from harness.analysis.aggregates import group_summaries

    summaries = summarize(store, [run.run_id])
    (group,) = group_summaries(store, summaries)
    means = [s.interval.mean for s in summaries]
    assert group.group == "mmlu" and group.members == ("mmlu_anatomy", "mmlu_astronomy")
    assert group.macro.mean == pytest.approx(sum(means) / 2)
    pooled = [v for s in summaries for v in s.scores.values()]
    assert group.micro.mean == pytest.approx(sum(pooled) / len(pooled))
    assert group.micro.low <= group.micro.mean <= group.micro.high


# -- a task written by the test itself: YAML + JSONL + template, no code --------------------
def write(folder: Path, spec: dict, rows: list[dict], templates: dict[str, str]) -> Path:
    (folder / "prompts").mkdir(parents=True)
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (folder / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    for name, text in templates.items():
        (folder / "prompts" / f"{name}.jinja").write_text(text, encoding="utf-8")
    return folder


def test_a_new_classification_task_in_a_fresh_folder_runs_without_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        tmp_path / "tasks" / "mood",
        {"name": "mood", "type": "classification", "data": {"test": "test.jsonl", "fewshot": "test.jsonl"},
         "input": "{{ text }}", "target": "{{ mood }}", "verbalizers": {"sad": ["sad", "unhappy"], "happy": "happy"},
         "prompts": ["feel"], "metrics": ["acc", "f1_macro", "mcc"]},
        [{"id": f"r{i}", "text": f"day {i} was {'good' if i % 3 else 'bad'}", "mood": "happy" if i % 3 else "sad"} for i in range(12)],
        {"feel": "{% macro answer(word, index) %} {{ word }}{% endmacro %}{% for s in shots %}{{ s.text }}: I feel{{ s.answer }}\n{% endfor %}{{ text }}: I feel"},
    )
    db = tmp_path / "h.db"
    args = ["run", "--tasks-dir", str(tmp_path / "tasks"), "--task", "mood", "--model", "scripted:m", "--shots", "0", "2", "--db", str(db), "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in (Path(out["run_dir"]) / "items.jsonl").read_text().splitlines()]
    zero_shot = [r for r in rows if r["shots"] == 0]
    assert len(zero_shot) == 12 and all(len(r["continuations"]) == 3 for r in zero_shot)  # sad, unhappy, happy
    assert {r["extracted"] for r in rows} <= {"sad", "happy"}
    two_shot = next(r for r in rows if r["shots"] == 2)
    assert " I feel happy" in two_shot["prompt"] or " I feel sad" in two_shot["prompt"]  # demos show the first word
    # the cell score of a corpus metric is sklearn over the stored items
    from sklearn.metrics import f1_score

    golds = ["sad" if r["target"] == 0 else "happy" for r in zero_shot]
    expected = f1_score(golds, [r["extracted"] for r in zero_shot], labels=["happy", "sad"], average="macro", zero_division=0)
    summaries = summarize(Store(db), [out["run_id"]], metric="f1_macro")
    cell = next(s for s in summaries if s.cell.shots == 0)
    assert cell.interval.mean == pytest.approx(expected) and cell.interval.method == "bca bootstrap"
    assert set(cell.scores.values()) <= {0.0, 1.0}  # per item: correctness, for paired tests
    per_class = out["per_class"][two_shot["cell_id"]]
    assert set(per_class) <= {"sad", "happy"} and sum(v["support"] for v in per_class.values()) == 12


def test_repeats_sample_each_item_and_feed_maj_and_pass(tmp_path: Path, db_path: Path) -> None:
    folder = write(
        tmp_path / "count",
        {"name": "count", "type": "generate", "data": {"test": "test.jsonl"}, "input": "{{ q }}", "target": "{{ a }}",
         "prompts": ["q"], "metrics": ["exact_match", "maj@3", "pass@2"], "repeats": 3,
         "generation": {"max_tokens": 4, "temperature": 0.8}, "filters": [{"regex": "(-?[0-9]+)"}]},
        [{"id": f"q{i}", "q": f"{i}+0", "a": str(i)} for i in range(6)],
        {"q": "{{ q }} ="},
    )
    store = Store(db_path)
    run = run_experiment(ExperimentSpec.model_validate({"tasks": [str(folder)], "models": ["scripted:m"]}), store, show_progress=False)
    assert run.requests == 18  # 6 items x 3 samples
    rows = store.items([run.run_id])
    responses = [r.response for r in rows]
    assert all(len(r) == 3 for r in responses)
    assert any(len({s["text"] for s in r}) > 1 for r in responses)  # samples differ (repeat is part of the request)
    for row in rows:
        scores = row.scores
        assert set(scores) == {"exact_match", "maj@3", "pass@2"} and 0 <= scores["pass@2"] <= 1


def test_maj_needs_enough_repeats(tmp_path: Path) -> None:
    folder = write(tmp_path / "few", {"name": "few", "type": "generate", "data": {"test": "test.jsonl"}, "input": "{{ q }}",
                                      "target": "{{ a }}", "prompts": ["q"], "metrics": ["maj@5"], "repeats": 2},
                   [{"q": "1", "a": "1"}], {"q": "{{ q }}"})
    with pytest.raises(HarnessError, match="maj@5.*at least 5 samples"):
        check_task(find_task(str(folder)))


def test_corpus_bleu_cell_score_equals_sacrebleu_on_the_stored_outputs(shared_data: Path, db_path: Path) -> None:
    spec = ExperimentSpec.model_validate({"tasks": ["wmt22_zh_en"], "prompts": ["lm_eval"], "models": ["scripted:m"], "limit": 15,
                                          "data_dirs": [str(shared_data)]})
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False)
    (summary,) = summarize(store, [run.run_id], metric="chrf")
    rows = store.items([run.run_id])
    hyps = [r.extracted or "" for r in rows]
    refs = [r.target[0] for r in rows]
    assert summary.interval.mean == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score / 100)
    assert summary.interval.method == "bca bootstrap" and summary.n == 15
    assert len(summary.scores) == 15  # sentence-level scores kept for paired comparisons


# -- smoke run of every benchmark on the real embedded model -------------------------------
# one run per task; MMLU as two subjects in one run, so the run also has the group aggregate
SMOKE = [[name] for name in BENCHMARKS if name != "mmlu"] + [["mmlu_anatomy", "mmlu_astronomy"]]


@pytest.fixture(scope="module")
def embedded_backend(embedded_model: Path):  # type: ignore[no-untyped-def]
    from harness.backends import backend_class

    spec = ExperimentSpec.model_validate({"tasks": ["x"]}).models[0]
    backend = backend_class(spec)(spec)
    yield spec, backend
    backend.close()


@pytest.mark.slow
@pytest.mark.parametrize("names", SMOKE, ids=lambda names: "+".join(names))
def test_smoke_benchmark_on_the_embedded_model(names: list[str], shared_data: Path, db_path: Path, embedded_backend) -> None:  # type: ignore[no-untyped-def]
    """20 items, first prompt variant, generation capped at 24 tokens: the run completes and stores scores."""
    model, backend = embedded_backend
    tasks = [find_task(name, data_dirs=[shared_data]) for name in names]
    spec = ExperimentSpec.model_validate({
        "tasks": names, "prompts": tasks[0].spec.prompts[:1], "limit": 20, "max_tokens": 24, "data_dirs": [str(shared_data)],
    })
    store = Store(db_path)
    run = run_experiment(spec, store, show_progress=False, backends={model.label: backend})
    rows = store.items([run.run_id])
    assert len(rows) == 20 * len(names)
    for row in rows:
        scores = row.scores
        assert set(scores) == set(tasks[0].spec.metrics)
        assert all(v == v for v in scores.values()), scores  # no NaN
    summaries = summarize(store, [run.run_id])
    assert len(summaries) == len(names)
    for summary in summaries:
        assert summary.n == 20 and 0 <= summary.interval.mean <= 1.5, summary.interval
    if len(names) > 1:
        from harness.analysis.aggregates import group_summaries

        (group,) = group_summaries(store, summaries)
        assert group.group == "mmlu" and group.members == tuple(names) and group.micro.n == 40
        assert group.macro.mean == pytest.approx(sum(s.interval.mean for s in summaries) / 2)
