"""Item response theory for item-efficient estimates: a 2PL model, anchor items, and the full-set score from them.

**The model.** Respondent i (a stored cell: one model under one prompt setting) answers item j right with
probability ``sigmoid(a_j * theta_i + c_j)``: ``a_j > 0`` is the item's discrimination, ``b_j = -c_j / a_j`` its
difficulty, ``theta_i`` the respondent's ability, ``theta ~ N(0, 1)`` (which fixes the scale).

**The fit** (``fit_2pl``) is marginal maximum likelihood (Bock & Aitkin 1981): abilities are integrated out on a
fixed grid of ``quadrature`` nodes, and the item parameters maximise the marginal log-likelihood plus log priors
``log a_j ~ N(0, prior_log_a^2)`` and ``c_j ~ N(0, prior_intercept^2)`` (MAP; Mislevy 1986). The priors keep items that
every respondent got right (or wrong) finite, which plain ML sends to infinity. The gradient is Fisher's identity (the
posterior-expected counts of an EM step), maximised by L-BFGS-B. Missing responses (NaN) are left out of the
likelihood. With ``prior_log_a=None, prior_intercept=None`` it is plain MML, as ``girth.twopl_mml`` computes
(tests/stats/cases/irt.json holds girth 0.8.0's estimates on a simulated data set; tests/stats/test_irt.py checks them).

**Anchors** (``choose_anchors``): the items are sorted by their predicted accuracy over the fitting respondents
(the mean of ``p_j(theta_i)``: what the model says about how hard each item is for respondents like these), cut
into ``k // 2`` strata of (nearly) equal size, and two items are drawn at random (seeded) in each (three in one when
``k`` is odd). This is tinyBenchmarks' clustering of items by their IRT parameters (Polo et al. 2024), with one
change: a random draw inside each stratum instead of the item nearest the centre, so the anchors are a stratified
random sample with known inclusion probabilities, and the interval below holds whether or not the IRT model fits.

**The estimate** (``estimate``), for a new respondent that answered only the anchors, of its mean score over all
J items: the model-assisted (generalised regression, GREG) estimator of survey sampling (Särndal, Swensson &
Wretman 1992, ch. 6), with the 2PL as the working model:

    theta_hat = EAP of theta from the anchor answers                    p_j = sigmoid(a_j theta_hat + c_j), all j
    estimate  = (1/J) sum_j p_j + sum_h W_h mean_{anchors in h}(y - p)  W_h = N_h / J (stratum share)
    var       = max(v_JK, sum_h W_h^2 (1 - n_h/N_h) S_h^2 / n_h)

v_JK is the stratified delete-one jackknife (JKn; Wolter 2007, ch. 4) of the whole estimator, theta_hat refitted in
every replicate (so the variance of theta_hat is in it), with the finite-population correction. The second term is a
floor: S_h^2 is the within-stratum residual variance of the cells the model was fitted on (``residual_variance``, kept
in the anchors file; without it, the model's p(1 - p) at theta_hat), for the draws whose two residuals per stratum
happen to agree. The interval is estimate +- t_df sqrt(var), df = Satterthwaite's effective degrees of freedom of
v_JK (Cochran 1977, 5.4: few strata carrying the variance give few df) when v_JK is used, else the number of strata;
clipped to what the anchors already fix ([known right / J, (known right + unseen) / J]).
The residual term makes the estimate unbiased over the draw of the anchors for *any* respondent, however badly the
model predicts it (a prompt with its own item effects, a cell that always answers 'D'); the model only shrinks
the variance. So the guarantee: **over the seeded draw of the anchors within their strata, the interval covers the
respondent's full-set mean with probability about ``confidence`` or more** (a t approximation, conservative: 0.95-0.98
for 95% in tests/stats/test_irt.py, under the 2PL and under misfit; 0.96-0.99 on held-out prompt variants,
docs/compare.md). Not claimed: coverage for a fixed anchor set across many
respondents (their errors are correlated, as they share the anchors).

Also returned for comparison: ``irt`` (the model alone: known anchors plus the predicted rest, tinyBenchmarks'
p-IRT) and ``stratified`` (the anchors' stratified mean, no model).

Pure numpy/scipy: no harness types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
IntArray = NDArray[np.int64]
METHOD = "2PL, marginal maximum likelihood with priors (log a ~ N(0, 0.5^2), c ~ N(0, 2.5^2)), Gauss-Hermite-like grid of 61 nodes"
ESTIMATOR = "model-assisted (GREG) estimator over a stratified random sample of anchors, 2PL working model"
PRIOR_LOG_A = 0.5
PRIOR_INTERCEPT = 2.5
QUADRATURE = 61
BOUND = 5.0  # the ability grid: [-BOUND, BOUND]


class IRTError(ValueError):
    """Input the model cannot be fitted on or estimated from (the message says what was expected)."""


@dataclass(frozen=True)
class ItemParameters:
    """2PL parameters of J items: ``p_j(theta) = sigmoid(discrimination_j * theta + intercept_j)``."""

    discrimination: Array
    intercept: Array

    @property
    def difficulty(self) -> Array:
        """b_j = -c_j / a_j: the ability at which the item is answered right half the time."""
        return -self.intercept / self.discrimination

    @property
    def n_items(self) -> int:
        return int(self.discrimination.shape[0])

    def prob(self, theta: ArrayLike) -> Array:
        """P(right) for each ability in ``theta`` (shape (T,)) and item: shape (T, J)."""
        t = np.atleast_1d(np.asarray(theta, dtype=float))
        return _sigmoid(t[:, None] * self.discrimination[None, :] + self.intercept[None, :])

    def information(self, theta: ArrayLike) -> Array:
        """Fisher information of each item at each ability, a^2 p (1 - p): shape (T, J)."""
        p = self.prob(theta)
        return np.asarray(self.discrimination[None, :] ** 2 * p * (1 - p), dtype=float)


@dataclass(frozen=True)
class Fit2PL:
    items: ItemParameters
    abilities: Array  # EAP ability of each respondent
    ability_sd: Array  # its posterior sd
    log_likelihood: float  # marginal log-likelihood at the estimate (priors not included)
    iterations: int
    converged: bool
    prior_log_a: float | None
    prior_intercept: float | None
    n_respondents: int


@dataclass(frozen=True)
class AnchorDesign:
    """The anchors: a stratified random sample of the items. ``strata[j]`` is item j's stratum (0..H-1), ``anchors``
    the chosen item indices (sorted), ``order`` the items from easiest (highest predicted accuracy) to hardest."""

    strata: IntArray
    anchors: IntArray
    seed: int

    @property
    def n_strata(self) -> int:
        return int(self.strata.max()) + 1


@dataclass(frozen=True)
class AnchorEstimate:
    estimate: float  # the GREG estimate of the mean score over all J items
    low: float
    high: float
    confidence: float
    se: float
    irt: float  # known anchors + the model's predictions for the rest (p-IRT)
    stratified: float  # the anchors' stratified mean
    theta: float  # EAP ability from the anchors
    theta_sd: float
    n_anchors: int
    n_items: int
    df: int


def _sigmoid(x: Array) -> Array:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=float)


def _log_sigmoid(x: Array) -> Array:
    return np.asarray(-np.logaddexp(0.0, -x), dtype=float)


def _grid(n: int = QUADRATURE, bound: float = BOUND) -> tuple[Array, Array]:
    nodes = np.linspace(-bound, bound, n)
    log_w = -0.5 * nodes**2
    log_w -= np.logaddexp.reduce(log_w)
    return nodes, log_w


def _responses(responses: ArrayLike) -> tuple[Array, Array]:
    x = np.asarray(responses, dtype=float)
    if x.ndim != 2:
        raise IRTError(f"responses must be a respondents x items matrix, got shape {x.shape}")
    mask = ~np.isnan(x)
    seen = x[mask]
    if not np.all((seen == 0) | (seen == 1)):
        bad = seen[(seen != 0) & (seen != 1)][0]
        raise IRTError(f"a 2PL model needs 0/1 item scores (right/wrong); found the score {bad:g}")
    return np.where(mask, x, 0.0), mask.astype(float)


def _posterior(items: ItemParameters, y: Array, mask: Array, nodes: Array, log_w: Array) -> tuple[Array, Array]:
    """Each respondent's posterior over the grid (N, Q) and its log marginal likelihood (N,)."""
    logits = nodes[:, None] * items.discrimination[None, :] + items.intercept[None, :]  # (Q, J)
    lp, lq = _log_sigmoid(logits), _log_sigmoid(-logits)
    ll = y @ lp.T + (mask - y) @ lq.T  # (N, Q)
    joint = ll + log_w[None, :]
    marginal = np.logaddexp.reduce(joint, axis=1)
    return np.exp(joint - marginal[:, None]), marginal


