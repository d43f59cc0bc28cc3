"""The viewer's pages through Starlette's TestClient on a store filled by real scripted runs: what each
page shows, that model output is text, that unknown runs and items are 404s, the loopback rule and
that browsing never writes the database."""

from __future__ import annotations

import hashlib
import html
import math
import re
import shutil
import sqlite3
import urllib.error
import urllib.request
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from starlette.testclient import TestClient

from harness.analysis.compare import compare_runs
from harness.core.errors import HarnessError
from harness.report.terminal import cell_name, varying_fields
from harness.store import ItemRecord, Store, StoredCell
from harness.view import check_host, create_app, is_loopback
from harness.view.cache import ViewCache
from harness.view.pages import verdict_sentence
from tests.helpers import cli
from tests.view.conftest import FAILURE, IMG, SCRIPT, Stored, fetch, view_command


@pytest.fixture(scope="module")
def client(stored: Stored) -> TestClient:
    return TestClient(create_app(stored.db), base_url="http://127.0.0.1")


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def total(page: str) -> int:
    return int(re.search(r'id="total">(\d+)<', page).group(1))


def test_runs_page_lists_every_run_with_status_counts_and_best_cell(client: TestClient, stored: Stored) -> None:
    page = client.get("/")
    assert page.status_code == 200
    rows = re.findall(r'<tr class="run" data-run="([^"]+)" data-status="([^"]+)"', page.text)
    assert dict(rows) == {stored.toy: "finished", stored.hostile: "finished", stored.failed: "failed"}
    assert [run for run, _ in rows][0] == stored.failed  # newest first
    text = text_of(page.text)
    assert FAILURE in text and "<b>connection reset</b>" not in page.text  # the reason, as text
    assert "480 / 480" in text and "6 / 6" in text  # 8 cells x 60 items; echo's 6
    store = Store.open_read_only(stored.db)
    try:
        comp = compare_runs(store, [stored.toy])
    finally:
        store.close()
    best = comp.rankings[0].cells[0].summary
    assert f"toy: {best.label} · acc {100 * best.interval.mean:.1f}" in text  # the cell compare ranks first, with its score


@pytest.mark.parametrize(("query", "expected"), [
    ({"task": "echo"}, "hostile"), ({"model": "skilled:0.35"}, "toy"), ({"status": "failed"}, "failed"),
    ({"task": "toy", "status": "finished"}, "toy"),
])
def test_runs_page_filters(client: TestClient, stored: Stored, query: dict[str, str], expected: str) -> None:
    page = client.get("/", params=query)
    assert re.findall(r'data-run="([^"]+)"', page.text) == [getattr(stored, expected)]


def test_runs_page_says_when_no_run_matches(client: TestClient) -> None:
    page = client.get("/", params={"model": "no-such-model"})
    assert page.status_code == 200 and "No runs match these filters" in page.text


def test_run_page_leads_with_the_verdict_that_compare_computes(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}")
    assert page.status_code == 200
    store = Store.open_read_only(stored.db)
    try:
        comp = compare_runs(store, [stored.toy])
    finally:
        store.close()
    ranking = comp.rankings[0]
    sentence = verdict_sentence(comp, ranking)
    body = page.text[page.text.index("<main>"):]
    first = re.search(r'<p class="verdict">(.*?)</p>', body, re.S)
    assert first is not None and html.unescape(first.group(1)) == sentence
    assert body.index('class="verdict"') < body.index('<table class="ranked"')  # the verdict before the table
    varying = varying_fields([rc.summary for rc in ranking.cells])
    worse = [rc for rc in ranking.cells if rc.verdict.code == "worse"]
    assert worse and all(cell_name(rc.summary, varying) in sentence for rc in worse) and "are worse, by" in sentence
    rows = re.findall(r'<tr data-verdict="(\w+)"', page.text)
    assert rows == [rc.verdict.code for rc in ranking.cells]  # the ranked table, in compare's order
    text = text_of(page.text)
    for rc in ranking.cells:
        ci = rc.summary.interval
        assert f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]" in text
    assert "may be best (95%)" in text and "step-down max-T" in text  # compare's notes under the table
    # provenance: seed, versions, model identity, template names and hashes
    assert "seed 1234" in text and "harness 0.1.0" in text
    cells = {rc.summary.cell.prompt: rc.summary.cell.prompt_sha256 for rc in ranking.cells}
    for prompt, digest in cells.items():
        assert f"toy / {prompt} sha256 {digest}" in text
    assert '&#34;backend&#34;: &#34;skilled&#34;' in page.text


