r"""Which items of a split a run evaluates, and whether they represent the split.

- ``limit: N`` (``--limit``): the first N rows, in file order.
- ``sample: N`` (``--sample``): a seeded random sample of N rows. Items are ranked by
  ``sha256("<seed>\\0sample\\0<item id>")`` and the N lowest are taken, so the sample depends
  only on the seed and the item ids: the same items whatever the row order of the file, in every
  process (no Python hash randomisation), and a sample of N is part of the sample of N + 1.
- ``stratify: EXPR`` (``--stratify``, with ``limit`` or ``sample``): proportional allocation over
  the values of a Jinja expression (or field name) over the row: each stratum gets
  ``N * size / split size`` items, rounded by largest remainder (ties: the larger stratum, then
  the smaller value), so the subset has the split's distribution of that value. Within a stratum
  ``limit`` takes its first rows, ``sample`` its lowest hashes. The expression sees the row's
  fields plus ``id``, ``input``, ``choices``, ``target``, ``row`` (the raw fields) and ``label``:
  the item's class (``tasks.class_label``: the task's ``label:``, the gold label, or the position
  of the correct choice), which shadows a row field of that name (``row.label`` reaches it).

Evaluated items keep their file order. For a multiple-choice or classification task a proper
subset is checked against the whole split (``subset_record``). Both warnings need the total
variation distance between the subset's and the split's label distributions above
``TVD_THRESHOLD`` (so a split that is itself skewed never warns for a subset like it); then
the subset is *degenerate* when one label holds more than ``DEGENERATE_SHARE`` of its items
(whatever its size: the first 5 rows of a sorted file), else *far from the split* when a
chi-square goodness-of-fit test against the split's distribution (finite-population
corrected) gives p below ``CHI2_P``, i.e. farther than a random sample of that size would be.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.core.errors import HarnessError
from harness.core.templating import JINJA_ERRORS, compile_expression, explain
from harness.tasks.task import Item, Task, class_label

DEGENERATE_SHARE = 0.9
TVD_THRESHOLD = 0.1
CHI2_P = 0.001


def sample_key(seed: int, item_id: str) -> str:
    """The rank of an item in the seeded sample (lowest first)."""
    return hashlib.sha256(f"{seed}\x00sample\x00{item_id}".encode()).hexdigest()


def describe(limit: int | None, sample: int | None, stratify: str | None, seed: int) -> str | None:
    """How the subset was taken, in words (None: the whole split)."""
    if sample is not None:
        how = f"sample of {sample}, seed {seed}"
    elif limit is not None:
        how = f"first {limit}"
    else:
        return None
    return f"{how}, stratified by {stratify}" if stratify else how


def stratum_values(task: Task, items: Sequence[Item], expression: str) -> list[str]:
    """Each item's stratum: ``expression`` over its row (see the module docstring for what it sees)."""
    where = f"--stratify / 'stratify' ({expression!r})"
    compiled = compile_expression(expression, where)
    values = []
    for item in items:
        variables = {**item.template_vars(), "label": class_label(task, item) or item.label}
        try:
            values.append(str(compiled(variables)))
        except JINJA_ERRORS as exc:
            raise HarnessError(
                f"task '{task.name}': {where} failed on item {item.id!r}: {explain(exc, '')}. "
                f"It sees the row's fields ({', '.join(item.row)}) and id, input, choices, target, label, row."
            ) from None
    return values


def allocate(n: int, sizes: dict[str, int]) -> dict[str, int]:
    """Proportional allocation of ``n`` items over strata of ``sizes`` (largest remainder)."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    exact = {s: n * size / total for s, size in sizes.items()}
    quotas = {s: int(q) for s, q in exact.items()}
    order = sorted(sizes, key=lambda s: (-(exact[s] - quotas[s]), -sizes[s], s))
    for s in order[: n - sum(quotas.values())]:
        quotas[s] += 1
    return quotas


def select_items(task: Task, items: Sequence[Item], *, limit: int | None = None, sample: int | None = None,
                 stratify: str | None = None, seed: int = 0) -> list[Item]:
    """The evaluated items of ``items`` (a whole split, in file order), in file order."""
    n = sample if sample is not None else limit
    if n is None:
        return list(items)
    if stratify is None:
        if sample is None:
            return list(items[:n])
        chosen = {i.id for i in sorted(items, key=lambda i: sample_key(seed, i.id))[:n]}
    else:
        strata: dict[str, list[Item]] = {}
        for item, value in zip(items, stratum_values(task, items, stratify)):
            strata.setdefault(value, []).append(item)
        quotas = allocate(n, {s: len(members) for s, members in strata.items()})
        chosen = set()
        for s, members in strata.items():
            ordered = members if sample is None else sorted(members, key=lambda i: sample_key(seed, i.id))
            chosen.update(i.id for i in ordered[: quotas[s]])
    return [i for i in items if i.id in chosen]


def _shares(counts: Counter[str], n: int, top: int = 4) -> str:
    shown = ", ".join(f"{label!r} {count / n:.0%}" for label, count in counts.most_common(top))
    return shown + (", ..." if len(counts) > top else "")


def subset_record(task: Task, subset: Sequence[Item], split: Sequence[Item], how: str) -> dict[str, Any]:
    """What a run stores about one task's evaluated subset: how it was taken, its size, and for multiple
    choice / classification its label counts next to the split's, the total variation distance between
    them and the warnings (see the module docstring)."""
    record: dict[str, Any] = {"how": how, "n": len(subset), "of": len(split), "warnings": []}
    if not subset or not task.kind.has_choices:
        return record
    counts = Counter(class_label(task, i) or "" for i in subset)
    full = Counter(class_label(task, i) or "" for i in split)
    n, total = len(subset), len(split)
    tvd = 0.5 * sum(abs(counts[label] / n - full[label] / total) for label in full)
    record.update(labels=dict(sorted(counts.items())), split_labels=dict(sorted(full.items())), tvd=round(tvd, 4))
    if n >= total or tvd <= TVD_THRESHOLD:
        return record
    where = f"task '{task.name}': the evaluated items ({how}, {n} of {total})"
    advice = "use --sample N (and --stratify label) for items that represent the split"
    label, top = counts.most_common(1)[0]
    if top / n > DEGENERATE_SHARE:
        record["warnings"].append(
            f"{where} have a degenerate label distribution: {top} of {n} are {label!r} ({top / n:.0%}; "
            f"{full[label] / total:.0%} of the split); rankings on them say little about the split: {advice}"
        )
    else:
        from scipy.stats import chi2

        statistic = sum((counts[lab] - n * c / total) ** 2 / (n * c / total) for lab, c in full.items())
        statistic *= (total - 1) / (total - n)  # sampling without replacement: smaller variance than the multinomial
        p = float(chi2.sf(statistic, len(full) - 1))
        record["chi2_p"] = p
        if p < CHI2_P:
            record["warnings"].append(
                f"{where} have a label distribution far from the split's: total variation distance {tvd:.2f} > {TVD_THRESHOLD} "
                f"(chi-square p {p:.1g}): {_shares(counts, n)} vs {_shares(full, total)} in the split; {advice}"
            )
    return record
