"""The viewer's A/B and sensitivity pages through Starlette's TestClient, on stores made by real scripted runs: the A/B
page's verdict, rows, flip counts and per-cluster deltas are what ``harness ab --json`` gives for the same runs (and the
flipped items are those the stored scores say), the sensitivity page's numbers are ``harness sensitivity --json``'s,
a model label, an item's text and a cluster label with markup show as text, unknown runs and models are 404s, and
browsing the pages leaves the database's bytes as they were."""

from __future__ import annotations

import gc
import hashlib
import html
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import harness.view.decide as decide_page
from harness.analysis.ab import ab_compare, cluster_deltas, flips
from harness.backends import BACKENDS
from harness.backends.scripted import ScriptedBackend
from harness.prompts.messages import prompt_text
from harness.requests import LoglikelihoodRequest, LoglikelihoodResult
from harness.store import Store
from harness.view import create_app
from tests.decide_support import QUESTION, unit
from tests.helpers import MC_TEMPLATE, cli, write_task
from tests.view.conftest import IMG, SCRIPT, Stored, fetch, view_command

POLITE = ("{% macro answer(choice, index) %} {{ choice }}{% endmacro %}Answer the question.\n"
          "{% for s in shots %}Q: {{ s.input }}\nA:{{ s.answer }}\n\n{% endfor %}Q: {{ input }}\nA:")
CLUSTER = "{{ '<i>group ' ~ answer ~ '</i>' }}"  # a cluster label with markup in it
TUNED = f"marked:0.85{SCRIPT}"  # a model label with markup in it


