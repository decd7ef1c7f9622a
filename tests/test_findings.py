"""Findings on hand-built nights whose effects are known: a real effect is found with an interval
excluding 0, a null one is reported as none, a factor too few experiments vary as too few, one
always changed with another as not separable; and a tag's records read from git and results.tsv.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from nerlab.config import ExperimentConfig
from nerlab.findings import (
    ALIASED,
    EFFECT,
    NO_EFFECT,
    SEVERAL,
    TARGET_ONLY,
    TOO_FEW,
    Record,
    SharePoint,
    findings,
    findings_markdown,
    load_records,
)
from nerlab.gitops import RunBranch
from nerlab.plots import plot_share, plt, share_figure
from nerlab.results import append_row
from tests.helpers import analyze_py, init_repo

TARGET = "ncbi_disease"


def raw(sources=(), share=0.3, mixed=False, lr=2e-3, bs=32, head="linear") -> dict:
    stages = []
    if sources and mixed:
        stages.append({"corpora": list(sources), "fraction": share})
    elif sources:
        stages += [{"corpora": [s], "fraction": share / len(sources)} for s in sources]
    stages.append({"corpora": [TARGET], "fraction": 1 - sum(s["fraction"] for s in stages)})
    return {"target": TARGET, "model": "tiny", "data": "synthetic", "budget": {"steps": 40},
            "curriculum": stages, "optim": {"lr": lr, "batch_size": bs},
            "head": {"kind": head}}  # fmt: skip


def record(n: int, f1: float, seeds: int = 1, status: str = "discard", **kw) -> Record:
    return Record(n, ExperimentConfig.model_validate(raw(**kw)), f1, seeds, status)


def night(rows: int = 32, seed: int = 0, chem: float = 0.05) -> list[Record]:
    """Sources bc5cdr_chem (effect `chem`) and linnaeus (none); their share and the lr (each
    run its own, as Optuna draws it) varied with no effect; noise of half a point; every factor
    drawn independently."""
    rng = np.random.default_rng(seed)
    out = []
    for n in range(1, rows + 1):
        on, lin = bool(rng.integers(2)), bool(rng.integers(2))
        src = [s for s, used in (("bc5cdr_chem", on), ("linnaeus", lin)) if used]
        share, lr = float(rng.choice([0.2, 0.3, 0.4, 0.5])), float(2e-3 * 2 ** rng.uniform(-2, 2))
        f1 = 0.80 + chem * on + rng.normal(0, 0.005)
        out.append(record(n, f1, sources=src, share=share, lr=lr))
    return out


def by_factor(f) -> dict:
    return {e.factor: e for e in f.effects}


def test_a_real_effect_is_found_and_a_null_one_is_reported_as_none():
    f = findings(night())
    e = by_factor(f)
    chem, lin = e["source:bc5cdr_chem"], e["source:linnaeus"]
    assert chem.verdict == EFFECT and 0 < chem.low < 0.05 < chem.high
    for null in (lin, e["share"], e["optim.lr"]):
        assert null.verdict == NO_EFFECT and null.low < 0 < null.high
    assert e["optim.lr"].unit == "per doubling" and e["optim.lr"].n_with == 16
    answer = {a.question: a.answer for a in f.answers}[f"Which source helps {TARGET} most?"]
    assert answer.startswith("bc5cdr_chem: +5.")
    md = findings_markdown(f, "night")
    found = md.split("## Effects found")[1].split("##")[0]
    flat = md.split("## No effect distinguishable from noise")[1].split("##")[0]
    assert "bc5cdr_chem before the target" in found and "linnaeus" not in found
    assert "linnaeus before the target" in flat and "optim.lr" in flat


def test_with_no_source_effect_no_source_is_named_best():
    f = findings(night(chem=0.0))
    assert [e.verdict for e in f.effects if e.factor.startswith("source:")] == [NO_EFFECT] * 2
    answer = {a.question: a.answer for a in f.answers}[f"Which source helps {TARGET} most?"]
    assert answer.startswith("none distinguishably from noise (measured: bc5cdr_chem, linnaeus;")


def test_one_switch_matches_the_two_sample_t_interval():
    """With one factor the fit is the pooled two-sample t interval of the difference."""
    rng = np.random.default_rng(1)
    with_, without = 0.7 + rng.normal(0, 0.01, 6), 0.68 + rng.normal(0, 0.01, 7)
    records = [record(i, float(v), sources=["bc2gm"]) for i, v in enumerate(with_)]
    records += [record(10 + i, float(v)) for i, v in enumerate(without)]
    e = by_factor(findings(records))["source:bc2gm"]
    ci = sps.ttest_ind(with_, without, equal_var=True).confidence_interval(0.95)
    assert e.estimate == pytest.approx(with_.mean() - without.mean())
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high))
    assert (e.n_with, e.n_without) == (6, 7)


def test_a_mean_of_more_seeds_weighs_more():
    with_ = [(0.70, 3), (0.74, 1), (0.72, 1), (0.73, 1)]  # (mean F1, seeds)
    records = [record(i, f1, seeds=k, sources=["bc2gm"]) for i, (f1, k) in enumerate(with_)]
    records += [record(10 + i, 0.60 + 0.001 * i) for i in range(6)]
    e = by_factor(findings(records))["source:bc2gm"]
    mean_with = sum(f1 * k for f1, k in with_) / sum(k for _, k in with_)
    assert e.estimate == pytest.approx(mean_with - np.mean([0.60 + 0.001 * i for i in range(6)]))


def test_a_factor_few_experiments_vary_is_too_few_to_tell():
    records = night()
    for i in (3, 7, 11):  # three experiments try the CRF head
        r = records[i]
        records[i] = record(r.n, r.f1 + 0.1, **{**_kw(r), "head": "crf"})
    e = by_factor(findings(records))["head.kind"]
    assert e.verdict == TOO_FEW and e.estimate is None and (e.n_with, e.n_without) == (3, 29)
    md = findings_markdown(findings(records))
    assert "- head.kind crf (vs linear): too few: 3 experiments on one side" in md


def _kw(r: Record) -> dict:
    src = [c for s in r.config.curriculum for c in s.corpora if c != TARGET]
    share = sum(s.fraction for s in r.config.curriculum if TARGET not in s.corpora)
    return {"sources": src, "share": share, "lr": r.config.optim.lr}


def test_too_few_experiments_for_any_estimate():
    f = findings(night(rows=5))
    assert f.effects == [] and f.residual_df is None
    assert "5 scored experiments: too few" in findings_markdown(f)


def test_a_factor_always_changed_with_another_is_not_separable():
    """Each experiment with a source has one more stage: stages is the source in disguise."""
    f = findings(night())
    e = by_factor(f)
    assert e["stages"].verdict == ALIASED and e["stages"].estimate is None
    assert "bc5cdr_chem" in e["stages"].note and "linnaeus" in e["stages"].note


def test_crashes_and_unreadable_configs_are_counted_and_left_out():
    clean = findings(night())
    crashed = night() + [
        record(99, 0.0, status="crash", sources=["bc5cdr_chem"]),
        record(98, 0.0, status="crash"),
        Record(97, None, 0.9, 1, "discard", "c0ffee0:x.yaml: not valid YAML"),
    ]
    f = findings(crashed)  # fmt: skip
    assert (f.experiments, f.fitted, f.crashed) == (35, 32, 2)
    assert f.unreadable == ["#97: c0ffee0:x.yaml: not valid YAML"]
    assert by_factor(f) == by_factor(clean)
    md = findings_markdown(f)
    assert "2 crashed (left out), 1 with a config that could not be read (#97: c0ffee0" in md


def test_an_experiment_that_found_no_entity_is_left_out_like_a_crash():
    clean = findings(night())
    f = findings(night() + [record(40, 0.0, sources=["linnaeus"], lr=1e-5)])
    assert f.no_entity == [40] and f.fitted == 32 and by_factor(f) == by_factor(clean)
    assert "1 scored F1 0, finding no entity (#40; left out like a crash)" in findings_markdown(f)


def test_sequential_against_mixed_only_counts_experiments_with_two_sources():
    rng = np.random.default_rng(2)
    records = []
    for n in range(1, 25):
        two, mixed = n % 3 != 0, n % 2 == 0
        src = ["bc5cdr_chem", "linnaeus"] if two else ["linnaeus"]
        f1 = 0.8 - 0.03 * (two and mixed) + rng.normal(0, 0.004)
        records.append(record(n, f1, sources=src, mixed=two and mixed, share=0.3))
    f = findings(records)
    e = by_factor(f)["mixed"]
    assert e.verdict == EFFECT and e.high < 0 and (e.n_with, e.n_without) == (8, 8)
    answer = {a.question: a.answer for a in f.answers}["Sequential or mixed sources?"]
    assert answer.startswith("-3.")


def test_share_points_are_the_scored_experiments_by_source():
    records = [record(1, 0.8), record(2, 0.82, sources=["bc2gm"], share=0.2),
               record(3, 0.81, sources=["bc2gm", "linnaeus"]),
               record(4, 0.0, status="crash", sources=["bc2gm"])]  # fmt: skip
    points = findings(records).share_points
    assert [(p.source, p.share, p.n) for p in points] == [
        (TARGET_ONLY, 0.0, 1), ("bc2gm", 0.2, 2), (SEVERAL, 0.3, 3)]  # fmt: skip


# -----------------------------------------------------------------------------
# a tag's records: the experiment commits' configs and their rows


@pytest.fixture
def tagged(tmp_path, monkeypatch, synthetic_home):
    """A repository whose tag `night` holds three experiments of configs/smoke.yaml (one
    crashed), as the loop leaves them, and a results.tsv with their rows and another tag's."""
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    path = tmp_path / "proj"
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "smoke.yaml").write_text(yaml.safe_dump(raw()))
    repo = init_repo(path)
    monkeypatch.chdir(path)
    branch = RunBranch(path, "night")
    config = path / "configs" / "smoke.yaml"
    runs = [(raw(), 0.80, "keep"), (raw(sources=["bc2gm"]), 0.83, "discard"),
            (raw(lr=1.0), 0.0, "crash")]  # fmt: skip
    for n, (cfg, f1, status) in enumerate(runs, 1):
        role = "baseline" if n == 1 else "experiment"
        commit = branch.experiment_commit(n, config, yaml.safe_dump(cfg), f"try {n}",
                                          repo.head.commit.hexsha, role)  # fmt: skip
        where = {"config": "configs/smoke.yaml"} if n == 2 else {}  # else the commit's trailer
        append_row(path / "results.tsv", {"commit": commit, "target": TARGET, "tag": "night",
                                          "n": n, "role": role, "dev_f1": f"{f1:.6f}",
                                          "status": status, **where})  # fmt: skip
    append_row(path / "results.tsv", {"commit": "other", "target": TARGET, "dev_f1": "0.9",
                                      "status": "ok"})  # fmt: skip
    return path


