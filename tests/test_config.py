import pytest
import yaml

from nerlab.config import apply_override, head_key, load_config, parse_config, parse_config_text
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
            "curriculum.0.corpora: ",  # the rest is pydantic's text
        ),
        (
            cfg_with(curriculum=[{"corpora": ["bc2gm"], "fraction": 1}]),
            "target 'ncbi_disease' is trained in no stage",
        ),
        (
            cfg_with(head={"kind": "lstm"}),
            ("head.kind: ", "(got 'lstm')"),  # between them, pydantic's text
        ),
        (
            cfg_with(optim={"schedule": "step"}),
            ("optim.schedule: ", "(got 'step')"),
        ),
        (cfg_with(budget={"seconds": 1, "steps": 2}), "budget: give exactly one of seconds"),
        (cfg_with(optim={"lr": -1}), "optim.lr: "),  # the rest is pydantic's text
        (
            cfg_with(curriculum=[{"corpora": ["ncbi_disease"], "fraction": 1, "ratios": [1, 2]}]),
            "ratios: one positive weight per corpus",
        ),
    ],
)
def test_config_errors_name_the_field(raw, message):
    with pytest.raises(UserError, match=None) as e:
        parse_config(raw).views()  # the schema, then the corpora against the store
    parts = (message,) if isinstance(message, str) else message
    assert all(part in str(e.value) for part in parts)


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


# -----------------------------------------------------------------------------
# config text is untrusted (a proposal from an agent): bounded before any object is built

GOOD_TEXT = yaml.safe_dump(BASE)
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


def one_line_error(text: str, source: str = "config") -> str:
    with pytest.raises(UserError) as e:
        parse_config_text(text, source)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_parse_config_text_reads_a_valid_config():
    cfg = parse_config_text(GOOD_TEXT)
    assert cfg.target == "ncbi_disease" and cfg.budget.steps == 10


@pytest.mark.parametrize(
    "text, message",
    [
        ("target: " + "[" * 3000 + "]" * 3000, "nested deeper than 20 levels"),
        ("target: " + "{a: " * 1500 + "1" + "}" * 1500, "nested deeper than 20 levels"),
        (BILLION_LAUGHS, "line 1, column 4: anchors and aliases (& and *) are not allowed"),
        ("target: ncbi_disease\nmodel: *m\n", "anchors and aliases (& and *) are not allowed"),
        ("target: ncbi_disease\n\tmodel: tiny\n", "line 2, column 1: a tab character"),
        ("target: [unclosed\n", "not valid YAML at line 2, column 1: expected ',' or ']'"),
        ("target: a\nseed: 1\ntarget: b\n", "line 3, column 1: duplicate key 'target'"),
        ("seed: " + "9" * 5000, "line 1, column 7: an integer too long to read"),
        ("a: !!python/object/apply:os.system [ls]", "could not determine a constructor"),
        ("- a\n- b\n", "config: expected a mapping of fields at the top level"),
        ("false\n", "config: expected a mapping of fields at the top level"),
        ("? [a, b]\n: 1\n", "found unhashable key"),
        ("# nothing but a comment\n", "config: target: Field required"),
    ],
)
def test_hostile_or_broken_config_text_is_a_one_line_error(text, message):
    assert len(text) < 8000  # under the loop's size cap: the bounds here must hold on their own
    assert message in one_line_error(text)


def test_load_config_uses_the_same_safe_reader(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(UserError, match=r"bomb.yaml: not valid YAML at line 1, column 4: anchors"):
        load_config(path)
    path.write_text(GOOD_TEXT)
    assert load_config(path, ["seed=3"]).seed == 3


@pytest.mark.parametrize(
    "model, message",
    [
        ("/etc", "model: '/etc' is a directory without config.json; allowed: a hub id"),
        ("./missing-dir", "model: './missing-dir' is neither a local directory nor a hub id"),
        ("a/b/c", "model: 'a/b/c' is neither a local directory nor a hub id"),
    ],
)
def test_model_must_be_a_hub_id_a_model_directory_or_tiny(model, message):
    error = one_line_error(yaml.safe_dump({**BASE, "model": model}))
    assert message in error and "a local model directory with config.json, or tiny" in error


def test_model_directory_with_config_json_and_hub_ids_pass(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for model in (str(tmp_path), "answerdotai/ModernBERT-base", "bert-base-uncased", "tiny"):
        assert parse_config(cfg_with(model=model)).model == model


def test_parsing_is_pure_resolving_reads_the_store(ner_home):
    cfg = parse_config(cfg_with(target="pubmed"))  # no prepared data read: no error yet
    assert cfg.target == "pubmed" and not ner_home.exists()
    with pytest.raises(UserError, match="unknown corpus 'pubmed'"):
        cfg.views()