class Marked(ScriptedBackend):
    """``skilled:``'s answers (right on a deterministic share of the items), its skill the number its name starts with."""

    def score(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        skill = float(re.match(r"[\d.]+", self.spec.model).group(0))  # type: ignore[union-attr]
        text = prompt_text(request.context)
        found = QUESTION.findall(text)
        index = int(found[-1]) if found else 0  # a content-free input (harness calibrate): any answer
        correct = " " + [f"yes {index}", f"no {index}", "maybe"][index % 3]
        right = unit(self.spec.model, str(index), text[:6]) < skill
        value = (-1.0 if right else -6.0) if request.continuation == correct else (
            -3.0 - unit(request.continuation) if right else -1.0 - unit(request.continuation))
        return LoglikelihoodResult(logprob=value, is_greedy=value > -2, n_tokens=2)


if "marked" not in BACKENDS:
    BACKENDS.add("marked", lambda: Marked)


@dataclass(frozen=True)
class Pair:
    db: Path
    base: str
    tuned: str


@pytest.fixture(scope="module")
def pair_store(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """``harness ab`` of a tuned model against its base on a clustered task (2 prompts x 0/2 shots) whose questions hold markup."""
    root = tmp_path_factory.mktemp("view-ab")
    folder = write_task(root / "tasks", "ctoy", rows=60, spec={"prompts": ["plain", "polite"], "metrics": ["acc"], "cluster": CLUSTER},
                        templates={"plain": MC_TEMPLATE, "polite": POLITE})
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):
        row["question"] += " " + (SCRIPT if i % 2 else IMG)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = root / "ab.db"
    assert cli("ab", "--db", db, "--tasks-dir", root / "tasks", "--task", "ctoy", "--base", "skilled:0.4", "--tuned", TUNED,
               "--shots", "0", "2", "--quiet") == 0
    store = Store.open_read_only(db)
    try:
        runs = {r.id: store.cells([r.id])[0].model for r in store.runs()}
    finally:
        store.close()
    (base,) = [r for r, m in runs.items() if m == "skilled:0.4"]
    (tuned,) = [r for r, m in runs.items() if m != "skilled:0.4"]
    return Pair(db, base, tuned)


@pytest.fixture(scope="module")
def pair_client(pair_store: Pair) -> TestClient:
    return TestClient(create_app(pair_store.db), base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def client(stored: Stored) -> TestClient:
    return TestClient(create_app(stored.db), base_url="http://127.0.0.1")


def text_of(fragment: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", fragment))).strip()


def cells_of(row: str) -> list[str]:
    return [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def ab_json(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> dict:  # type: ignore[type-arg]
    assert cli("ab", "--db", db, *args, "--json") == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def sections(page: str, css: str) -> list[str]:
    """The page's <section class="css" ...> blocks (not nested in one another)."""
    return re.findall(rf'<section class="{css}"(.*?)</section>', page, re.S)


def test_ab_page_shows_harness_abs_verdict_rows_and_flips(pair_client: TestClient, pair_store: Pair,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = ab_json(capsys, pair_store.db, "--base-run", pair_store.base, "--tuned-run", pair_store.tuned)
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base})
    assert page.status_code == 200
    verdict = re.search(r'<p class="verdict" id="ab-verdict">(.*?)</p>', page.text, re.S)
    assert verdict is not None and html.unescape(verdict.group(1)) == data["verdict"]
    assert data["verdict"].startswith("tuned is better than base")
    (task,) = data["tasks"]
    table = re.search(r'<table class="ab">(.*?)</table>', page.text, re.S).group(1)  # type: ignore[union-attr]
    rows = [cells_of(r) for r in re.findall(r"<tr class=\"(?:pooled|cell)\">(.*?)</tr>", table, re.S)]
    assert len(rows) == 4 + 1 + 1  # 4 cells, the pooled row, the across-prompt row
    pooled = rows[4]
    assert pooled[0] == "all 4 cells" and pooled[1] == str(task["units"])
    assert pooled[2] == f"{100 * task['base']:.1f}" and pooled[3] == f"{100 * task['tuned']:.1f}"
    assert pooled[4] == f"{100 * task['diff']:+.1f} [{100 * task['diff_ci_low']:+.1f},{100 * task['diff_ci_high']:+.1f}]"
    assert pooled[6] == task["verdict_text"]
    for row, cell in zip(rows[:4], task["cells"]):
        assert row[1] == str(cell["n"]) and row[4].startswith(f"{100 * cell['diff']:+.1f} [")
    # per cell: the fixed / broken counts are ab's wins / losses, and the listed items are the stored scores' flips
    store = Store.open_read_only(pair_store.db)
    try:
        scores = {(r.run_id, r.cell_id, r.item_id): r.scores["acc"] for r in store.scores([pair_store.base, pair_store.tuned])}
    finally:
        store.close()
    blocks = sections(page.text, "flips")
    assert len(blocks) == 4
    for block, cell in zip(blocks, task["cells"]):
        assert f'data-fixed="{cell["tuned_wins"]}" data-broken="{cell["tuned_losses"]}"' in block
        assert cell["tuned_wins"] > 0 and cell["tuned_losses"] > 0
        items = sorted({i for (run, c, i) in scores if c == cell["base_cell"] and run == pair_store.base})
        base = {i: scores[(pair_store.base, cell["base_cell"], i)] for i in items}
        tuned = {i: scores[(pair_store.tuned, cell["tuned_cell"], i)] for i in items}
        fixed = re.search(r'<table class="flip-table fixed">(.*?)</table>', block, re.S).group(1)  # type: ignore[union-attr]
        broken = re.search(r'<table class="flip-table broken">(.*?)</table>', block, re.S).group(1)  # type: ignore[union-attr]
        assert set(re.findall(r'data-item="([^"]+)"', fixed)) == {i for i in items if base[i] == 0 and tuned[i] == 1}
        assert set(re.findall(r'data-item="([^"]+)"', broken)) == {i for i in items if base[i] == 1 and tuned[i] == 0}
        first = re.findall(r'data-item="([^"]+)"', fixed)[0]
        assert f'href="/runs/{pair_store.tuned}/items/{first}"' in fixed and f'href="/runs/{pair_store.base}/items/{first}"' in fixed
        assert pair_client.get(f"/runs/{pair_store.tuned}/items/{first}").status_code == 200


def test_ab_page_per_cluster_deltas(pair_client: TestClient, pair_store: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    data = ab_json(capsys, pair_store.db, "--base-run", pair_store.base, "--tuned-run", pair_store.tuned)
    (task,) = data["tasks"]
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base})
    table = re.search(r'<table class="clusters">(.*?)</table>', page.text, re.S).group(1)  # type: ignore[union-attr]
    rows = {html.unescape(name): cells_of(row) for name, row in re.findall(r'<tr class="cluster" data-cluster="([^"]+)">(.*?)</tr>', table, re.S)}
    assert set(rows) == {f"<i>group {k}</i>" for k in range(3)}
    # each cluster's Δ from the stored scores themselves: tuned − base over its (cell, item) pairs, all 4 cells
    store = Store.open_read_only(pair_store.db)
    try:
        clusters = {r.item_id: r.cluster for r in store.items([pair_store.base])}
        scores = {(r.run_id, r.cell_id, r.item_id): r.scores["acc"] for r in store.scores([pair_store.base, pair_store.tuned])}
    finally:
        store.close()
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cell in task["cells"]:
        for (run, c, item), value in scores.items():
            if run == pair_store.base and c == cell["base_cell"]:
                pairs[str(clusters[item])].append((value, scores[(pair_store.tuned, cell["tuned_cell"], item)]))
    for name, values in pairs.items():
        base, tuned = sum(b for b, _ in values) / len(values), sum(t for _, t in values) / len(values)
        row = rows[name]
        assert row[1:6] == ["20", str(len(values)), f"{100 * base:.1f}", f"{100 * tuned:.1f}", f"{100 * (tuned - base):+.1f}"]
        assert int(row[6]) == sum(1 for b, t in values if t > b) and int(row[7]) == sum(1 for b, t in values if t < b)
    # together they are the pooled row: its wins, losses and mean difference
    assert sum(int(r[6]) for r in rows.values()) == task["tuned_wins"] and sum(int(r[7]) for r in rows.values()) == task["tuned_losses"]
    weighted = sum(int(r[2]) * float(r[5]) for r in rows.values()) / sum(int(r[2]) for r in rows.values())
    assert weighted == pytest.approx(100 * task["diff"], abs=0.06)


def test_ab_page_plots_are_harness_abs_numbers(pair_client: TestClient, pair_store: Pair, capsys: pytest.CaptureFixture[str]) -> None:
    """The A/B plot's rows are ab's cells and pooled row (Δ and CI, coloured by their verdicts); the cluster plot's bars are
    the cluster table's differences."""
    data = ab_json(capsys, pair_store.db, "--base-run", pair_store.base, "--tuned-run", pair_store.tuned)
    (task,) = data["tasks"]
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base}).text
    specs = {name: json.loads(html.unescape(spec)) for name, spec in re.findall(
        r'<figure class="plot" data-plot="([\w-]+)">\s*<div class="vega-plot"[^>]*></div>\s*<script type="application/json" class="plot-spec">(.*?)</script>',
        page, re.S)}
    assert list(specs) == ["ab", "clusters"]
    rows = specs["ab"]["data"]["values"]
    assert [(r["diff"], r["low"], r["high"], r["verdict"]) for r in rows[:-1]] == [
        (c["diff"], c["diff_ci_low"], c["diff_ci_high"], c["verdict"]) for c in task["cells"]]
    assert (rows[-1]["row"], rows[-1]["diff"], rows[-1]["verdict"]) == ("all 4 cells (pooled)", task["diff"], task["outcome"])
    bars = {r["cluster"]: r["diff"] for r in specs["clusters"]["data"]["values"]}
    table = re.search(r'<table class="clusters">(.*?)</table>', page, re.S).group(1)  # type: ignore[union-attr]
    shown = {html.unescape(name): cells_of(row)[5] for name, row in re.findall(r'<tr class="cluster" data-cluster="([^"]+)">(.*?)</tr>', table, re.S)}
    assert {name: f"{100 * diff:+.1f}" for name, diff in bars.items()} == shown


def test_flips_and_cluster_deltas_agree_with_the_paired_results(pair_store: Pair) -> None:
    store = Store.open_read_only(pair_store.db)
    try:
        report = ab_compare(store, pair_store.base, pair_store.tuned)
    finally:
        store.close()
    (task,) = report.tasks
    for cell in task.cells:
        found = flips(cell)
        assert (len(found.fixed), len(found.broken)) == (cell.result.wins, cell.result.losses)
        assert not set(found.fixed) & set(found.broken)
    deltas = cluster_deltas(task)
    assert sum(d.pairs for d in deltas) == task.pooled.n and sum(d.fixed for d in deltas) == task.pooled.wins
    assert sum(d.pairs * d.diff for d in deltas) / task.pooled.n == pytest.approx(task.pooled.diff.mean)
    assert [d.diff for d in deltas] == sorted(d.diff for d in deltas)  # worst for the tuned model first


def test_markup_in_a_model_label_item_text_and_cluster_shows_as_text(pair_client: TestClient, pair_store: Pair) -> None:
    pages = [pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base}),
             pair_client.get(f"/runs/{pair_store.base}/ab", params={"base_run": pair_store.tuned}),  # swapped
             pair_client.get(f"/runs/{pair_store.tuned}/ab"), pair_client.get(f"/runs/{pair_store.tuned}/sensitivity")]
    for page in pages:
        assert page.status_code == 200
        own = re.sub(r'<script type="application/json" class="plot-spec">[^<]*</script>|<script src="/static/[\w./-]+"></script>', "", page.text)
        assert "<script" not in own and "<img" not in own and "<i>group" not in own  # only the page's own plot specs and scripts
    ab = pages[0].text
    assert f"tuned = {html.escape(TUNED)}" in ab  # the label, in the heading
    assert html.escape(IMG) in ab and html.escape(SCRIPT) in ab  # the items' text, in the flip table
    assert html.escape("<i>group 0</i>") in ab  # the cluster label
    assert html.escape(TUNED) in pages[2].text  # the choices name the models