def test_run_page_margin_gives_the_items_needed(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}", params={"margin": "2"})
    store = Store.open_read_only(stored.db)
    try:
        comp = compare_runs(store, [stored.toy], margin=0.02)
    finally:
        store.close()
    sentence = verdict_sentence(comp, comp.rankings[0])
    assert "items would settle ±2.0" in sentence
    assert html.escape(sentence, quote=False) in page.text.replace("&#39;", "'")


def test_failed_run_page_shows_its_reason(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.failed}")
    assert page.status_code == 200
    assert f"failed: {html.escape(FAILURE)}" in page.text and "no items stored yet" in page.text


def test_items_matrix_shows_predictions_and_scores_paginated(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}/items")
    assert page.status_code == 200 and total(page.text) == 60
    items = re.findall(r'<tr class="item" data-item="([^"]+)"', page.text)
    assert items == [f"t{i}" for i in range(50)]  # split order, one page of 50
    assert page.text.count('<th class="cell"') == 8
    second = client.get(f"/runs/{stored.toy}/items", params={"page": 2})
    assert re.findall(r'data-item="([^"]+)"', second.text) == [f"t{i}" for i in range(50, 60)]
    store = Store.open_read_only(stored.db)
    try:
        cell = store.cells([stored.toy])[0]
        row = next(r for r in store.items([stored.toy], cell.cell_id) if r.item_id == "t0")
    finally:
        store.close()
    first_row = re.search(r'data-item="t0">(.*?)</tr>', page.text, re.S).group(1)
    chosen = max(range(3), key=lambda i: row.response[i]["logprob"])
    assert f"{row.continuations[chosen].strip()} (choice {chosen})" in html.unescape(first_row)


def test_items_search_over_inputs_and_outputs(client: TestClient, stored: Stored) -> None:
    assert total(client.get(f"/runs/{stored.toy}/items", params={"q": "t question 7?"}).text) == 1
    found = client.get(f"/runs/{stored.toy}/items", params={"q": "T QUESTION 7?"})  # case-insensitive
    assert re.findall(r'data-item="([^"]+)"', found.text) == ["t7"]
    assert total(client.get(f"/runs/{stored.hostile}/items", params={"q": "onerror"}).text) == 6  # in the outputs
    assert total(client.get(f"/runs/{stored.toy}/items", params={"q": "100%_"}).text) == 0  # LIKE wildcards are literal
    assert "No items match" in client.get(f"/runs/{stored.toy}/items", params={"q": "zebra"}).text


def _scores(stored: Stored) -> tuple[list[str], dict[str, dict[str, float]]]:
    store = Store.open_read_only(stored.db)
    try:
        cells = [c.cell_id for c in store.cells([stored.toy])]
        by_cell: dict[str, dict[str, float]] = {c: {} for c in cells}
        for row in store.scores([stored.toy]):
            by_cell[row.cell_id][row.item_id] = row.scores["acc"]
    finally:
        store.close()
    return cells, by_cell