def test_a_tags_records_come_from_its_commits_and_rows(tagged):
    records = load_records(tagged, "night", tagged / "results.tsv")
    assert [(r.n, r.status, r.f1) for r in records] == [
        (1, "keep", 0.80), (2, "discard", 0.83), (3, "crash", 0.0)]  # fmt: skip
    assert [list(r.config.curriculum[0].corpora) for r in records] == [
        [TARGET], ["bc2gm"], [TARGET]]  # fmt: skip
    assert records[2].config.optim.lr == 1.0


def test_analyze_findings_json(tagged):
    out = json.loads(analyze_py("findings", "--tag", "night", "--json", cwd=tagged).stdout)
    assert (out["experiments"], out["fitted"], out["crashed"]) == (3, 2, 1)
    assert out["target"] == TARGET and out["notes"] == ["2 scored experiments: too few for any "
                                                        "estimate"]  # fmt: skip
    r = analyze_py("findings", "--tag", "night", "--config", "configs/smoke.yaml", cwd=tagged)
    assert "3 experiments: 2 scored, 1 crashed (left out)" in r.stdout


def test_the_share_figure_draws_one_line_per_source_and_the_rest_as_points(tmp_path):
    points = [SharePoint("bc2gm", 0.4, 0.82, 2), SharePoint(TARGET_ONLY, 0.0, 0.80, 1),
              SharePoint("bc2gm", 0.2, 0.81, 3), SharePoint("linnaeus", 0.3, 0.79, 4),
              SharePoint(SEVERAL, 0.5, 0.83, 5)]  # fmt: skip
    fig = share_figure(points)
    ax = fig.axes[0]
    lines = {line.get_label(): line.get_xydata().tolist() for line in ax.get_lines()}
    assert lines == {"bc2gm": [[20, 81], [40, 82]], "linnaeus": [[30, 79]]}
    points_of = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert points_of == {SEVERAL: [[50, 83]], TARGET_ONLY: [[0, 80]]}
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["bc2gm", "linnaeus", SEVERAL, TARGET_ONLY]
    assert ax.get_xlim()[1] < 100  # no empty stretch to 100% after the last share
    plt.close(fig)
    plot_share(points, tmp_path / "share.png")
    assert (tmp_path / "share.png").read_bytes().startswith(b"\x89PNG")
