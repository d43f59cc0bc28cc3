"""Confidence sequences and racing (harness/stats/sequential.py, harness/stats/racing.py).

The simulations stop optionally after every round and measure the promise against alpha plus
2.5 Monte Carlo standard errors (the standard error of a proportion alpha over that many runs,
stated in every assert). Each has a contrast that must fail on the same draws (a fixed-n interval
looked at after every round), so the simulation can detect the defect it guards against. Run
``python -m tests.stats.test_sequential`` to print the figures in docs/compare.md.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from harness.stats.racing import Race, RaceState, seeded_order
from harness.stats.sequential import confidence_sequence, extend, put, start, take

ALPHA = 0.05
CASE_FILE = Path(__file__).resolve().parent / "cases" / "sequential.json"
CASES = json.loads(CASE_FILE.read_text())
FIGURES: list[tuple[str, str, float, str]] = []  # (procedure, setting, measured, promise)


def _confseq() -> tuple[Any, Any] | None:
    """confseq 0.0.11's pure-Python modules, if installed; its annotations name np.float_, gone in numpy 2."""
    shim = not hasattr(np, "float_")
    if shim:
        setattr(np, "float_", np.float64)  # noqa: B010
    try:
        return importlib.import_module("confseq.predmix"), importlib.import_module("confseq.betting_strategies")
    except ImportError:
        return None
    finally:
        if shim:
            delattr(np, "float_")


CONFSEQ = _confseq()


def se(sims: int, p: float = ALPHA) -> float:
    return math.sqrt(p * (1 - p) / sims)


def record(procedure: str, setting: str, value: float, promise: str) -> float:
    FIGURES.append((procedure, setting, value, promise))
    print(f"{procedure:<44} {setting:<48} {value:.4f}  ({promise})")
    return value


# -- the confidence sequence against a reference ------------------------------------------------
def paper_bounds_by_confseq(x: np.ndarray, alpha: float, population: int | None) -> tuple[np.ndarray, np.ndarray]:
    """confseq's predictable-mixture engine and bets, with the paper's v_i (centred on the regularised mean)."""
    assert CONFSEQ is not None
    predmix, strategies = CONFSEQ
    t = np.arange(1, len(x) + 1)

    def side(y: np.ndarray) -> np.ndarray:
        mean = (0.5 + np.cumsum(y)) / (t + 1)
        v = (y - np.append(0.5, mean[:-1])) ** 2
        return predmix.predmix_lower_cs(
            y, v, lambda z: strategies.lambda_predmix_eb(z, truncation=0.5, alpha=alpha / 2),
            lambda lam: -np.log(1 - lam) - lam, alpha=alpha / 2, running_intersection=True, N=population,
        )

    return side(x), 1 - side(1 - x)


@pytest.mark.skipif(CONFSEQ is None, reason="confseq is not installed (it needs Boost and a newer pybind11 to build)")
@pytest.mark.parametrize("population", [None, 400])
def test_matches_confseq(population: int | None) -> None:
    x = np.random.default_rng(1).beta(2, 3, 300)
    cs = confidence_sequence(x, ALPHA, population=population)
    lower, upper = paper_bounds_by_confseq(x, ALPHA, population)
    np.testing.assert_allclose(cs.lower, lower, atol=1e-12)
    np.testing.assert_allclose(cs.upper, upper, atol=1e-12)
    # confseq's packaged two-sided CS centres v_i on the raw running mean (0 before any data): close, not equal
    packaged = CONFSEQ[0].predmix_empbern_twosided_cs(x, ALPHA, running_intersection=True, N=population)
    assert np.abs(cs.lower - packaged[0]).max() < 0.02 and np.abs(cs.upper - packaged[1]).max() < 0.02


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["name"])
def test_recorded_confseq_values(case: dict) -> None:
    """Bounds recorded from confseq 0.0.11 (tests/cases/sequential.json): the check runs without the package."""
    x = np.asarray(case["x"])
    lo, hi = case["bounds"]
    cs = confidence_sequence(x, case["alpha"], bounds=(lo, hi), population=case["population"])
    np.testing.assert_allclose(cs.lower, case["lower"], atol=1e-10)
    np.testing.assert_allclose(cs.upper, case["upper"], atol=1e-10)