def fit_2pl(responses: ArrayLike, *, prior_log_a: float | None = PRIOR_LOG_A, prior_intercept: float | None = PRIOR_INTERCEPT,
            quadrature: int = QUADRATURE, max_iter: int = 2000, tol: float = 1e-8) -> Fit2PL:
    """Fit a 2PL model to a respondents x items matrix of 0/1 scores (NaN: not answered). See the module docstring."""
    from scipy.optimize import minimize  # lazily: the stats package is imported where scipy is not needed

    y, mask = _responses(responses)
    n, j = y.shape
    if n < 3:
        raise IRTError(f"an IRT fit needs at least 3 respondents (cells), got {n}")
    if j < 2:
        raise IRTError(f"an IRT fit needs at least 2 items, got {j}")
    if np.any(mask.sum(axis=0) == 0):
        raise IRTError(f"{int(np.sum(mask.sum(axis=0) == 0))} item(s) were answered by no respondent")
    nodes, log_w = _grid(quadrature)
    # start: intercepts from the items' logit accuracy (shrunk towards 0.5), discriminations 1
    acc = (y.sum(axis=0) + 0.5) / (mask.sum(axis=0) + 1.0)
    start = np.concatenate([np.zeros(j), np.log(acc / (1 - acc))])
    lo_a, hi_a = (math.log(0.2), math.log(5.0)) if prior_log_a is None else (math.log(0.01), math.log(50.0))
    bounds = [(lo_a, hi_a)] * j + [(-30.0, 30.0)] * j

    def objective(params: Array) -> tuple[float, Array]:
        log_a, c = params[:j], params[j:]
        a = np.exp(log_a)
        items = ItemParameters(a, c)
        post, marginal = _posterior(items, y, mask, nodes, log_w)
        expected_right = post.T @ y  # (Q, J)
        expected_n = post.T @ mask
        p = _sigmoid(nodes[:, None] * a[None, :] + c[None, :])
        resid = expected_right - expected_n * p
        grad_c = resid.sum(axis=0)
        grad_log_a = a * (nodes[:, None] * resid).sum(axis=0)
        value = float(marginal.sum())
        if prior_log_a is not None:
            value -= float(np.sum(log_a**2)) / (2 * prior_log_a**2)
            grad_log_a = grad_log_a - log_a / prior_log_a**2
        if prior_intercept is not None:
            value -= float(np.sum(c**2)) / (2 * prior_intercept**2)
            grad_c = grad_c - c / prior_intercept**2
        return -value, -np.concatenate([grad_log_a, grad_c])

    result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": max_iter, "ftol": tol * 1e-3, "gtol": tol})
    items = ItemParameters(np.exp(result.x[:j]), np.asarray(result.x[j:], dtype=float))
    post, marginal = _posterior(items, y, mask, nodes, log_w)
    theta = post @ nodes
    sd = np.sqrt(np.maximum(post @ nodes**2 - theta**2, 0.0))
    return Fit2PL(items, theta, sd, float(marginal.sum()), int(result.nit), bool(result.success), prior_log_a, prior_intercept, n)