def test_items_filters_flips_and_disagreements(client: TestClient, stored: Stored) -> None:
    cells, scores = _scores(stored)
    weak, strong = cells[-1], cells[0]  # skilled:0.35 and skilled:0.85 cells (models are the outer loop)
    page = client.get(f"/runs/{stored.toy}/items", params={"show": "flips", "a": weak, "b": strong})
    expected = [i for i in scores[weak] if scores[weak][i] == 0.0 and scores[strong][i] == 1.0]
    assert expected and total(page.text) == len(expected)
    assert set(re.findall(r'data-item="([^"]+)"', page.text)) == set(expected[:50])
    disagree = client.get(f"/runs/{stored.toy}/items", params={"show": "disagree"})
    expected = [i for i in scores[weak] if len({scores[c][i] for c in cells}) > 1]
    assert total(disagree.text) == len(expected) < 60
    both = client.get(f"/runs/{stored.toy}/items", params={"show": "flips", "a": weak, "b": strong, "q": "t question 1"})
    assert 0 < total(both.text) < len([i for i in scores[weak] if scores[weak][i] == 0.0 and scores[strong][i] == 1.0])


def test_item_page_shows_prompt_demonstrations_and_response(client: TestClient, stored: Stored) -> None:
    page = client.get(f"/runs/{stored.toy}/items/t3")
    assert page.status_code == 200
    assert page.text.count('<section class="item-cell"') == 8
    text = text_of(page.text)
    assert "Q: f question 0? A: yes 0 Q: f question 1? A: no 1 Q: t question 3? A:" in text  # the 2-shot rendered prompt
    assert "f0, f1" in text and "none (0-shot)" in text and "target" in text


def test_model_output_is_text_never_markup(client: TestClient, stored: Stored) -> None:
    for path in (f"/runs/{stored.hostile}/items", f"/runs/{stored.hostile}/items/t0"):
        page = client.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text
        assert html.escape(SCRIPT) in page.text and html.escape(IMG) in page.text
        assert "<script" not in page.text  # the app itself ships no script either


@pytest.mark.parametrize("path", ["/runs/nope", "/runs/nope/items", "/runs/{toy}/items/nope", "/runs/{toy}/items?task=nope",
                                  "/runs/{toy}/items?show=flips&a=zzz&b=zzz", "/nothing/here"])
def test_unknown_run_item_task_or_cell_is_404(client: TestClient, stored: Stored, path: str) -> None:
    page = client.get(path.format(toy=stored.toy))
    assert page.status_code == 404
    assert 'id="error"' in page.text


def test_a_request_for_another_host_name_is_refused(client: TestClient) -> None:
    """Bound to loopback, the app answers only requests addressed to this machine (no DNS rebinding)."""
    assert client.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_loopback_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("::")
    check_host("127.0.0.1", explicit=False)
    with pytest.raises(HarnessError, match="not a loopback address"):
        check_host("0.0.0.0", explicit=False)
    check_host("0.0.0.0", explicit=True)  # asked for by name


