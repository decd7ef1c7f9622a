"""The experiment config: a pydantic schema, YAML loading, and `--set key=value` overrides.

Every error names the field and what is allowed, so a human or an agent can fix it in one try.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nerlab.corpora import View
from nerlab.errors import UserError
from nerlab.store import Store, data_root

FRACTION_TOLERANCE = 1e-6


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(Strict):
    """Training time only (startup and evaluation are outside it), or a step count for
    reproducible runs and tests. Exactly one of the two."""

    seconds: float | None = Field(None, gt=0)
    steps: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_of(self) -> Budget:
        if (self.seconds is None) == (self.steps is None):
            raise ValueError("give exactly one of seconds or steps, e.g. {seconds: 300}")
        return self


class Stage(Strict):
    corpora: list[str] = Field(min_length=1)  # several = mixed batches (each batch one corpus)
    fraction: float = Field(gt=0, le=1)  # share of the budget
    ratios: list[float] | None = None  # mixing weights; default: proportional to corpus size

    @model_validator(mode="after")
    def _ratios(self) -> Stage:
        if self.ratios is not None and (
            len(self.ratios) != len(self.corpora) or any(r <= 0 for r in self.ratios)
        ):
            raise ValueError("ratios: one positive weight per corpus of the stage")
        return self


class Optim(Strict):
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    warmup: float = Field(0.1, ge=0, lt=1)  # fraction of each schedule's span
    batch_size: int = Field(64, gt=0)  # sentences (windows) per batch
    grad_clip: float = Field(1.0, ge=0)  # 0 disables clipping
    freeze_layers: int = Field(0, ge=0)  # freeze the embeddings and the first N encoder layers
    dropout: float | None = Field(None, ge=0, lt=1)  # encoder dropout; None keeps the model's


class Head(Strict):
    kind: Literal["linear", "mlp", "crf"] = "linear"
    dropout: float = Field(0.1, ge=0, lt=1)


class ExperimentConfig(Strict):
    target: str  # corpus or view whose dev F1 is the metric
    model: str = "answerdotai/ModernBERT-base"  # hub id, local path, or "tiny" (offline)
    data: Literal["prepared", "synthetic"] = "prepared"
    budget: Budget = Budget(seconds=300)
    seed: int = 0
    repeats: int = Field(1, ge=1, le=20)
    max_length: int = Field(256, ge=8, le=8192)
    curriculum: list[Stage] = Field(min_length=1)
    schedule_scope: Literal["stage", "run"] = "stage"  # LR schedule restarts per stage, or spans
    compile: bool = False  # torch.compile the encoder (pays on GPU; ~30 s for no gain on CPU)
    optim: Optim = Optim()
    head: Head = Head()

    @field_validator("curriculum")
    @classmethod
    def _fractions_sum_to_one(cls, stages: list[Stage]) -> list[Stage]:
        total = sum(s.fraction for s in stages)
        if abs(total - 1) > FRACTION_TOLERANCE:
            parts = " + ".join(f"{s.fraction:g}" for s in stages)
            raise ValueError(f"stage fractions must sum to 1, got {parts} = {total:.6g}")
        return stages

    def store(self) -> Store:
        return Store(data_root(self.data))

    def views(self) -> tuple[View, list[list[View]]]:
        """Resolve target and stage corpora; unknown names or types raise UserError."""
        store = self.store()
        target = store.view(self.target)
        stages = [[store.view(c) for c in s.corpora] for s in self.curriculum]
        if not any(head_key(v) == head_key(target) for st in stages for v in st):
            raise UserError(
                f"curriculum: target {self.target!r} is trained in no stage, so its head would "
                "stay untrained; add it to a stage (usually the last one)"
            )
        return target, stages


def head_key(view: View) -> str:
    """One head per distinct (corpus, types): `bc5cdr_chem` and `bc5cdr:Chemical` share one."""
    return f"{view.corpus}:{'+'.join(view.types)}"


def load_config(path: Path | str, overrides: list[str] = ()) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of fields at the top level")
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, source=str(path))


def parse_config_text(text: str, source: str = "config") -> ExperimentConfig:
    """A config from YAML text (a file's, or a proposal's)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of config fields")
    return parse_config(raw, source=source)


def parse_config(raw: dict, source: str = "config") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{source}: " + "; ".join(_describe(err) for err in e.errors())) from None
    cfg.views()  # unknown corpora, types, untrained target
    return cfg


def _describe(err: dict) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "config"
    if err["type"] == "extra_forbidden":
        return f"{field}: unknown field"
    if err["type"] == "literal_error":
        allowed = err["msg"].replace("Input should be", "must be")
        return f"{field}: {allowed} (got {repr(err['input'])[:80]})"  # capped: input is untrusted
    msg = err["msg"].removeprefix("Value error, ")
    return f"{field}: {msg}"


def apply_override(raw: dict, item: str) -> None:
    """`optim.lr=1e-4`, `budget.seconds=60`, `curriculum.0.fraction=0.5`: value parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {item!r}: expected key=value, e.g. --set budget.seconds=60")
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} has no item {part}")
            part = int(part)
        elif not isinstance(node, dict):
            raise UserError(f"--set {item!r}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            node[part] = _parse_value(value)
        else:
            if isinstance(node, dict) and part == "budget":
                node.setdefault(part, {})
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]
    if parts[0] == "budget" and len(parts) == 2:  # switching mode drops the other one
        other = {"seconds": "steps", "steps": "seconds"}.get(parts[1])
        raw["budget"].pop(other, None)


def _parse_value(text: str):
    """YAML, except that `1e-4` is a number (YAML 1.1 would read it as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(exclude_none=True), sort_keys=False)