def test_incremental_and_batched_agree() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(5, 120))
    whole = confidence_sequence(x, ALPHA, population=200)
    state = start(5, ALPHA, population=200)
    pieces_lo, pieces_hi = [], []
    for a, b in [(0, 1), (1, 40), (40, 41), (41, 120)]:
        state, lo, hi = extend(state, x[:, a:b])
        pieces_lo.append(lo)
        pieces_hi.append(hi)
    np.testing.assert_allclose(np.concatenate(pieces_lo, axis=1), whole.lower, atol=1e-12)
    np.testing.assert_allclose(np.concatenate(pieces_hi, axis=1), whole.upper, atol=1e-12)
    # extending a sub-batch and putting it back equals extending everything
    state = start(5, ALPHA)
    state, _, _ = extend(state, x[:, :10])
    index = np.array([1, 3])
    part, lo, _ = extend(take(state, index), x[index, 10:30])
    state = put(state, index, part)
    np.testing.assert_allclose(lo[:, -1], confidence_sequence(x[index, :30], ALPHA).lower[:, -1], atol=1e-12)
    assert list(state.t) == [10, 30, 10, 30, 10]


def test_bounds_and_finite_population() -> None:
    rng = np.random.default_rng(3)
    values = rng.integers(-1, 2, size=500).astype(float)  # paired differences of 0/1 scores
    cs = confidence_sequence(values, ALPHA, bounds=(-1, 1), population=500)
    assert cs.covers(values.mean())
    iid = confidence_sequence(values, ALPHA, bounds=(-1, 1))
    # all 500 items seen: the benchmark's own mean is nearly pinned down, a population's is not
    assert cs.upper[-1] - cs.lower[-1] < 0.1 < 0.2 < iid.upper[-1] - iid.lower[-1]
    assert np.all(np.diff(cs.lower) >= 0) and np.all(np.diff(cs.upper) <= 0)
    assert cs.lower[0] == -1 and cs.upper[0] == 1
    with pytest.raises(ValueError, match="in \\[-1.0, 1.0\\]"):
        confidence_sequence([0.5, 2.0], bounds=(-1, 1))
    with pytest.raises(ValueError, match="population"):
        confidence_sequence(np.zeros(11), population=10)
    with pytest.raises(ValueError, match="finite"):
        confidence_sequence([0.5, float("nan")])


# -- (a) coverage at every time at once ------------------------------------------------------------
def fixed_n_covers_at_every_look(values: np.ndarray, mean: np.ndarray, looks: np.ndarray, alpha: float) -> np.ndarray:
    """The defect: a fixed-n t interval, recomputed and looked at after every round."""
    n = looks[None, :]
    total = np.cumsum(values, axis=1)[:, looks - 1]
    squares = np.cumsum(values**2, axis=1)[:, looks - 1]
    centre = total / n
    sd = np.sqrt(np.maximum(squares / n - centre**2, 0) * n / (n - 1))
    half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n)
    return np.all(np.abs(centre - mean[:, None]) <= half, axis=1)


COVERAGE_SETTINGS: dict[str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray, tuple[float, float], int | None]]] = {
    # paired differences of 0/1 scores: P(+1) = 0.2, P(-1) = 0.1
    "0/1 differences, i.i.d.": lambda rng, sims, n: (rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.7, 0.2], size=(sims, n)), np.full(sims, 0.1), (-1, 1), None),
    # continuous scores in [0, 1], skewed
    "Beta(0.5, 3) scores, i.i.d.": lambda rng, sims, n: (rng.beta(0.5, 3.0, size=(sims, n)), np.full(sims, 0.5 / 3.5), (0, 1), None),
}


def finite_population(rng: np.random.Generator, sims: int, n: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float], int | None]:
    """One fixed benchmark of n items, seen in a fresh random order each run: the truth is its own mean."""
    items = rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.6, 0.25], size=n)
    order = np.argsort(rng.uniform(size=(sims, n)), axis=1)
    return items[order], np.full(sims, items.mean()), (-1, 1), n