def test_ab_choices_lead_to_working_pages(pair_client: TestClient, pair_store: Pair, client: TestClient, stored: Stored) -> None:
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab")
    links = [html.unescape(h) for h in re.findall(r'<li><a href="([^"]+)">', page.text)]
    assert f"/runs/{pair_store.tuned}/ab?base_run={pair_store.base}" in links
    assert f"/runs/{pair_store.base}/ab?base_run={pair_store.tuned}" in links
    for link in links:
        assert 'id="ab-verdict"' in pair_client.get(link).text
    # a run of two models: each ordered pair within it
    page = client.get(f"/runs/{stored.toy}/ab")
    links = [html.unescape(h) for h in re.findall(r'<li><a href="([^"]+)">', page.text)]
    assert f"/runs/{stored.toy}/ab?base_run={stored.toy}&base=skilled%3A0.35&tuned=skilled%3A0.85" in links and len(links) == 2
    assert "nothing to pair it with" in client.get(f"/runs/{stored.hostile}/ab").text


def test_ab_within_one_run_is_harness_ab_with_model_labels(client: TestClient, stored: Stored, capsys: pytest.CaptureFixture[str]) -> None:
    data = ab_json(capsys, stored.db, "--base-run", stored.toy, "--tuned-run", stored.toy, "--base", "skilled:0.35", "--tuned", "skilled:0.85")
    page = client.get(f"/runs/{stored.toy}/ab", params={"base_run": stored.toy, "base": "skilled:0.35", "tuned": "skilled:0.85"})
    assert html.unescape(re.search(r'id="ab-verdict">(.*?)</p>', page.text, re.S).group(1)) == data["verdict"]  # type: ignore[union-attr]
    (task,) = data["tasks"]
    blocks = sections(page.text, "flips")
    assert [re.search(r'data-fixed="(\d+)" data-broken="(\d+)"', b).groups() for b in blocks] == [  # type: ignore[union-attr]
        (str(c["tuned_wins"]), str(c["tuned_losses"])) for c in task["cells"]]
    # one run: the flip table links to the outputs matrix filtered to the same items
    link = html.unescape(re.search(r'href="([^"]*show=flips[^"]*)"', blocks[0]).group(1))  # type: ignore[union-attr]
    matrix = client.get(link)
    assert int(re.search(r'id="total">(\d+)<', matrix.text).group(1)) == task["cells"][0]["tuned_wins"]  # type: ignore[union-attr]
    # the same run on both sides without labels is harness ab's own error, on the page
    same = client.get(f"/runs/{stored.toy}/ab", params={"base_run": stored.toy})
    assert same.status_code == 200 and "holds 2 models" in text_of(same.text)