def ability(items: ItemParameters, answers: ArrayLike, which: ArrayLike | None = None, quadrature: int = QUADRATURE) -> tuple[float, float]:
    """EAP ability (and posterior sd) of one respondent from its 0/1 ``answers`` to the items ``which`` (all by default)."""
    x = np.asarray(answers, dtype=float)
    sub = items if which is None else ItemParameters(items.discrimination[np.asarray(which)], items.intercept[np.asarray(which)])
    if x.shape != (sub.n_items,):
        raise IRTError(f"{x.shape[0] if x.ndim else 0} answers for {sub.n_items} items")
    y, mask = _responses(x[None, :])
    nodes, log_w = _grid(quadrature)
    post, _ = _posterior(sub, y, mask, nodes, log_w)
    theta = float(post[0] @ nodes)
    return theta, float(math.sqrt(max(float(post[0] @ nodes**2) - theta**2, 0.0)))


def choose_anchors(items: ItemParameters, abilities: ArrayLike, k: int, seed: int) -> AnchorDesign:
    """A stratified random sample of ``k`` anchor items (see the module docstring): ``k // 2`` strata of nearly equal
    size by predicted accuracy over the respondents of ``abilities``, two items drawn in each (three in the first when
    ``k`` is odd)."""
    j = items.n_items
    if k < 4:
        raise IRTError(f"-k must be at least 4 (two anchors in each of at least two strata, so the interval has a variance), got {k}")
    if k > j:
        raise IRTError(f"-k {k} is more than the {j} items the model was fitted on")
    theta = np.asarray(abilities, dtype=float)
    predicted = items.prob(theta).mean(axis=0)
    order = np.lexsort((np.arange(j), -items.discrimination, -predicted))  # easiest first; ties by discrimination, then index
    n_strata = k // 2
    strata = np.empty(j, dtype=np.int64)
    for h, members in enumerate(np.array_split(order, n_strata)):
        strata[members] = h
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for h in range(n_strata):
        members = np.flatnonzero(strata == h)
        take = 2 + (1 if (h == 0 and k % 2) else 0)
        chosen.extend(int(m) for m in rng.choice(members, size=min(take, members.size), replace=False))
    return AnchorDesign(strata, np.sort(np.asarray(chosen, dtype=np.int64)), seed)


