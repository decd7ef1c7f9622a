"""The experiment config: a pydantic schema, YAML loading, and `--set key=value` overrides.

Every error names the field and what is allowed, so a human or an agent can fix it in one try.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import yaml
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nerlab.corpora import View
from nerlab.errors import UserError
from nerlab.head_kinds import HEAD_KINDS
from nerlab.store import Store, data_root

FRACTION_TOLERANCE = 1e-6
TINY = "tiny"
MODEL_CHOICES = (
    "allowed: a hub id (e.g. answerdotai/ModernBERT-base), a local model directory with "
    f"config.json, or {TINY}"
)


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
    kind: Literal[tuple(HEAD_KINDS)] = "linear"  # type: ignore[valid-type]
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

    @field_validator("model")
    @classmethod
    def _model_is_loadable(cls, name: str) -> str:
        """Caught here, the mistake is one line naming the field; at load time transformers
        raises a long traceback that never says `model`. A hub id is checked for form only."""
        if name == TINY:
            return name
        path = Path(name).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise ValueError(f"{name!r} is a directory without config.json; {MODEL_CHOICES}")
        if not path.is_dir():
            try:
                validate_repo_id(name)
            except HFValidationError:
                msg = f"{name!r} is neither a local directory nor a hub id; {MODEL_CHOICES}"
                raise ValueError(msg) from None
        return name

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

    def corpora(self) -> list[str]:
        """The corpora this config reads, each once: the stages' in order, then the target's."""
        target, stages = self.views()
        return list(dict.fromkeys([v.corpus for st in stages for v in st] + [target.corpus]))


def head_key(view: View) -> str:
    """One head per distinct (corpus, types): `bc5cdr_chem` and `bc5cdr:Chemical` share one."""
    return f"{view.corpus}:{'+'.join(view.types)}"


def load_config(path: Path | str, overrides: list[str] = ()) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    raw = read_yaml_mapping(path.read_text(), source=str(path))
    for item in overrides:
        apply_override(raw, item)
    return parse_config(raw, source=str(path))


def parse_config_text(text: str, source: str = "config") -> ExperimentConfig:
    """A config from YAML text that may be hostile (an agent's proposal): read with the bounded
    reader below, then validated; every problem is a one-line UserError starting with `source`."""
    return parse_config(read_yaml_mapping(text, source), source=source)


def parse_config(raw: dict, source: str = "config") -> ExperimentConfig:
    """The schema alone, pure: the corpora are resolved against the prepared store by
    `cfg.views()`, where runs start and proposals are checked."""
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(f"{source}: " + "; ".join(_describe(err) for err in e.errors())) from None
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


# -----------------------------------------------------------------------------
# YAML as untrusted input: PyYAML's composer recurses once per nesting level (3,000 levels is a
# RecursionError) and expands aliases (a 450-character "billion laughs" fills gigabytes), so
# both are refused while composing, before any Python object is built.

MAX_DEPTH = 20  # a config nests 5: top mapping -> curriculum -> stage -> corpora -> name


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases, nesting beyond MAX_DEPTH and duplicate keys
    (PyYAML keeps the last one silently), each a YAMLError marked with line and column."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _marked("anchors and aliases (& and *) are not allowed", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise _marked(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a collection as a key: the constructor refuses it (unhashable)
            if (key.tag, key.value) in seen:
                raise _marked(f"duplicate key {key.value!r}", key.start_mark)
            seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # beyond Python's 4,300-digit limit for int("...")
            raise _marked("an integer too long to read", node.start_mark) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _marked(problem: str, mark) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=mark)


def read_yaml_mapping(text: str, source: str) -> dict:
    """The top-level mapping of a YAML config text (empty text: {}); any problem is a one-line
    UserError naming `source` and, where YAML knows it, the line and column."""
    try:
        raw = yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: not valid YAML{_describe_yaml_error(e)}") from None
    if raw is None:  # empty text or only comments: the schema then says what is required
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of fields at the top level")
    return raw


def _describe_yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e)
    if "'\\t'" in problem:  # PyYAML: "found character '\t' that cannot start any token"
        problem = "a tab character; YAML indents with spaces only"
    return f"{where}: {' '.join(problem.split())}"


def config_hash(text: str) -> str:
    """The sha256 of a config's text (surrounding whitespace aside, as git shows a file), so a
    run's log says which config it ran (train.py's summary, the runner's log header)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()
