"""The experiment matrix as the user declares it (CLI flags or an experiment YAML file)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.backends import ModelSpec, parse_model
from harness.core.errors import did_you_mean
from harness.fewshot.selectors import SELECTORS


class RaceSpec(BaseModel):
    """``harness run --until-decided`` (the experiment file's ``race:``): race each task's cells on one seeded order of its
    items, in rounds, and stop evaluating a cell once another is confidently better (harness/runner/racing.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alpha: float = Field(default=0.05, gt=0, lt=1, description="error probability of the whole race (every elimination at once)")
    margin: float | None = Field(default=None, gt=0, description="stop when the survivors are within ±margin of each other (metric units)")
    round: int = Field(default=50, ge=1, description="items per cell per round")
    items: int | None = Field(default=None, ge=1, description="budget: stop when every surviving cell has this many items")
    requests: int | None = Field(default=None, ge=1, description="budget: stop after the round in which the task's requests reach this")
    tokens: int | None = Field(default=None, ge=1, description="budget: stop after the round in which the task's tokens reach this")


class Price(BaseModel):
    """What one model costs (an entry of the experiment file's ``prices:``, keyed by the model's label): money per million input
    (prompt) tokens and output (generated) tokens, and per request; the cost ledger (harness/runner/ledger.py) prices its counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0, allow_inf_nan=False, description="money per million input (prompt) tokens")
    output_per_million: float = Field(ge=0, allow_inf_nan=False, description="money per million output (generated) tokens")
    per_request: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="money per request (0: none)")
    currency: str = Field(default="USD", min_length=1, max_length=12, pattern=r"^[A-Za-z$€£¥]+$",
                          description="what the prices are in (a label: every entry of one table must share it)")


class ExperimentSpec(BaseModel):
    """The matrix to evaluate; the CLI flags and an experiment YAML file both build one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tasks: list[str] = Field(min_length=1)
    prompts: list[str] | None = Field(default=None, description="variant names; default: each task's own list")
    shots: list[int] = Field(default=[0], min_length=1)
    selectors: list[str] = Field(default=["first_k"], min_length=1)
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec()], min_length=1)
    limit: int | None = Field(default=None, ge=1, description="evaluate only the first N items of each task")
    sample: int | None = Field(default=None, ge=1, description="evaluate a seeded random sample of N items of each task "
                               "(seed: 'seed'; items ranked by a hash of seed and item id, see harness/tasks/subsets.py)")
    stratify: str | None = Field(default=None, min_length=1, description="with limit or sample: allocate the N items "
                                 "proportionally over the values of this expression over the row, e.g. 'label'")
    max_tokens: int | None = Field(default=None, ge=1, description="cap on each generate task's generation.max_tokens")
    seed: int = 1234
    split: str = "test"
    fewshot_split: str = "fewshot"
    tasks_dirs: list[str] = Field(default_factory=list)
    prompts_dirs: list[str] = Field(default_factory=list)
    data_dirs: list[str] = Field(default_factory=list)
    chunk_items: int = Field(default=64, ge=1, description="items per backend call and per transaction")
    draws: int = Field(default=1, ge=1, le=100, description="independent demonstration draws per few-shot cell (harness draws reports mean/spread/CI)")
    race: RaceSpec | None = Field(default=None, description="--until-decided: race each task's cells instead of evaluating every item")
    prices: dict[str, Price] = Field(default_factory=dict, description="model label -> its price: the cost ledger's money (not part of "
                                     "the run's identity: a price changes no result)")
    anchors: list[str] = Field(default_factory=list, description="anchors files (harness anchors TASK -o FILE), one per task: evaluate only "
                               "their anchor items (each such cell's id says so) and estimate the full-set score from them")

    @field_validator("models", mode="before")
    @classmethod
    def _model_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_model(v) if isinstance(v, str) or v is None else v for v in value]
        return value

    @field_validator("shots")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(k < 0 for k in value):
            raise ValueError("shot counts must be >= 0")
        return sorted(set(value))

    @field_validator("selectors")
    @classmethod
    def _known_selectors(cls, value: list[str]) -> list[str]:
        for name in value:
            SELECTORS.get(name, "selectors")
        return value

    @model_validator(mode="after")
    def _priced_models(self) -> ExperimentSpec:
        labels = [m.label for m in self.models]
        for label in self.prices:
            if label not in labels:
                raise ValueError(f"field 'prices.{label}': no model of the experiment is labelled '{label}'.{did_you_mean(label, labels)} "
                                 f"The models: {', '.join(labels)} (a price is keyed by the model's label: its 'name', else backend:model)")
        currencies = sorted({p.currency for p in self.prices.values()})
        if len(currencies) > 1:
            raise ValueError(f"field 'prices': the entries are in {' and '.join(currencies)}; one table is in one currency "
                             "(convert them, so the cells' costs can be compared)")
        return self

    @model_validator(mode="after")
    def _one_subset_size(self) -> ExperimentSpec:
        if self.sample is not None and self.limit is not None:
            raise ValueError("give --sample or --limit, not both ('limit': the first N items; 'sample': a seeded random N)")
        if self.stratify is not None and self.sample is None and self.limit is None:
            raise ValueError("'stratify' (--stratify) needs 'sample' or 'limit': the number of items to spread over the strata")
        if self.anchors and (self.sample is not None or self.limit is not None):
            raise ValueError("give --anchors or --sample/--limit, not both: an anchors file names the items to evaluate")
        return self

    def subset_key(self) -> tuple[Any, ...] | None:
        """What a sampled or stratified subset adds to each cell's id (None: the first N or all items, ids as before)."""
        if self.sample is None and self.stratify is None:
            return None
        return ("sample", self.sample, self.stratify) if self.sample is not None else ("limit", self.limit, self.stratify)