@pytest.mark.parametrize("path", [
    "/runs/nope/ab", "/runs/nope/ab?base_run={toy}", "/runs/{toy}/ab?base_run=nope", "/runs/{toy}/ab?base=nobody&tuned=skilled:0.85",
    "/runs/{toy}/ab?base=skilled:0.35&tuned=nobody", "/runs/nope/sensitivity", "/runs/{toy}/sensitivity?also=nope"])
def test_unknown_runs_and_models_are_404(client: TestClient, stored: Stored, path: str) -> None:
    page = client.get(path.format(toy=stored.toy))
    assert page.status_code == 404 and 'id="error"' in page.text


def test_run_page_links_to_its_ab_and_sensitivity_pages(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}")
    assert f'href="/runs/{stored.toy}/ab"' in page.text and f'href="/runs/{stored.toy}/sensitivity"' in page.text


# -- sensitivity ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sensitivity_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A run whose selectors, templates and calibration vary: the toy task, 2 prompts x random/balanced x 2 draws, calibrated."""
    root = tmp_path_factory.mktemp("view-sens")
    write_task(root / "tasks", "toy", rows=40, spec={"prompts": ["plain", "polite"], "metrics": ["acc"]},
               templates={"plain": MC_TEMPLATE, "polite": POLITE})
    db = root / "s.db"
    assert cli("run", "--db", db, "--tasks-dir", root / "tasks", "--task", "toy", "--shots", "2", "--selector", "random", "balanced",
               "--draws", "2", "--model", "marked:0.6", "--quiet") == 0
    assert cli("calibrate", "--db", db, "--content-free", "N/A") == 0
    store = Store.open_read_only(db)
    try:
        return db, store.resolve_run("latest")
    finally:
        store.close()


