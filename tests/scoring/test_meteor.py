"""METEOR through nltk: ``meteor_nosyn`` on known values (tests/cases/meteor.json, also recomputed with
nltk here), and ``meteor`` refusing clearly, at planning, when WordNet's data is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.cli.app import main
from harness.core.errors import HarnessError
from harness.core.paths import bundled_dir
from harness.scoring import Outcome, get_metric
from harness.scoring.meteor import NoSynonyms, wordnet, words
from harness.tasks.task import Item

CASES = json.loads((Path(__file__).parents[1] / "cases" / "meteor.json").read_text(encoding="utf-8"))["meteor_nosyn"]


def outcome(prediction: str, references: list[str]) -> Outcome:
    return Outcome(item=Item(id="x", row={}, input="", target=tuple(references)), text=prediction, extracted=prediction)


def wordnet_present() -> bool:
    try:
        wordnet()
    except HarnessError:
        return False
    return True


@pytest.mark.parametrize("case", CASES, ids=[c["note"][:30] for c in CASES])
def test_meteor_without_synonyms_matches_the_known_values_and_nltk(case: dict) -> None:
    from nltk.translate.meteor_score import meteor_score

    got = get_metric("meteor_nosyn").score(outcome(case["prediction"], case["references"]))
    assert got == pytest.approx(case["expected"]["meteor_nosyn"], abs=1e-6)
    direct = meteor_score([words(r) for r in case["references"]], words(case["prediction"]), wordnet=NoSynonyms())
    assert got == pytest.approx(direct)


def test_the_two_metrics_are_named_apart_and_higher_is_better() -> None:
    assert get_metric("meteor").higher_is_better and get_metric("meteor_nosyn").higher_is_better
    assert "not comparable" in get_metric("meteor_nosyn").description


@pytest.mark.skipif(wordnet_present(), reason="WordNet data is installed here: meteor works")
def test_meteor_without_wordnet_is_refused_before_the_run_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(HarnessError, match="needs nltk's WordNet data.*use 'meteor_nosyn'"):
        get_metric("meteor").score(outcome("a b", ["a b"]))
    spec = yaml.safe_load((bundled_dir("tasks") / "arithmetic" / "task.yaml").read_text(encoding="utf-8"))
    spec.update(name="arith_meteor", metrics=["meteor"], data={k: str(bundled_dir("tasks") / "arithmetic" / v) for k, v in spec["data"].items()})
    folder = tmp_path / "arith_meteor"
    folder.mkdir()
    (folder / "task.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    code = main(["run", "--task", str(folder), "--model", "scripted:x", "--limit", "2", "--db", str(tmp_path / "h.db"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "WordNet" in err and "Traceback" not in err
    assert not (tmp_path / "h.db").exists() or "running" not in (tmp_path / "h.db").read_bytes().decode(errors="ignore")


@pytest.mark.skipif(not wordnet_present(), reason="no WordNet data here (not on the package registries)")
def test_meteor_with_wordnet_is_nltks_full_meteor() -> None:
    from nltk.translate.meteor_score import meteor_score

    case = CASES[0]
    got = get_metric("meteor").score(outcome(case["prediction"], case["references"]))
    assert got == pytest.approx(meteor_score([words(r) for r in case["references"]], words(case["prediction"])))