def test_cli_serves_on_loopback_and_warns_for_an_explicit_other_host(stored: Stored, monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import harness.cli.view as handler

    calls: list[tuple[object, ...]] = []
    def serve(db: Path, host: str, port: int, explicit_host: bool, ready: object) -> None:
        calls.append((db, host, port, explicit_host))
        ready(f"http://{host}:{port}/")  # type: ignore[operator]

    monkeypatch.setattr(handler, "serve", serve)
    assert cli("view", "--db", stored.db, "--port", "0") == 0
    port = calls[-1][2]
    assert calls[-1] == (stored.db, "127.0.0.1", port, False) and isinstance(port, int) and port > 0  # 0: a free port, named
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().err
    assert cli("view", "--db", stored.db, "--host", "0.0.0.0") == 0
    assert calls[-1][1:] == ("0.0.0.0", 8765, True)
    assert "anyone who can reach this address" in capsys.readouterr().err


def test_cli_names_a_missing_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("view", "--db", tmp_path / "typo.db") == 2
    err = capsys.readouterr().err
    assert "no database at" in err and not (tmp_path / "typo.db").exists()


def test_browsing_every_page_leaves_the_database_bytes_unchanged(client: TestClient, stored: Stored) -> None:
    before = hashlib.sha256(stored.db.read_bytes()).hexdigest()
    paths = ["/", "/?status=failed", f"/runs/{stored.failed}", f"/runs/{stored.toy}?margin=2", f"/runs/{stored.hostile}"]
    for run in (stored.toy, stored.hostile):
        paths += [f"/runs/{run}/items", f"/runs/{run}/items?show=disagree&q=question", f"/runs/{run}/items/t0", "/static/view.css"]
    for path in paths:
        assert client.get(path).status_code == 200, path
    assert hashlib.sha256(stored.db.read_bytes()).hexdigest() == before


def test_harness_view_command_serves_the_pages(stored: Stored) -> None:
    """The real command in a subprocess: it prints its address, answers there, refuses another Host, stops on a signal."""
    with view_command(stored.db) as url:
        page = fetch(url + f"runs/{stored.toy}", timeout=5)
        assert '<p class="verdict">On toy' in page
        request = urllib.request.Request(url, headers={"Host": "attacker.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400


# -- the items page's filters and sort, and the runs page's dates, on a hand-written store -------------------------------------------
N_HAND = 130  # items of the hand-written run: three pages of 50


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two multiple-choice cells over 130 items: labels (targets) k % 3, clusters "c<k % 4>", item k's margin in cell a
    (k - 65) / 10 (correct choice's log-prob minus the best wrong one's), NaN (unscorable) in a for every 13th item;
    cell b is right on even items. Plus 60 empty runs on 60 days, for the runs page's dates and pages."""
    db = tmp_path_factory.mktemp("hand") / "h.db"
    store = Store(db)
    try:
        store.create_run("hand", "h" * 64, {"spec": {}}, {}, 1)
        for cell in ("a", "b"):
            store.add_cell(StoredCell("hand", cell, "mc", "multiple_choice", f"prompt-{cell}", "0" * 64, 0, "none", "m", {}, ["acc"], N_HAND))
        records = []
        for k in range(N_HAND):
            target, margin, unscorable = k % 3, (k - 65) / 10, k % 13 == 0
            logprobs = [-2.0, -2.0, -2.0]
            logprobs[target] = -2.0 + margin
            if unscorable:
                logprobs = [math.nan] * 3
            for cell in ("a", "b"):
                values = logprobs if cell == "a" else [-1.0, -2.0, -3.0]
                acc = (math.nan if unscorable else float(margin > 0)) if cell == "a" else float(k % 2 == 0)
                response = [{"kind": "loglikelihood", "logprob": v, "is_greedy": False, "n_tokens": 1, "latency_s": 0.0} for v in values]
                records.append(ItemRecord(cell, f"h{k:03d}", k, f"Hand question {k} <b>bold</b>?", [" x", " y", " z"], [], target, response,
                                          None, {"acc": acc}, 0.0, 1, False, f"c{k % 4}"))
        store.write_items("hand", records, {})
        store.finish_run("hand")
        for day in range(60):
            run = f"2025{day:04d}-empty"
            store.create_run(run, f"{day:064d}", {"spec": {}}, {}, 1)
            made = (date(2025, 1, 1) + timedelta(days=day)).isoformat() + "T12:00:00+00:00"
            store.db.execute("UPDATE runs SET created_at = ? WHERE id = ?", (made, run))
    finally:
        store.close()
    return db


@pytest.fixture(scope="module")
def hand_client(hand: Path) -> TestClient:
    return TestClient(create_app(hand), base_url="http://127.0.0.1")


def items_of(page: str) -> list[str]:
    return re.findall(r'<tr class="item" data-item="([^"]+)"', page)


def pager_links(page: str) -> list[dict[str, list[str]]]:
    return [parse_qs(html.unescape(href)) for href in re.findall(r'<nav class="pager">.*?</nav>', page, re.S)[0:1]
            for href in re.findall(r'href="\?([^"]*)"', href)]


@pytest.mark.parametrize(("query", "expected"), [
    ({"show": "unscorable"}, [k for k in range(N_HAND) if k % 13 == 0]),
    ({"label": "2"}, [k for k in range(N_HAND) if k % 3 == 2]),
    ({"cluster": "c1"}, [k for k in range(N_HAND) if k % 4 == 1]),
    ({"cluster": "c1", "label": "0", "show": "disagree"}, [k for k in range(N_HAND) if k % 4 == 1 and k % 3 == 0 and k % 13
                                                           and (k > 65) != (k % 2 == 0)]),
    ({"show": "flips", "a": "a", "b": "b", "cluster": "c2"}, [k for k in range(N_HAND) if k % 4 == 2 and k % 13 and k <= 65]),
    ({"label": "9"}, []), ({"cluster": "nope"}, []),
])
def test_items_page_filters_by_unscorable_label_and_cluster_with_totals(hand_client: TestClient, query: dict[str, str],
                                                                         expected: list[int]) -> None:
    page = hand_client.get("/runs/hand/items", params=query)
    assert page.status_code == 200 and total(page.text) == len(expected)
    assert items_of(page.text) == [f"h{k:03d}" for k in expected][:50]
    if not expected:
        assert "No items match" in page.text
    for value in query.values() if expected else ():  # the form shows what is applied
        assert re.search(rf'<option value="{re.escape(value)}" selected>', page.text)


def test_items_page_offers_the_labels_and_clusters_stored(hand_client: TestClient) -> None:
    page = hand_client.get("/runs/hand/items").text
    assert re.findall(r'<option value="(\d)">choice \1</option>', page) == ["0", "1", "2"]
    assert re.findall(r'<option value="(c\d)">', page) == ["c0", "c1", "c2", "c3"]


def test_items_page_sorts_by_margin_across_pages_and_keeps_the_filters_in_its_links(hand_client: TestClient) -> None:
    scorable = [k for k in range(N_HAND) if k % 13]  # margins rise with k; the unscorable ones have none: last
    order = [f"h{k:03d}" for k in scorable + [k for k in range(N_HAND) if k % 13 == 0]]
    first = hand_client.get("/runs/hand/items", params={"sort": "margin", "a": "a"})
    assert total(first.text) == N_HAND and items_of(first.text) == order[:50]
    assert 'id="margin-note"' in first.text and "most confidently wrong first" in first.text
    margins = re.findall(r'<td class="num margin">([^<]+)</td>', first.text)
    assert margins[:2] == ["-6.40", "-6.30"]  # item 1: (1 - 65) / 10
    (link,) = pager_links(first.text)
    assert link == {"task": ["mc"], "a": ["a"], "sort": ["margin"], "page": ["2"]}
    third = hand_client.get("/runs/hand/items", params={"sort": "margin", "a": "a", "page": "3"})
    assert items_of(third.text) == order[100:] and "—" in third.text  # the unscorable ones, with no margin
    filtered = hand_client.get("/runs/hand/items", params={"sort": "margin", "a": "a", "cluster": "c3", "label": "1", "q": "question"})
    expected = [f"h{k:03d}" for k in scorable if k % 4 == 3 and k % 3 == 1] + [f"h{k:03d}" for k in range(N_HAND) if k % 13 == 0 and k % 12 == 7]
    assert items_of(filtered.text) == expected and total(filtered.text) == len(expected)
    unsorted = hand_client.get("/runs/hand/items", params={"cluster": "c0", "label": "0", "page": "1"})
    assert items_of(unsorted.text) == [f"h{k:03d}" for k in range(N_HAND) if k % 12 == 0]  # split order without sort


def test_items_pager_keeps_every_filter(hand_client: TestClient) -> None:
    page = hand_client.get("/runs/hand/items", params={"show": "flips", "a": "b", "b": "a", "q": "Hand", "page": "1"})
    expected = [k for k in range(N_HAND) if k % 13 and k % 2 == 1 and k > 65]  # wrong in b (odd), right in a (margin > 0)
    assert total(page.text) == len(expected) and len(expected) <= 50 and not pager_links(page.text)
    wide = hand_client.get("/runs/hand/items", params={"label": "1", "q": "question", "show": "all"})
    assert total(wide.text) == len([k for k in range(N_HAND) if k % 3 == 1]) == 43 and not pager_links(wide.text)
    many = hand_client.get("/runs/hand/items", params={"q": "hand", "cluster": "c0", "sort": "margin", "page": "1"})
    assert total(many.text) == 33
    everything = hand_client.get("/runs/hand/items", params={"q": "?", "show": "unscorable", "page": "2"})
    assert total(everything.text) == 10 and items_of(everything.text) == []  # page 2 of one page: empty, total still told


@pytest.mark.parametrize("text", ['"><script>alert(1)</script>', "' OR 1=1 --", '"*" NEAR/2 OR', "%_%", "\\\"", "<b>bold</b>"])
def test_items_search_with_a_hostile_string_is_text(hand_client: TestClient, text: str) -> None:
    page = hand_client.get("/runs/hand/items", params={"q": text, "label": "0"})
    assert page.status_code == 200 and "<script>alert" not in page.text
    shown = re.search(r'<input name="q" type="search" value="([^"]*)"', page.text)
    assert shown and html.unescape(shown.group(1)) == text  # the search box shows it back, escaped
    expected = [k for k in range(N_HAND) if k % 3 == 0] if text == "<b>bold</b>" else []
    assert total(page.text) == len(expected) and items_of(page.text) == [f"h{k:03d}" for k in expected][:50]


def test_runs_page_filters_by_creation_date_with_pages(hand_client: TestClient) -> None:
    january = hand_client.get("/", params={"created_from": "2025-01-01", "created_to": "2025-01-31"})
    runs = re.findall(r'<tr class="run" data-run="([^"]+)"', january.text)
    assert total(january.text) == 31 and runs == [f"2025{d:04d}-empty" for d in range(30, -1, -1)]
    assert 'value="2025-01-01"' in january.text and 'value="2025-01-31"' in january.text
    year = hand_client.get("/", params={"created_to": "2025-12-31"})
    assert total(year.text) == 60  # not the hand run, made today
    (link,) = pager_links(year.text)
    assert link == {"created_to": ["2025-12-31"], "page": ["2"]}
    second = hand_client.get("/", params={"created_to": "2025-12-31", "page": "2"})
    assert re.findall(r'data-run="([^"]+)"', second.text) == [f"2025{d:04d}-empty" for d in range(9, -1, -1)]
    assert "No runs match these filters" in hand_client.get("/", params={"created_to": "2024-12-31"}).text
    assert total(hand_client.get("/", params={"created_from": "not a date"}).text) == 61  # ignored, as an unknown page number is


def test_items_and_runs_pages_kept_between_requests_recompute_after_any_write(hand: Path, tmp_path: Path) -> None:
    """The viewer keeps each page's score table, search and best cells (harness/view/cache.py) until the file changes:
    a rescore rewrites scores in place (no item count changes), and the next page shows the new scores."""
    db = tmp_path / "copy.db"
    db.write_bytes(hand.read_bytes())
    app = create_app(db)
    client = TestClient(app, base_url="http://127.0.0.1")
    assert total(client.get("/runs/hand/items", params={"show": "unscorable"}).text) == 10
    assert total(client.get("/runs/hand/items", params={"show": "unscorable", "q": "question"}).text) == 10  # the table from the cache
    store = Store(db)
    try:
        store.update_scores("hand", [("a", "h000", {"acc": 1.0}, None), ("b", "h001", {"acc": math.nan}, "rescored")])
    finally:
        store.close()
    assert total(client.get("/runs/hand/items", params={"show": "unscorable"}).text) == 10  # h000 scored now, h001 unscorable in b
    assert items_of(client.get("/runs/hand/items", params={"show": "unscorable"}).text)[:2] == ["h001", "h013"]
    assert items_of(client.get("/runs/hand/items", params={"q": "rescored"}).text) == ["h001"]  # the search too


def test_view_cache_bounds_each_kind_and_checks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    db.write_bytes(b"x")
    cache = ViewCache(db, size=2, limits={"small": 3})
    calls: list[str] = []

    def value(name: str) -> str:
        calls.append(name)
        return name

    for name in ("a", "b", "a", "c", "b"):  # a kept (recently used), b pushed out by c, then b again
        cache.get(("big", name), lambda: value(name))
    assert calls == ["a", "b", "c", "b"]
    for name in ("1", "2", "3", "1"):
        cache.get(("small", name), lambda: value(name))
    assert calls[-3:] == ["1", "2", "3"]  # room for three of this kind
    db.write_bytes(b"xy")  # any change to the file: recomputed
    cache.get(("small", "1"), lambda: value("1"))
    assert calls[-1] == "1" and len(calls) == 8
    (tmp_path / "f.db-wal").write_bytes(b"")  # an empty log, as a reader leaves it: no change
    cache.get(("small", "1"), lambda: value("1"))
    assert len(calls) == 8


def _older(db: Path, dropping: str) -> None:
    """Make ``db`` look as an older harness left it: without migration 006's index objects and its record, and (``dropping``
    another name) without that migration's record too."""
    con = sqlite3.connect(db)
    try:
        for kind, name in con.execute("SELECT type, name FROM sqlite_master WHERE name LIKE 'items_search%' OR name IN "
                                      "('items_scores', 'runs_by_created') ORDER BY type = 'table'").fetchall():
            if kind in ("index", "trigger") or (kind == "table" and name == "items_search"):
                con.execute(f"DROP {kind.upper()} IF EXISTS {name}")
        con.execute("DELETE FROM migrations WHERE name IN ('006_view_indices', ?)", (dropping,))
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def test_the_viewer_reads_an_unmigrated_database_without_writing_it(stored: Stored, tmp_path: Path) -> None:
    """A database from before the viewer's indices (migration 006) is read as it is, never migrated (the viewer never
    writes): every page answers, search falls back to LIKE and finds what the index would, and the file is unchanged."""
    db = tmp_path / "old.db"
    shutil.copy(stored.db, db)
    for suffix in ("-wal", "-shm"):
        if Path(f"{stored.db}{suffix}").exists():
            shutil.copy(f"{stored.db}{suffix}", f"{db}{suffix}")
    fresh = TestClient(create_app(stored.db), base_url="http://127.0.0.1")
    expected = total(fresh.get(f"/runs/{stored.toy}/items", params={"q": "question 1"}).text)
    _older(db, "006_view_indices")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    client = TestClient(create_app(db), base_url="http://127.0.0.1")
    for path in ("/", f"/runs/{stored.toy}", f"/runs/{stored.toy}/items", f"/runs/{stored.toy}/items/t0"):
        assert client.get(path).status_code == 200, path
    assert total(client.get(f"/runs/{stored.toy}/items", params={"q": "question 1"}).text) == expected > 0
    wal = Path(f"{db}-wal")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and (not wal.exists() or wal.stat().st_size == 0)  # a reader's empty log
    # one that lacks a column the pages read is refused with how to upgrade it, still without writing
    _older(db, "005_run_lifecycle")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(HarnessError, match="needs migration .*never writes the database: upgrade it once with `harness show"):
        create_app(db)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before and (not wal.exists() or wal.stat().st_size == 0)
