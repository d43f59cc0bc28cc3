"""Subsets that mean something: ``--sample N`` and ``--stratify EXPR`` (issue 15).

Reproducer: ``--limit N`` takes the first N rows, so on a file sorted by label a 50-item run
evaluated a single class (prompts ranked 64% vs 0%) with no warning. A seeded sample picks
items by a hash of (seed, item id): the same items whatever the row order, in every process;
``stratify`` allocates them proportionally over a field; a subset whose label distribution is
degenerate or far from the split's is warned about and the warning is stored in the run config.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness.analysis.ab import finished_run
from harness.core.errors import HarnessError
from harness.runner.execute import run_experiment
from harness.runner.planning import plan
from harness.runner.provenance import config_snapshot, stable_hash
from harness.runner.spec import ExperimentSpec
from harness.store.store import Store
from tests.helpers import cli

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "{% for s in shots %}{{ s.text }} ->{{ s.answer }}\n{% endfor %}{{ text }} ->"


def write_sorted_task(root: Path, name: str = "sorted", counts: tuple[int, int] = (100, 100), order: str = "sorted",
                      seed: int = 0) -> Path:
    """A classification task whose test file holds ``counts`` rows of label 0 then 1 (``order='sorted'``) or shuffled."""
    folder = root / name
    (folder / "prompts").mkdir(parents=True, exist_ok=True)
    spec = {"name": name, "type": "classification", "data": {"test": "test.jsonl", "fewshot": "fewshot.jsonl"},
            "input": "{{ text }}", "target": "{{ label }}", "verbalizers": {"neg": "bad", "pos": "good"},
            "prompts": ["plain"], "metrics": ["acc"]}
    (folder / "task.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    rows = [{"id": f"r{label}-{i}", "text": f"row {i} of class {label}", "label": label, "topic": f"t{i % 4}"}
            for label, count in enumerate(counts) for i in range(count)]
    if order == "shuffled":
        random.Random(seed).shuffle(rows)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = [{"id": f"f{i}", "text": f"demo {i}", "label": i % 2, "topic": "t0"} for i in range(6)]
    (folder / "fewshot.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pool))
    (folder / "prompts" / "plain.jinja").write_text(TEMPLATE)
    return folder


def _spec(folder: Path, **fields) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"tasks": [str(folder)], "models": ["scripted:m"], **fields})


def _ids(folder: Path, **fields) -> list[str]:
    (cell,) = plan(_spec(folder, **fields))
    return [item.id for item in cell.items]


# -- determinism ----------------------------------------------------------------------
def test_sample_is_seeded_and_independent_of_row_order(tmp_path: Path) -> None:
    in_order = write_sorted_task(tmp_path, "a")
    shuffled = write_sorted_task(tmp_path, "b", order="shuffled", seed=3)
    first = _ids(in_order, sample=30, seed=1)
    assert len(first) == 30 == len(set(first))
    assert set(first) == set(_ids(shuffled, sample=30, seed=1))  # the same items whatever the row order
    assert first == _ids(in_order, sample=30, seed=1)  # and again
    assert set(first) != set(_ids(in_order, sample=30, seed=2))  # another seed, another sample
    assert set(first) != set(_ids(in_order, limit=30, seed=1))  # not the first rows
    assert set(_ids(in_order, sample=10, seed=1)) <= set(first)  # a smaller sample is part of a larger one
    assert len(_ids(in_order, sample=500)) == 200  # more than the split: all of it


def test_sample_is_stable_across_processes(tmp_path: Path) -> None:
    folder = write_sorted_task(tmp_path)
    code = ("import sys; from harness.runner.spec import ExperimentSpec; from harness.runner.planning import plan; "
            "spec = ExperimentSpec.model_validate({'tasks': [sys.argv[1]], 'sample': 25, 'seed': 7, 'models': ['scripted:m']}); "
            "print(','.join(i.id for i in plan(spec)[0].items))")
    outputs = {subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True, cwd=ROOT,
                              env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout.strip() for seed in ("1", "2")}
    assert outputs == {",".join(_ids(folder, sample=25, seed=7))}


# -- stratification -------------------------------------------------------------------
def test_stratify_allocates_proportionally(tmp_path: Path) -> None:
    skewed = write_sorted_task(tmp_path, counts=(140, 60), order="shuffled", seed=5)
    (cell,) = plan(_spec(skewed, sample=20, stratify="label", seed=4))
    assert Counter(item.row["label"] for item in cell.items) == {0: 14, 1: 6}
    # with --limit: the first rows of each stratum, in file order
    sorted_task = write_sorted_task(tmp_path, "sorted_task", counts=(140, 60))
    (cell,) = plan(_spec(sorted_task, limit=20, stratify="{{ label }}"))
    assert [item.id for item in cell.items] == [f"r0-{i}" for i in range(14)] + [f"r1-{i}" for i in range(6)]
    # any expression over the row; largest remainders: 4 topics of 50 rows, 10 items -> 3, 3, 2, 2
    (cell,) = plan(_spec(sorted_task, sample=10, stratify="topic"))
    assert sorted(Counter(item.row["topic"] for item in cell.items).values()) == [2, 2, 3, 3]
    # 'label' is the task's label (the verbalizer label, here 'neg'/'pos'), 'row' the raw fields
    (cell,) = plan(_spec(sorted_task, sample=10, stratify="label ~ '/' ~ row.label"))
    assert Counter(item.label for item in cell.items) == {"neg": 7, "pos": 3}


def test_stratify_and_sample_need_a_size_and_exclude_limit(tmp_path: Path) -> None:
    folder = write_sorted_task(tmp_path)
    with pytest.raises(HarnessError, match="stratify"):
        from harness.core.yamlfile import validate

        validate(ExperimentSpec, {"tasks": [str(folder)], "stratify": "label"}, "command line", "experiment")
    with pytest.raises(HarnessError, match="--sample or --limit"):
        from harness.core.yamlfile import validate

        validate(ExperimentSpec, {"tasks": [str(folder)], "sample": 5, "limit": 5}, "command line", "experiment")
    bad = _spec(folder, sample=5, stratify="nosuchfield")
    with pytest.raises(HarnessError, match="stratify"):
        plan(bad)


# -- identity -------------------------------------------------------------------------
def test_a_sampled_run_is_a_different_run(tmp_path: Path) -> None:
    folder = write_sorted_task(tmp_path)
    variants = [dict(limit=20), dict(sample=20), dict(sample=20, seed=9), dict(sample=20, stratify="label"),
                dict(limit=20, stratify="label"), dict(sample=21)]
    specs = [_spec(folder, **v) for v in variants]
    configs = [stable_hash(config_snapshot(s, plan(s))) for s in specs]
    assert len(set(configs)) == len(configs)
    cell_ids = [plan(s)[0].cell_id for s in specs]
    assert len(set(cell_ids)) == len(cell_ids)
    assert plan(_spec(folder, limit=20))[0].cell_id == plan(_spec(folder, limit=30))[0].cell_id == plan(_spec(folder))[0].cell_id  # as before
    snapshot = config_snapshot(specs[3], plan(specs[3]))
    assert snapshot["spec"]["sample"] == 20 and snapshot["spec"]["stratify"] == "label"
    assert snapshot["subsets"]["sorted"]["n"] == 20 and snapshot["subsets"]["sorted"]["of"] == 200
    # a spec without sample/stratify dumps as before (stored runs keep their config hash)
    assert "sample" not in config_snapshot(specs[0], plan(specs[0]))["spec"]

    store = Store(tmp_path / "h.db")
    limited = run_experiment(specs[0], store, show_progress=False)
    assert finished_run(store, specs[0]) == limited.run_id
    assert finished_run(store, specs[1]) is None  # `harness ab` never reuses a run of another subset
    sampled = run_experiment(specs[1], store, show_progress=False)
    assert sampled.run_id != limited.run_id and not sampled.resumed
    stored = {r.item_id for r in store.items([sampled.run_id])}
    assert stored == set(_ids(folder, sample=20))
    # the stored spec re-plans the same cells (calibrate, contamination checks and ab rebuild cells from it)
    replanned = plan(ExperimentSpec.model_validate(store.run_config(sampled.run_id)["spec"]))
    assert {c.cell_id for c in replanned} == {c.cell_id for c in store.cells([sampled.run_id])}
    assert [i.id for i in replanned[0].items] == _ids(folder, sample=20)


# -- warnings -------------------------------------------------------------------------
def test_limit_on_a_label_sorted_file_warns_and_sample_does_not(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_sorted_task(tmp_path)
    db = tmp_path / "r" / "h.db"
    assert cli("run", "--task", folder, "--model", "scripted:m", "--limit", "50", "--db", db, "--quiet") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "label distribution" in line]
    assert len(lines) == 1 and "first 50" in lines[0] and "50 of 50" in lines[0], err
    store = Store(db)
    (run,) = [r.id for r in store.runs()]
    config = store.run_config(run)
    assert config["subsets"]["sorted"]["warnings"] and config["warnings"] == [lines[0].removeprefix("warning: ")]
    assert config["subsets"]["sorted"]["labels"] == {"neg": 50}
    assert cli("compare", "--db", db, run) == 0  # compare (and the HTML report) repeat what the run warned
    assert "label distribution" in capsys.readouterr().out

    assert cli("run", "--task", folder, "--model", "scripted:m", "--sample", "50", "--db", db, "--quiet") == 0
    err = capsys.readouterr().err
    assert "label distribution" not in err, err
    sampled = [r.id for r in store.runs() if r.id != run][0]
    assert store.run_config(sampled)["subsets"]["sorted"]["warnings"] == []

    # far from the split without being degenerate: 2/3 of the items of one class where the split has 1/3
    skewed = write_sorted_task(tmp_path, "skewed", counts=(150, 300))
    assert cli("run", "--task", skewed, "--model", "scripted:m", "--limit", "225", "--db", db, "--quiet") == 0
    err = capsys.readouterr().err
    assert "total variation" in err and "degenerate" not in err, err
    assert cli("run", "--task", skewed, "--model", "scripted:m", "--limit", "225", "--stratify", "label", "--db", db, "--quiet") == 0
    assert "label distribution" not in capsys.readouterr().err


def test_experiment_file_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_sorted_task(tmp_path)
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({"tasks": [str(folder)], "models": ["scripted:m"], "limit": 40}))
    db = tmp_path / "h.db"
    # --sample on the command line replaces the file's limit (a flag overrides the file)
    assert cli("run", experiment, "--sample", "12", "--stratify", "label", "--db", db, "--quiet", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    config = Store(db).run_config(out["run_id"])
    assert config["spec"]["sample"] == 12 and config["spec"]["limit"] is None and config["spec"]["stratify"] == "label"
    assert Counter(config["subsets"]["sorted"]["labels"].values()) == {6: 2}


def test_ab_spec_takes_sample_and_stratify(tmp_path: Path) -> None:
    from harness.cli.app import build_parser
    from harness.cli.decide import _ab_spec

    args = build_parser().parse_args(["ab", "--task", "x", "--adapter", "a", "--sample", "30", "--stratify", "label"])
    spec = _ab_spec(args)
    assert spec.sample == 30 and spec.stratify == "label" and spec.limit is None


def test_validate_renders_a_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_sorted_task(tmp_path)
    assert cli("validate", folder, "-n", "4") == 0
    first = capsys.readouterr().out
    assert "class 1" not in first  # the first rows of a sorted file: one class only
    assert cli("validate", folder, "--sample", "4", "--stratify", "label", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert out.count("class 0") == 2 and out.count("class 1") == 2, out