def _table(page: str, css: str) -> list[list[str]]:
    body = re.search(rf'<table class="{css}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)  # type: ignore[union-attr]
    return [cells_of(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _ci(level: dict) -> str:  # type: ignore[type-arg]
    if level["ci_low"] is None:
        return f"{_pct(level['mean'])} [—] ({level['ci_method']})"
    return f"{_pct(level['mean'])} [{_pct(level['ci_low'])}, {_pct(level['ci_high'])}]"


def test_sensitivity_page_shows_harness_sensitivitys_numbers(sensitivity_store: tuple[Path, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    db, run = sensitivity_store
    assert cli("sensitivity", run, "--db", db, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    page = TestClient(create_app(db), base_url="http://127.0.0.1").get(f"/runs/{run}/sensitivity")
    assert page.status_code == 200
    overview = _table(page.text, "overview")
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in overview] == [
        (f["factor"], str(f["slices"]), _pct(f["median_range"]), _pct(f["max_range"]), f["max_range_context"]) for f in data["factors"]]
    assert {f["factor"] for f in data["factors"]} >= {"template", "selector", "calibration"}
    for factor in data["factors"]:
        name = factor["factor"]
        block = re.search(rf'<section class="factor" id="factor-{name}".*?</section>', page.text, re.S).group(0)  # type: ignore[union-attr]
        slices = [s for s in data["slices"] if s["factor"] == name]
        body = re.search(r'<table class="slices">.*?<tbody>(.*?)</tbody>', block, re.S).group(1)  # type: ignore[union-attr]
        rows = [cells_of(r) for r in re.findall(r'<tr class="slice">(.*?)</tr>', body, re.S)]
        levels = [re.findall(r'<li class="level">(.*?)</li>', r, re.S) for r in re.findall(r'<tr class="levels">(.*?)</tr>', body, re.S)]
        assert len(rows) == len(slices) == len(levels)
        for row, shown, s in zip(rows, levels, slices):
            by_name = {lv["level"]: lv for lv in s["levels"]}
            assert row[0].startswith(s["context"]) and row[1] == str(len(s["levels"]))
            assert row[2] == f"{s['min_level']}: {_ci(by_name[s['min_level']])}" and row[3] == _pct(s["median"])
            assert row[4] == f"{s['max_level']}: {_ci(by_name[s['max_level']])}" and row[5] == _pct(s["range"])
            assert [text_of(t).split(" (")[0] for t in shown] == [f"{lv['level']}: {_ci(lv)}".split(" (")[0] for lv in s["levels"]]
        tests = [t for t in data["paired_tests"] if t["factor"] == name]
        shown_tests = [cells_of(r) for r in re.findall(r'<tr class="test">(.*?)</tr>', block, re.S)]
        assert len(shown_tests) == len(tests)
        for row, t in zip(shown_tests, tests):
            assert row[1] == f"{t['a']} − {t['b']}" and row[2] == str(t["n"])
            assert row[3] == f"{100 * t['diff']:+.1f} [{100 * t['diff_ci_low']:+.1f}, {100 * t['diff_ci_high']:+.1f}]"
            assert row[7] == f"{t['wins']}/{t['ties']}/{t['losses']}"
    assert any(t["factor"] == "calibration" for t in data["paired_tests"])


def test_sensitivity_page_of_a_run_where_nothing_varies_says_so(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.hostile}/sensitivity")
    assert page.status_code == 200 and "no factor varies" in page.text
    toy = client.get(f"/runs/{stored.toy}/sensitivity", params={"also": stored.hostile})
    assert toy.status_code == 200 and 'data-factor="template"' in toy.text and f"runs {stored.toy}, {stored.hostile}" in text_of(toy.text)


def test_browsing_the_decision_pages_leaves_the_database_bytes_unchanged(pair_client: TestClient, pair_store: Pair) -> None:
    gc.collect()  # the in-process `harness ab` calls above leave their connection to be closed (and the log checkpointed) by the collector
    before = hashlib.sha256(pair_store.db.read_bytes()).hexdigest()
    paths: Sequence[str] = [f"/runs/{pair_store.tuned}/ab", f"/runs/{pair_store.tuned}/ab?base_run={pair_store.base}&margin=2",
                            f"/runs/{pair_store.base}/ab?base_run={pair_store.tuned}", f"/runs/{pair_store.tuned}/sensitivity"]
    for path in paths:
        assert pair_client.get(path).status_code == 200, path
    assert hashlib.sha256(pair_store.db.read_bytes()).hexdigest() == before


def test_ab_page_margin_is_harness_abs_margin(pair_client: TestClient, pair_store: Pair, client: TestClient, stored: Stored,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """?margin= in points, as the run page takes it: the verdict and rows ab gives with --margin in metric units."""
    data = ab_json(capsys, pair_store.db, "--base-run", pair_store.base, "--tuned-run", pair_store.tuned, "--margin", "0.05")
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base, "margin": "5"})
    assert html.unescape(re.search(r'id="ab-verdict">(.*?)</p>', page.text, re.S).group(1)) == data["verdict"]  # type: ignore[union-attr]
    assert "equivalence margin ±0.05" in page.text and 'name="margin" type="number" step="any" min="0" value="5.0"' in page.text
    # two models of one run, with labels and a margin: the same verdict as ab --base --tuned --margin
    within_json = ab_json(capsys, stored.db, "--base-run", stored.toy, "--tuned-run", stored.toy, "--base", "skilled:0.35",
                     "--tuned", "skilled:0.85", "--margin", "0.02")
    within = client.get(f"/runs/{stored.toy}/ab", params={"base_run": stored.toy, "base": "skilled:0.35", "tuned": "skilled:0.85", "margin": "2"})
    assert html.unescape(re.search(r'id="ab-verdict">(.*?)</p>', within.text, re.S).group(1)) == within_json["verdict"]  # type: ignore[union-attr]


def test_harness_view_command_serves_the_ab_page_without_the_runs_backends(pair_store: Pair) -> None:
    """A process where the runs' backends are not installed (here: the tests' scripted ones) still shows the A/B verdict;
    the overlap check, which reads the tuned model's entry, says it was not done instead of failing the page."""
    root = Path(__file__).resolve().parents[2]
    with view_command(pair_store.db) as url:
        page = fetch(url + f"runs/{pair_store.tuned}/ab?base_run={pair_store.base}", timeout=30)
        assert 'id="ab-verdict">tuned is better than base' in page
        text = html.unescape(page)
        assert "this install cannot read its entry (backend marked not installed?), so it was not checked for a tuning card" in text, text[-3000:]
    # harness ab itself, in such a process: the verdict and the same note, not a ValidationError traceback
    done = subprocess.run([sys.executable, "-m", "harness.cli", "ab", "--db", str(pair_store.db), "--base-run", pair_store.base,
                           "--tuned-run", pair_store.tuned], cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)},
                          timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "was not checked for a tuning card" in " ".join((done.stdout + done.stderr).split())


def test_a_long_flip_list_is_cut_and_says_so(pair_client: TestClient, pair_store: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decide_page, "FLIPS_SHOWN", 3)
    page = pair_client.get(f"/runs/{pair_store.tuned}/ab", params={"base_run": pair_store.base})
    block = sections(page.text, "flips")[0]
    wins = int(re.search(r'data-fixed="(\d+)"', block).group(1))  # type: ignore[union-attr]
    fixed = re.search(r'<table class="flip-table fixed">(.*?)</table>', block, re.S).group(1)  # type: ignore[union-attr]
    assert wins > 3 and f"fixed (first 3 of {wins})" in fixed
    shown = re.findall(r'<tr class="flip" data-item="t(\d+)"', fixed)
    assert len(shown) == 3 and shown == sorted(shown, key=int)  # the first in split order