def residual_variance(items: ItemParameters, responses: ArrayLike, abilities: ArrayLike, strata: ArrayLike) -> Array:
    """Per stratum, the within-stratum variance of the residuals y_ij - p_j(theta_i) of the fitting respondents (each
    respondent's variance over the stratum's items, averaged over respondents): how predictable the stratum's items
    are for respondents like these, the floor of ``estimate``'s variance (NaN answers left out)."""
    y = np.asarray(responses, dtype=float)
    resid = y - items.prob(abilities)
    labels = np.asarray(strata, dtype=np.int64)
    out = np.zeros(int(labels.max()) + 1)
    for h in range(out.size):
        block = resid[:, labels == h]
        seen = ~np.isnan(block)
        counts = seen.sum(axis=1)
        ok = counts > 1
        if not ok.any():
            continue
        means = np.nansum(block, axis=1)[ok] / counts[ok]
        ss = np.nansum((block[ok] - means[:, None]) ** 2, axis=1)
        out[h] = float(np.mean(ss / (counts[ok] - 1)))
    return out


def _greg(items: ItemParameters, strata: IntArray, sizes: IntArray, idx: IntArray, y: Array, weight: Array) -> Array:
    """The GREG estimate under each row of anchor weights relative to the design's (1: as drawn; 0: deleted; a
    jackknife replicate reweights the rest of its stratum), theta_hat re-estimated with the same weights: shape (R,)."""
    nodes, log_w = _grid()
    sub = ItemParameters(items.discrimination[idx], items.intercept[idx])
    post, _ = _posterior(sub, y[None, :] * weight, weight, nodes, log_w)
    p = items.prob(post @ nodes)  # (R, J)
    n_h = np.bincount(strata[idx], minlength=sizes.size)
    design = sizes[strata[idx]] / n_h[strata[idx]]  # N_h / n_h: how many items each anchor stands for
    return np.asarray((p.sum(axis=1) + (weight * design[None, :] * (y[None, :] - p[:, idx])).sum(axis=1)) / strata.size, dtype=float)


def jackknife_variance(items: ItemParameters, strata: ArrayLike, anchors: ArrayLike, answers: ArrayLike) -> Array:
    """The stratified delete-one jackknife (JKn) variance of the GREG estimate, theta_hat refitted in every replicate,
    with the finite-population correction: sum_h (1 - n_h/N_h) (n_h - 1)/n_h sum_{i in h} (est_(hi) - est)^2; returned
    per stratum (its terms), so their sum is the variance and their spread gives Satterthwaite's degrees of freedom."""
    labels = np.asarray(strata, dtype=np.int64)
    idx = np.asarray(anchors, dtype=np.int64)
    y = np.asarray(answers, dtype=float)
    sizes = np.bincount(labels)
    of = labels[idx]
    n_in = np.bincount(of, minlength=sizes.size)
    deletable = np.flatnonzero(n_in[of] > 1)  # a replicate per anchor whose stratum has another
    weights = np.ones((deletable.size + 1, idx.size))
    for r, i in enumerate(deletable, start=1):
        same = of == of[i]
        weights[r, same] = n_in[of[i]] / (n_in[of[i]] - 1)
        weights[r, i] = 0.0
    est = _greg(items, labels, sizes, idx, y, weights)
    h = of[deletable]
    factor = (1 - n_in[h] / sizes[h]) * (n_in[h] - 1) / n_in[h]
    return np.bincount(h, weights=factor * (est[1:] - est[0]) ** 2, minlength=sizes.size).astype(float)