COVERAGE_SETTINGS["0/1 differences, one benchmark, random order"] = finite_population


@pytest.mark.parametrize("setting", list(COVERAGE_SETTINGS))
def test_confidence_sequence_covers_at_every_time(setting: str) -> None:
    sims, n = 2000, 1000
    rng = np.random.default_rng(11)
    values, mean, bounds, population = COVERAGE_SETTINGS[setting](rng, sims, n)
    covered = confidence_sequence(values, ALPHA, bounds=bounds, population=population).covers(mean).mean()
    looks = np.arange(20, n + 1, 20)
    naive = fixed_n_covers_at_every_look(values, mean, looks, ALPHA).mean()
    record("CS covers the mean at every t (1000 items)", f"{setting}, {sims} runs", covered, f">= {1 - ALPHA}")
    record("fixed-n 95% t interval, 50 looks", f"{setting}, {sims} runs", naive, "(the defect)")
    assert covered >= 1 - ALPHA - 2.5 * se(sims), f"coverage {covered:.4f} < {1 - ALPHA} - 2.5 MC se ({se(sims):.4f})"
    assert naive < 1 - ALPHA - 2.5 * se(sims), f"the fixed-n interval looked at 50 times covered {naive:.4f}: the simulation has no power"


# -- (b) racing: the best cell is not eliminated, no wrong winner ------------------------------------
def latent_scores(rng: np.random.Generator, offsets: np.ndarray, n: int, shared: float, binary: bool = True) -> np.ndarray:
    """Scores of K cells on n items: a shared item effect (correlation between cells) plus each cell's noise."""
    z = shared * rng.normal(size=(1, n)) + offsets[:, None] + rng.normal(size=(len(offsets), n))
    return (z > 0).astype(float) if binary else stats.norm.cdf(z)


def true_means(offsets: np.ndarray, shared: float) -> np.ndarray:
    return np.asarray(stats.norm.cdf(offsets / math.sqrt(1 + shared**2)))


