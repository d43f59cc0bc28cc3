"""CLI consistency (issue 19, items 16 and 4): no silent abbreviations, lists as ``a,b`` or ``a b``,
``--version``, ``cache stats --json``, one ``-o/--output`` spelling, and a mistyped folder flag
refused even when nothing is looked up in it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.cli.app import build_parser, main
from harness.store.store import Store
from tests.helpers import write_task


def _verbs() -> dict[str, argparse.ArgumentParser]:
    (verbs,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(verbs.choices)


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_no_parser_abbreviates() -> None:
    assert build_parser().allow_abbrev is False
    assert {name: p.allow_abbrev for name, p in _verbs().items()} == {name: False for name in _verbs()}


def test_tasks_is_not_taken_for_tasks_dir(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--tasks", "toy"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --tasks" in capsys.readouterr().err


def test_an_unknown_option_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--tasks", "toy"])
    assert exit_.value.code == 2
    assert "Did you mean '--task'?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--metrc=acc"])
    assert "Did you mean '--metric'?" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["run", "ab"])
def test_lists_take_commas_spaces_and_repeats(verb: str) -> None:
    args = _parse(verb, "--task", "a,b", "c", "--prompt", "p", "--prompt", "q,r", "--shots", "0,5", "10", "--selector", "first_k,random")
    assert (args.tasks, args.prompts, args.shots, args.selectors) == (["a", "b", "c"], ["p", "q", "r"], [0, 5, 10], ["first_k", "random"])


def test_other_list_flags_take_commas() -> None:
    assert _parse("validate", "toy", "--prompt", "a,b").prompt == ["a", "b"]
    assert _parse("compare", "--task", "a,b").only_tasks == ["a", "b"]
    assert _parse("report", "--task", "a,b", "c").only_tasks == ["a", "b", "c"]
    assert _parse("sensitivity", "--task", "a,b").only_tasks == ["a", "b"]
    assert _parse("rescore", "--metric", "f1,exact_match").metric == ["f1", "exact_match"]
    assert _parse("rescore").metric == []


def test_tune_takes_tasks_as_run_does() -> None:
    assert _parse("tune", "--task", "a", "b", "-o", "out").tasks == ["a", "b"]
    assert _parse("tune", "-t", "a", "-t", "b", "-o", "out", "--weight", "1,3").tasks == ["a", "b"]
    assert _parse("tune", "-t", "a,b", "-o", "out", "--weight", "1", "3").weights == [1.0, 3.0]


@pytest.mark.parametrize("argv", [["run", "--shots", "0,x"], ["run", "--task", "a,,b"], ["tune", "-t", "a", "-o", "o", "--weight", "w"]])
def test_a_bad_list_entry_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parse(*argv)
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("harness ")


def test_cache_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    Store(db).close()
    assert main(["cache", "stats", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"db": str(db), "entries": 0}
    assert main(["cache", "stats", "--db", str(db)]) == 0
    assert capsys.readouterr().out.strip() == f"0 cache entries in {db}"


@pytest.mark.parametrize("verb", ["report", "formats", "sensitivity", "export", "import", "tune"])
def test_one_output_spelling(verb: str) -> None:
    parser = _verbs()[verb]
    outputs = [a for a in parser._actions if a.dest == "output"]
    assert any({"-o", "--output"} <= set(a.option_strings) for a in outputs), verb
    hidden = [s for a in outputs if a.help == argparse.SUPPRESS for s in a.option_strings]
    assert "--output" not in hidden and "-o" not in hidden
    assert "--out " not in parser.format_help() and "--html" not in parser.format_help()


def test_the_old_output_spellings_still_work() -> None:
    assert _parse("formats", "toy", "--prompt", "p", "--out", "d").output == Path("d")
    assert _parse("export", "--out", "d").output == Path("d")
    assert _parse("import", "lm-eval", "x.yaml", "--out", "d").output == Path("d")
    assert _parse("sensitivity", "--html", "r.html").output == Path("r.html")
    assert _parse("sensitivity", "-o", "r.html").output == Path("r.html")


@pytest.mark.parametrize("argv", [["formats", "toy", "--prompt", "p"], ["import", "lm-eval", "x.yaml"]])
def test_a_required_output_is_asked_for(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "-o/--output" in err


@pytest.mark.parametrize("flag", ["--data-dir", "--tasks-dir", "--prompts-dir"])
def test_a_missing_folder_flag_is_refused_with_a_did_you_mean(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").mkdir()
    assert main(["tasks", flag, str(tmp_path / "dta")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert flag in err and str(tmp_path / "dta") in err and "does not exist" in err
    assert f"Did you mean '{tmp_path / 'data'}'?" in err


def test_a_file_given_as_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main(["validate", "toy", "--prompts-dir", str(tmp_path / "notes.txt")]) == 2
    assert "--prompts-dir" in capsys.readouterr().err


def test_an_existing_folder_flag_is_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path / "tasks")
    (tmp_path / "empty").mkdir()
    assert main(["tasks", "--tasks-dir", str(tmp_path / "tasks"), "--data-dir", str(tmp_path / "empty"), "--json"]) == 0
    assert "toy" in {row["name"] for row in json.loads(capsys.readouterr().out)}
