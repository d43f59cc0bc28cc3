"""The anchors file: the items of a task that ``harness run --anchors FILE`` evaluates, and the IRT model that turns
their scores into an estimate of the full-set score (``harness anchors``, harness/analysis/anchors.py, writes it;
harness/stats/irt.py is the statistics; docs/compare.md, "Item-efficient estimates").

It lives here, below the analysis, because planning reads it: an anchored run evaluates only the anchor items,
and its cells say so in their identity (``subset_key``), so an anchored run never resumes, or is taken for, a run of
another subset. A JSON or YAML file, read with the strict safe loader and validated field by field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.core.errors import HarnessError, clip, did_you_mean
from harness.core.files import write_atomic
from harness.core.yamlfile import read_yaml_mapping, validate

FORMAT = "harness-anchors/1"


class AnchorItem(BaseModel):
    """One item the model was fitted on: its 2PL parameters and stratum (``anchor``: one of the evaluated items)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    member: str | None = None  # a group task's member (mmlu_anatomy) the item belongs to; None for a plain task
    discrimination: float = Field(gt=0)
    intercept: float
    stratum: int = Field(ge=0)
    anchor: bool = False
    accuracy: float | None = Field(default=None, ge=0, le=1, description="mean score over the fitting cells (descriptive)")


class FittedCell(BaseModel):
    """A stored cell the model was fitted on (one respondent), with what identifies its answers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str
    cell: str
    prompt: str
    prompt_sha256: str
    shots: int
    selector: str
    model: str
    model_sha256: str  # of the cell's stored model identity (weights, tokenizer, ... fingerprints)
    run_config_hash: str
    data_sha256: str | None  # the evaluated split's sha256 in that run's provenance
    items: int  # items of the cell the fit used
    score: float  # the cell's mean score on them
    ability: float  # its fitted (EAP) ability


class AnchorsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    task: str
    metric: str
    split: str = "test"
    k: int = Field(ge=4)
    seed: int
    method: str
    estimator: str
    items: list[AnchorItem] = Field(min_length=4)
    fitted_on: list[FittedCell] = Field(min_length=3)
    residual_variance: list[float] | None = Field(default=None, description="per stratum: the fitting cells' within-stratum residual "
                                                  "variance, the floor of an estimate's variance (harness/stats/irt.py)")
    fit: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    harness_version: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AnchorsFile:
        if self.format != FORMAT:
            raise ValueError(f"format {self.format!r} is not {FORMAT!r} (written by another harness version?)")
        ids = [(i.member, i.id) for i in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError("an item id is listed twice")
        if sum(i.anchor for i in self.items) != self.k:
            raise ValueError(f"k is {self.k} but {sum(i.anchor for i in self.items)} items are marked anchor")
        strata = {i.stratum for i in self.items}
        if strata != set(range(len(strata))):
            raise ValueError("strata must be numbered 0..H-1")
        for h in strata:
            if sum(i.anchor for i in self.items if i.stratum == h) < 2 and not all(i.anchor for i in self.items if i.stratum == h):
                raise ValueError(f"stratum {h} has fewer than 2 anchors")
        return self

    def anchor_ids(self, member: str | None = None) -> list[str]:
        """The anchor items' ids (of one member of a group task)."""
        return [i.id for i in self.items if i.anchor and i.member == member]

    def identity(self) -> str:
        """A short hash of the anchors and the model they are read with: part of an anchored cell's id."""
        payload = json.dumps([[i.member, i.id, i.anchor, i.stratum, i.discrimination, i.intercept] for i in self.items] + [self.task, self.metric])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_anchors(path: Path | str) -> AnchorsFile:
    """Read an anchors file (JSON or YAML); a missing or malformed one is a HarnessError naming it and the field."""
    file = Path(path)
    if not file.is_file():
        hint = did_you_mean(file.name, [p.name for p in file.parent.iterdir()] if file.parent.is_dir() else [])
        raise HarnessError(f"anchors file '{clip(str(file))}' does not exist (write one with: harness anchors TASK --from RUN -k K -o FILE).{hint}")
    return validate(AnchorsFile, read_yaml_mapping(file, "anchors file"), file, "anchors file")


def write_anchors(path: Path | str, anchors: AnchorsFile) -> None:
    """JSON for ``*.json``, YAML otherwise; written atomically."""
    file = Path(path)
    data = anchors.model_dump(mode="json")
    text = json.dumps(data, indent=1) + "\n" if file.suffix.lower() == ".json" else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    write_atomic(file, [text])


def anchors_by_task(paths: list[str]) -> dict[str, tuple[str, AnchorsFile]]:
    """Each file by its task: task -> (path, the file); two files for one task are refused."""
    out: dict[str, tuple[str, AnchorsFile]] = {}
    for path in paths:
        anchors = load_anchors(path)
        if anchors.task in out:
            raise HarnessError(f"--anchors: '{clip(out[anchors.task][0])}' and '{clip(path)}' are both for task '{anchors.task}'; give one per task")
        out[anchors.task] = (path, anchors)
    return out
