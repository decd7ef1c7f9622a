import pytest

from nerlab.config import apply_override, head_key, load_config, parse_config
from nerlab.corpora import resolve_view
from nerlab.errors import UserError

BASE = {
    "target": "ncbi_disease",
    "model": "tiny",
    "budget": {"steps": 10},
    "curriculum": [
        {"corpora": ["bc5cdr_chem"], "fraction": 0.4},
        {"corpora": ["ncbi_disease"], "fraction": 0.6},
    ],
}


def cfg_with(**changes):
    return {**BASE, **changes}


def test_valid_config_and_defaults():
    cfg = parse_config(BASE)
    assert cfg.optim.lr == 5e-5 and cfg.optim.schedule == "cosine" and cfg.head.kind == "linear"
    assert cfg.schedule_scope == "stage" and cfg.repeats == 1
    target, stages = cfg.views()
    assert target.corpus == "ncbi_disease" and stages[0][0].types == ("Chemical",)


@pytest.mark.parametrize(
    "raw, message",
    [
        (cfg_with(learning_rate=1), "learning_rate: unknown field"),
        (cfg_with(optim={"lr": 1e-4, "betas": 1}), "optim.betas: unknown field"),
        (
            cfg_with(curriculum=[{"corpora": ["ncbi_disease"], "fraction": 0.5}]),
            "curriculum: stage fractions must sum to 1, got 0.5 = 0.5",
        ),
        (cfg_with(target="pubmed"), "unknown corpus 'pubmed'; valid names: bc2gm"),
        (
            cfg_with(curriculum=[{"corpora": ["bc5cdr:Gene", "ncbi_disease"], "fraction": 1}]),
            "no entity type 'Gene'; its types: Chemical, Disease",
        ),
        (
            cfg_with(curriculum=[{"corpora": [], "fraction": 1}]),
            "curriculum.0.corpora: List should have at least 1 item",
        ),
        (
            cfg_with(curriculum=[{"corpora": ["bc2gm"], "fraction": 1}]),
            "target 'ncbi_disease' is trained in no stage",
        ),
        (
            cfg_with(head={"kind": "lstm"}),
            "head.kind: must be 'linear', 'mlp' or 'crf' (got 'lstm')",
        ),
        (
            cfg_with(optim={"schedule": "step"}),
            "optim.schedule: must be 'cosine', 'linear' or 'constant_with_warmup'",
        ),
        (cfg_with(budget={"seconds": 1, "steps": 2}), "budget: give exactly one of seconds"),
        (cfg_with(optim={"lr": -1}), "optim.lr: Input should be greater than 0"),
        (
            cfg_with(curriculum=[{"corpora": ["ncbi_disease"], "fraction": 1, "ratios": [1, 2]}]),
            "ratios: one positive weight per corpus",
        ),
    ],
)
def test_config_errors_name_the_field(raw, message):
    with pytest.raises(UserError, match=None) as e:
        parse_config(raw)
    assert message in str(e.value)


def test_fractions_within_tolerance():
    stages = [{"corpora": ["ncbi_disease"], "fraction": f} for f in (0.1, 0.2, 0.7000000001)]
    parse_config(cfg_with(curriculum=stages))


def test_head_key_merges_views_that_are_the_same():
    assert head_key(resolve_view("bc5cdr_chem")) == head_key(resolve_view("bc5cdr:Chemical"))
    assert head_key(resolve_view("bc5cdr")) != head_key(resolve_view("bc5cdr_chem"))


def test_overrides(tmp_path):
    raw = {"budget": {"seconds": 300}, "curriculum": [{"fraction": 1}], "optim": {}}
    apply_override(raw, "budget.steps=20")
    assert raw["budget"] == {"steps": 20}
    apply_override(raw, "optim.lr=1e-4")
    apply_override(raw, "curriculum.0.fraction=0.5")
    apply_override(raw, "head.kind=crf")
    assert raw["optim"]["lr"] == 1e-4 and raw["curriculum"][0]["fraction"] == 0.5
    assert raw["head"] == {"kind": "crf"}
    with pytest.raises(UserError, match="expected key=value"):
        apply_override(raw, "optim.lr")
    with pytest.raises(UserError, match="curriculum has no item 3"):
        apply_override(raw, "curriculum.3.fraction=1")


def test_load_config_file_errors(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_shipped_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.rglob("*.yaml"))
    assert len(paths) >= 8
    for path in paths:
        load_config(path)
    current = load_config(root / "current.yaml")
    assert current.target == "ncbi_disease" and current.model == "answerdotai/ModernBERT-base"
    assert current.budget.seconds == 300 and current.optim.batch_size == 64