def estimate(items: ItemParameters, strata: ArrayLike, anchors: ArrayLike, answers: ArrayLike, confidence: float = 0.95,
             floor: ArrayLike | None = None) -> AnchorEstimate:
    """The full-set mean score of a respondent that answered only the ``anchors`` (item indices, with 0/1 ``answers``
    in the same order), with its interval (see the module docstring). ``floor``: each stratum's residual variance among
    the fitting respondents (``residual_variance``), the variance floor; without it, the model's p(1 - p) at theta_hat."""
    from scipy.stats import t as student_t  # lazily, as in fit_2pl

    if not 0 < confidence < 1:
        raise IRTError(f"confidence must be in (0, 1), got {confidence}")
    strata_a = np.asarray(strata, dtype=np.int64)
    idx = np.asarray(anchors, dtype=np.int64)
    y = np.asarray(answers, dtype=float)
    j = items.n_items
    if strata_a.shape != (j,):
        raise IRTError(f"strata for {strata_a.shape[0]} items, parameters for {j}")
    if y.shape != idx.shape:
        raise IRTError(f"{y.size} answers for {idx.size} anchors")
    if np.any(np.isnan(y)):
        raise IRTError(f"{int(np.isnan(y).sum())} anchor item(s) have no score")
    if np.unique(idx).size != idx.size:
        raise IRTError("an anchor item is listed twice")
    theta, theta_sd = ability(items, y, idx)
    p = items.prob(theta)[0]
    resid = y - p[idx]
    bernoulli = p * (1 - p)  # the model's variance of each item's residual at theta_hat
    floors = None if floor is None else np.asarray(floor, dtype=float)
    n_strata = int(strata_a.max()) + 1
    total = float(p.sum()) / j
    strat_mean = var_model = 0.0
    df = 0
    for h in range(n_strata):
        in_h = strata_a[idx] == h
        members = strata_a == h
        size = int(members.sum())
        n_h = int(in_h.sum())
        if n_h == 0:
            raise IRTError(f"stratum {h} has no anchor: the anchors do not come from this design")
        w = size / j
        total += w * float(resid[in_h].mean())
        strat_mean += w * float(y[in_h].mean())
        f_h = w**2 * (1 - n_h / size) / n_h
        var_model += f_h * (float(bernoulli[members].mean()) * size / max(size - 1, 1) if floors is None else float(floors[h]))
        df += n_h - 1
    terms = jackknife_variance(items, strata_a, idx, y)
    var_design = float(terms.sum())
    n_in = np.bincount(strata_a[idx], minlength=n_strata)
    if var_design >= var_model and var_design > 0:  # Satterthwaite (Cochran 1977, 5.4): few strata carrying the variance, few df
        df = max(1, min(df, int(var_design**2 / float(np.sum(terms**2 / np.maximum(n_in - 1, 1))))))
    se = math.sqrt(max(var_design, var_model))
    unseen = np.ones(j, dtype=bool)
    unseen[idx] = False
    known = float(y.sum())
    lo_bound, hi_bound = known / j, (known + unseen.sum()) / j
    q = float(student_t.ppf(0.5 + confidence / 2, max(df, 1)))
    est = min(max(total, lo_bound), hi_bound)
    irt = (known + float(p[unseen].sum())) / j
    return AnchorEstimate(est, max(est - q * se, lo_bound), min(est + q * se, hi_bound), confidence, se, irt, strat_mean,
                          theta, theta_sd, int(idx.size), j, df)


def simulate_2pl(rng: np.random.Generator, theta: ArrayLike, items: ItemParameters) -> Array:
    """0/1 answers of respondents with abilities ``theta`` to ``items`` (shape (N, J)): for tests and simulations."""
    p = items.prob(theta)
    return (rng.random(p.shape) < p).astype(float)
