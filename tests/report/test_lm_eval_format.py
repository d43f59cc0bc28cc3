"""``harness export --format lm-eval``: the files lm-eval's own tooling finds and reads (its file-name
helpers and ``make_table``), holding the numbers ``harness compare`` computes for the same cells."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.analysis.compare import compare_runs
from harness.cli.app import main
from harness.store.store import Store

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_an_exported_run_reads_back_in_lm_evals_tooling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lm_utils = pytest.importorskip("lm_eval.utils", reason="lm-eval is installed by scripts/test.sh")
    db = str(tmp_path / "h.db")
    assert main(["run", "--task", "arc_easy", "sst2", "--data-dir", str(DATA), "--prompt", "lm_eval", "--shots", "0", "2",
                 "--model", "scripted:m", "--limit", "30", "--db", db, "--quiet", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["export", run_id, "--format", "lm-eval", "-o", str(tmp_path / "out"), "--db", db, "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    files = [str(p) for p in (tmp_path / "out").rglob("*") if p.is_file()]
    results_files = lm_utils.get_results_filenames(files)
    samples_files = lm_utils.get_sample_results_filenames(files)
    assert sorted(results_files) == sorted(written["results"]) and len(results_files) == 1
    assert sorted(samples_files) == sorted(written["samples"]) and len(samples_files) == 4
    assert lm_utils.get_latest_filename(results_files) == results_files[0]
    results = json.loads(Path(results_files[0]).read_text(encoding="utf-8"))
    names = {lm_utils.get_file_task_name(Path(f).name) for f in samples_files}
    assert names == {lm_utils.sanitize_task_name(n) for n in results["results"]}
    table = lm_utils.make_table(results)
    assert "arc_easy · lm_eval · 2-shot · first_k" in table and "f1_macro" in table and "acc" in table

    comparison = compare_runs(Store(db), [run_id])
    store = Store(db)
    for cell in store.cells([run_id]):
        entry = results["results"][f"{cell.task}|{cell.prompt}|{cell.shots}-shot|{cell.selector}"]
        scores = [i.scores["acc"] for i in store.items([run_id], cell.cell_id)]
        mean = sum(scores) / len(scores)
        assert entry["acc,none"] == pytest.approx(mean)
        se = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1) / len(scores))
        assert entry["acc_stderr,none"] == pytest.approx(se)
        assert results["n-shot"][f"{cell.task}|{cell.prompt}|{cell.shots}-shot|{cell.selector}"] == cell.shots
    from sklearn.metrics import f1_score

    labels = store.run_config(run_id)["tasks"]["sst2"]["labels"]
    checked = 0
    for cell in store.cells([run_id]):
        if cell.task == "sst2":
            rows = store.items([run_id], cell.cell_id)
            expected = f1_score([labels[r.target] for r in rows], [r.extracted for r in rows], average="macro")
            entry = results["results"][f"sst2|lm_eval|{cell.shots}-shot|{cell.selector}"]
            assert entry["f1_macro,none"] == pytest.approx(expected) and entry["f1_macro_stderr,none"] == "N/A"
            checked += 1
    assert checked == 2 and len(comparison.rankings) >= 2
    sample = json.loads(Path(next(f for f in samples_files if "arc_easy" in f)).read_text(encoding="utf-8").splitlines()[0])
    assert {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "acc"} <= set(sample)
    assert len(sample["arguments"]) == len(sample["resps"]) == len(sample["filtered_resps"]) >= 3


def test_exporting_a_run_that_is_not_there_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "nope", "-o", str(tmp_path / "out"), "--db", str(tmp_path / "h.db")]) == 2
    assert "Traceback" not in capsys.readouterr().err