SCENARIOS = {
    # name: (offsets for K cells, shared item effect, binary scores)
    "global null": (lambda k: np.zeros(k), 1.0, True),
    "tie at the top": (lambda k: np.concatenate([np.zeros(max(2, k // 4)), -np.linspace(0.1, 0.6, k - max(2, k // 4))]), 1.0, True),
    "correlated cells, continuous": (lambda k: np.concatenate([np.zeros(2), -np.linspace(0.05, 0.4, k - 2)]), 3.0, False),
}


def run_race(scores: np.ndarray, rounds: np.ndarray, direction: int = 1, margin: float | None = None, population: int | None = None,
             max_items: int | None = None) -> RaceState:
    names = [f"c{k}" for k in range(scores.shape[0])]
    race = Race(names, ALPHA, margin=margin, direction=direction, population=population, max_items=max_items or scores.shape[1])
    start_at = 0
    for size in rounds:
        block = slice(start_at, min(start_at + int(size), scores.shape[1]))
        start_at = block.stop
        state = race.update({name: scores[k, block] for k, name in enumerate(names) if name in race.state.survivors})
        if state.stopped:
            break
    return race.state


def race_errors(state: RaceState, means: np.ndarray, direction: int = 1) -> tuple[bool, bool]:
    """(best eliminated or wrong winner, any false claim: an elimination by a cell not truly better, a false equivalence)."""
    index = {c.cell: k for k, c in enumerate(state.cells)}
    score = direction * means
    best = set(np.flatnonzero(score == score.max()))
    lost_best = any(index[c] in best for c in state.eliminated) or (state.reason == "winner" and index[state.survivors[0]] not in best)
    false = any(score[index[c.beaten_by]] <= score[index[c.cell]] for c in state.cells if c.beaten_by is not None)
    if state.reason == "equivalent" and state.margin is not None:
        alive = [index[c] for c in state.survivors]
        false |= bool(np.ptp(means[alive]) >= state.margin)
    return lost_best, false


def naive_race_errors(scores: np.ndarray, ends: np.ndarray, alpha: float) -> float:
    """The defect on the same draws: Bonferroni'd fixed-n t intervals per pair, looked at after every round.
    Under the global null any elimination is an error, so this is P(some pair's interval excludes 0 at some round)."""
    sims, k, _ = scores.shape
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    level = alpha / len(pairs)
    n = ends[None, :].astype(float)
    excluded = np.zeros(sims, dtype=bool)
    for i, j in pairs:
        d = scores[:, i] - scores[:, j]
        total, squares = np.cumsum(d, axis=1)[:, ends - 1], np.cumsum(d**2, axis=1)[:, ends - 1]
        sd = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0) * n / (n - 1))
        excluded |= np.any(np.abs(total / n) > stats.t.ppf(1 - level / 2, n - 1) * sd / np.sqrt(n), axis=1)
    return float(excluded.mean())


RACE_CASES = [
    (3, "global null", 1000), (3, "tie at the top", 600), (3, "correlated cells, continuous", 600),
    (8, "global null", 400), (8, "tie at the top", 400), (8, "correlated cells, continuous", 300),
    (20, "global null", 150), (20, "tie at the top", 150), (20, "correlated cells, continuous", 150),
]


@pytest.mark.parametrize(("cells", "scenario", "sims"), RACE_CASES)
def test_race_never_eliminates_the_best(cells: int, scenario: str, sims: int) -> None:
    n = 1200
    offsets_of, shared, binary = SCENARIOS[scenario]
    offsets = offsets_of(cells)
    means = true_means(offsets, shared)
    rng = np.random.default_rng(1000 * cells + len(scenario))
    rounds = rng.integers(20, 101, size=n // 20)  # seeded round sizes, differing round to round
    all_scores = np.stack([latent_scores(rng, offsets, n, shared, binary) for _ in range(sims)])
    lost = false = 0
    evaluations = 0
    for s in range(sims):
        state = run_race(all_scores[s], rounds)
        a, b = race_errors(state, means)
        lost, false, evaluations = lost + a, false + b, evaluations + state.evaluations
    setting = f"{cells} cells, {scenario}, {sims} runs"
    record("race: best eliminated or wrong winner", setting, lost / sims, f"<= {ALPHA}")
    record("race: any false elimination", setting, false / sims, f"<= {ALPHA}")
    bound = ALPHA + 2.5 * se(sims)
    assert lost / sims <= bound, f"best lost in {lost / sims:.4f} of runs > {ALPHA} + 2.5 MC se ({se(sims):.4f})"
    assert false / sims <= bound, f"false eliminations in {false / sims:.4f} of runs > {ALPHA} + 2.5 MC se ({se(sims):.4f})"
    if scenario == "global null" and cells <= 8:
        ends = np.minimum(np.cumsum(rounds), n)
        naive = record("fixed-n Bonferroni race, looked at every round", setting, naive_race_errors(all_scores, np.unique(ends), ALPHA), "(the defect)")
        assert naive > bound, f"the naive race erred in only {naive:.4f} of runs: the simulation has no power"


def test_race_on_one_benchmark_with_ties_and_a_margin() -> None:
    """Without replacement from one 600-item benchmark whose top three cells have exactly equal means
    (the same scores on a shuffled third of the items), lower-is-better, with an equivalence margin."""
    sims, n, margin = 300, 600, 0.08
    rng = np.random.default_rng(21)
    lost = false = equivalent = 0
    for _ in range(sims):
        base = latent_scores(rng, np.array([0.3]), n, 1.0)[0]
        top = [base]
        for _ in range(2):
            tied = base.copy()
            part = rng.choice(n, n // 3, replace=False)
            tied[part] = tied[rng.permutation(part)]
            top.append(tied)
        scores = np.vstack([np.array(top), latent_scores(rng, np.array([0.0, -0.1, -0.4, -0.8, -1.0]), n, 1.0)])
        errors = 1.0 - scores  # an error rate: lower is better
        order = seeded_order(n, int(rng.integers(1 << 31)))
        state = run_race(errors[:, order], rng.integers(20, 81, size=n // 20 + 1), direction=-1, margin=margin, population=n)
        a, b = race_errors(state, errors.mean(axis=1), direction=-1)
        lost, false, equivalent = lost + a, false + b, equivalent + (state.reason == "equivalent")
    setting = f"8 cells, 3 tied, one benchmark of {n}, {sims} runs"
    record("race (without replacement): best eliminated", setting, lost / sims, f"<= {ALPHA}")
    record("race (without replacement): any false claim", setting, false / sims, f"<= {ALPHA}")
    assert lost / sims <= ALPHA + 2.5 * se(sims), f"best lost in {lost / sims:.4f} of runs (MC se {se(sims):.4f})"
    assert false / sims <= ALPHA + 2.5 * se(sims), f"false claims in {false / sims:.4f} of runs (MC se {se(sims):.4f})"
    assert equivalent > 0  # the margin does get used


# -- (c) fewer item evaluations on clear gaps ---------------------------------------------------------
def test_race_saves_evaluations_on_clear_gaps() -> None:
    sims, cells, n = 40, 8, 2000
    offsets = np.array([0.9, 0.6, 0.45, 0.3, 0.0, -0.2, -0.3, -0.5])
    rng = np.random.default_rng(31)
    ratios, agree = [], 0
    for _ in range(sims):
        scores = latent_scores(rng, offsets, n, 1.0)
        state = run_race(scores, np.full(n // 50, 50), population=n)
        ratios.append(cells * n / state.evaluations)
        agree += state.reason == "winner" and state.survivors == (f"c{int(np.argmax(scores.mean(axis=1)))}",)
    ratio = float(np.mean(ratios))
    record("race: full evaluations / racing evaluations", f"8 cells, gaps >= 5 points, {n} items, {sims} runs", ratio, ">= 3")
    record("race: same winner as the full comparison", f"8 cells, gaps >= 5 points, {n} items, {sims} runs", agree / sims, "")
    assert ratio >= 3, f"racing used only {ratio:.2f}x fewer evaluations than the full comparison"
    assert agree >= sims - 2


# -- the race's bookkeeping -------------------------------------------------------------------------
def test_race_records_who_stopped_when_and_why() -> None:
    rng = np.random.default_rng(41)
    scores = latent_scores(rng, np.array([1.0, 0.0, -1.5]), 400, 0.5)
    race = Race(["a", "b", "c"], ALPHA, population=400)
    assert race.state.reason == "racing" and race.state.survivors == ("a", "b", "c") and race.state.round == 0
    t = 0
    while not race.state.stopped:
        race.update({name: scores[k, t:t + 40] for k, name in enumerate("abc") if name in race.state.survivors})
        t += 40
    state = race.state
    assert state.reason == "winner" and state.decided and state.survivors == ("a",)
    c = state.outcome("c")
    assert c.status == "eliminated" and c.beaten_by in ("a", "b") and c.difference is not None and c.difference[0] > 0
    assert c.items == 40 * c.round and c.round <= state.outcome("b").round
    assert state.evaluations == sum(o.items for o in state.cells)
    assert state.pair_alpha == pytest.approx(ALPHA / 3) and "never eliminated" in state.guarantee()
    with pytest.raises(ValueError, match="stopped"):
        race.update({"a": [1.0]})


def test_race_directions_agree_and_inputs_are_checked() -> None:
    rng = np.random.default_rng(42)
    scores = latent_scores(rng, np.array([0.8, 0.0, 0.0, -0.8]), 600, 1.0)
    up = run_race(scores, np.full(20, 30))
    down = run_race(1 - scores, np.full(20, 30), direction=-1)
    assert [(c.status, c.round, c.beaten_by) for c in up.cells] == [(c.status, c.round, c.beaten_by) for c in down.cells]
    race = Race(["a", "b"], ALPHA)
    with pytest.raises(ValueError, match="within"):
        race.update({"a": [1.5]})
    with pytest.raises(ValueError, match="unknown"):
        race.update({"z": [1.0]})
    with pytest.raises(ValueError, match="distinct"):
        Race(["a", "a"])


def test_race_pairs_use_the_items_both_cells_have() -> None:
    race = Race(["a", "b", "c"], ALPHA, margin=0.3, bounds=(0, 10))
    state = race.update({"a": np.full(50, 5.0), "b": np.full(30, 5.0), "c": np.full(10, 5.0)})
    assert {(p.a, p.b): p.n for p in state.pairs} == {("a", "b"): 30, ("a", "c"): 10, ("b", "c"): 10}
    state = race.update({"b": np.full(20, 5.0), "c": np.full(40, 5.0)})
    assert {(p.a, p.b): p.n for p in state.pairs} == {("a", "b"): 50, ("a", "c"): 50, ("b", "c"): 50}
    for _ in range(40):  # identical cells: the sequences close in on 0 until all three are equivalent
        if state.stopped:
            break
        state = race.update({name: np.full(100, 5.0) for name in "abc"})
    assert state.reason == "equivalent" and all(c.status == "equivalent" for c in state.cells)


def test_race_budgets() -> None:
    same = np.full(300, 1.0)
    assert run_race(np.vstack([same, same]), np.full(10, 30), max_items=90).reason == "budget"
    race = Race(["a", "b"], ALPHA, max_evaluations=100)
    assert race.update({"a": same[:40], "b": same[:40]}).reason == "racing"
    state = race.update({"a": same[:10], "b": same[:10]})
    assert state.reason == "budget" and not state.decided and {c.status for c in state.cells} == {"undecided"}
    race = Race(["a", "b"], ALPHA, population=50)
    assert race.update({"a": same[:50], "b": same[:50]}).reason == "exhausted"


def record_cases() -> None:
    """Write tests/stats/cases/sequential.json from confseq (``python -m tests.stats.test_sequential --record-cases``)."""
    rng = np.random.default_rng(7)
    draws = [
        ("beta scores in [0, 1], i.i.d.", rng.beta(2, 3, 60), (0.0, 1.0), 0.05, None),
        ("0/1 differences in [-1, 1], i.i.d.", rng.choice([-1.0, 0.0, 1.0], p=[0.2, 0.5, 0.3], size=80), (-1.0, 1.0), 0.01, None),
        ("0/1 differences, all of a 50-item benchmark in random order", rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.6, 0.3], size=50), (-1.0, 1.0), 0.1, 50),
    ]
    cases = []
    for name, x, (lo, hi), alpha, population in draws:
        lower, upper = paper_bounds_by_confseq((x - lo) / (hi - lo), alpha, population)
        cases.append({"name": name, "x": x.tolist(), "bounds": [lo, hi], "alpha": alpha, "population": population,
                      "lower": (lo + (hi - lo) * lower).tolist(), "upper": (lo + (hi - lo) * upper).tolist()})
    about = ("Bounds of the PrPl-EB confidence sequence (Waudby-Smith & Ramdas 2023) computed by confseq 0.0.11's "
             "predmix_lower_cs with its lambda_predmix_eb bets (truncation 1/2, alpha/2 per side, running intersection, N for "
             "without replacement) and the paper's v_i = (x_i - mu_{i-1})^2 on values rescaled to [0, 1]; written by "
             "tests/stats/test_sequential.py record_cases().")
    CASE_FILE.parent.mkdir(exist_ok=True)
    CASE_FILE.write_text(json.dumps({"_about": about, "cases": cases}, indent=1) + "\n")


def main() -> None:
    if "--record-cases" in sys.argv:
        record_cases()
        return
    for setting in COVERAGE_SETTINGS:
        test_confidence_sequence_covers_at_every_time(setting)
    for cells, scenario, sims in RACE_CASES:
        test_race_never_eliminates_the_best(cells, scenario, sims)
    test_race_on_one_benchmark_with_ties_and_a_margin()
    test_race_saves_evaluations_on_clear_gaps()
    print("\n| procedure | setting | measured | promise |\n|---|---|---|---|")
    for procedure, setting, value, promise in FIGURES:
        print(f"| {procedure} | {setting} | {value:.4f} | {promise} |")


if __name__ == "__main__":
    main()
