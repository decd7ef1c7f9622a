"""The transfer-matrix sweep: planning, the matrix file, resume, and real runs of train.py
(tiny model, synthetic corpora, 20 steps) sequentially and as Ray tasks."""

from __future__ import annotations

import pytest
import yaml
from matplotlib.image import imread

from nerlab import prepare, sweep
from nerlab import results as results_file
from nerlab.config import load_config
from nerlab.errors import UserError
from nerlab.results import BASELINE
from nerlab.runner import outcome_of
from nerlab.store import Store
from nerlab.summary import format_summary
from nerlab.sweep import Cell
from tests.helpers import run_script

SMOKE = "configs/smoke.yaml"
SHORT = ["budget.steps=20"]  # a run is then ~5 s, nearly all of it imports
TARGETS, SOURCE = ["ncbi_disease", "linnaeus"], "bc5cdr_chem"
MATRIX_ARGS = [
    "-m", "nerlab.sweep", "matrix", "--targets", ",".join(TARGETS), "--sources", SOURCE,
    "--repeats", "2", "--base-config", SMOKE, "--set", SHORT[0],
]  # fmt: skip


def cells_of(df) -> set[Cell]:
    return {Cell(t, s, int(k)) for t, s, k in zip(df["target"], df["source"], df["seed"])}


# -----------------------------------------------------------------------------
# planning and configs (no training)


def test_plan_is_seed_major_and_skips_the_target_as_its_own_source(synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    base = load_config(SMOKE, SHORT)
    cells = sweep.plan(base, ["ncbi_disease", "bc5cdr_chem"], ["bc5cdr:Chemical", "linnaeus"], 2)
    # bc5cdr:Chemical is the bc5cdr_chem view under another name: never its own source
    assert Cell("bc5cdr_chem", "bc5cdr:Chemical", 0) not in cells
    assert len(cells) == 2 * (3 + 2)
    assert [c.seed for c in cells] == [0] * 5 + [1] * 5  # a partial sweep is a whole matrix
    assert cells[0] == Cell("ncbi_disease", BASELINE, 0)


def test_composed_configs_and_protocol(synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    base = load_config(SMOKE, SHORT)
    two_stage = yaml.safe_load(sweep.compose(base, Cell("linnaeus", "bc5cdr_chem", 3), 0.3))
    assert two_stage["curriculum"] == [
        {"corpora": ["bc5cdr_chem"], "fraction": 0.3},
        {"corpora": ["linnaeus"], "fraction": 0.7},
    ]
    assert two_stage["target"] == "linnaeus" and two_stage["seed"] == 3
    assert two_stage["repeats"] == 1 and two_stage["budget"] == {"steps": 20}
    baseline = yaml.safe_load(sweep.compose(base, Cell("linnaeus", BASELINE, 0), 0.3))
    assert baseline["curriculum"] == [{"corpora": ["linnaeus"], "fraction": 1.0}]
    # the protocol ignores what the sweep sets per run, and sees everything else
    p = sweep.protocol_of(base, 0.5)
    assert p == sweep.protocol_of(load_config(SMOKE, [*SHORT, "seed=7", "repeats=3"]), 0.5)
    assert p != sweep.protocol_of(base, 0.3)
    assert p != sweep.protocol_of(load_config(SMOKE, ["budget.steps=30"]), 0.5)


def test_source_without_train_split_is_skipped(ner_home, capsys):
    store = Store(ner_home / "synthetic")
    for name in ("ncbi_disease", "jnlpba"):
        splits = prepare.load_synthetic(name, seed=0).splits
        if name == "jnlpba":  # as the real JNLPBA copy: dev and test only
            splits = {k: v for k, v in splits.items() if k != "train"}
        store.write(name, splits, {"source": "synthetic", "source_id": name})
    args = ["matrix", "--targets", "ncbi_disease", "--sources", "jnlpba", "--repeats", "2",
            "--base-config", SMOKE, "--results", str(ner_home / "m.tsv"), "--dry-run"]  # fmt: skip
    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert "skipping source jnlpba: it has no train split" in out
    assert "2 cells" in out and "jnlpba, seed" not in out  # the baselines only
    with pytest.raises(UserError, match="corpus 'linnaeus' is not prepared.*--synthetic"):
        sweep.main([*args[:4], "linnaeus", *args[5:]])


def test_a_file_of_another_protocol_is_refused(synthetic_home, monkeypatch, tmp_path):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    results = tmp_path / "m.tsv"
    results_file.append_matrix_row(results, {"protocol": "0123456789", "target": "ncbi_disease",
                                      "source": BASELINE, "seed": 0, "status": "ok"})  # fmt: skip
    with pytest.raises(UserError, match="holds runs of another protocol"):
        sweep.main(["matrix", *MATRIX_ARGS[3:], "--results", str(results), "--dry-run"])


def test_a_row_torn_by_a_killed_sweep_is_set_aside_on_resume(tmp_path):
    path = tmp_path / "m.tsv"
    results_file.append_matrix_row(path, {"protocol": "p", "target": "t", "source": BASELINE,
                                   "seed": 0, "status": "ok"})  # fmt: skip
    with open(path, "a") as f:
        f.write("2026-01-01T00:00:00\tp\tt")  # killed mid-row
    assert sweep.done_cells(path, "p") == {Cell("t", BASELINE, 0)}
    assert (tmp_path / "m.tsv.partial").read_text() == "2026-01-01T00:00:00\tp\tt\n"


# -----------------------------------------------------------------------------
# the matrix file and the rows made from a run's outcome


def test_matrix_file_header_once_and_clear_errors(tmp_path):
    path = tmp_path / "m.tsv"
    for seed in (0, 1):
        results_file.append_matrix_row(path, {"target": "t", "source": "s", "seed": seed,
                                       "dev_f1": 0.5, "status": "ok"})  # fmt: skip
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == results_file.MATRIX_COLUMNS and len(lines) == 3
    df = results_file.read_matrix(path)
    assert df["seed"].tolist() == [0, 1] and df["dev_f1"].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="status must be one of"):
        results_file.append_matrix_row(path, {"status": "keep"})
    with open(path, "a") as f:
        f.write("2026-01-01\tabc\n")
    with pytest.raises(UserError, match=r"m.tsv:4: expected 14 tab-separated columns, found 2"):
        results_file.read_matrix(path)
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(UserError, match="empty file"):
        results_file.read_matrix(tmp_path / "empty.tsv")
    with pytest.raises(UserError, match="matrix file not found"):
        results_file.read_matrix(tmp_path / "none.tsv")


def test_rows_from_outcomes():
    cell = Cell("ncbi_disease", "linnaeus", 1)
    summary = format_summary({"dev_f1": 0.75, "f1_seeds": "0.75", "train_seconds": 3.0,
                              "steps": 20, "device": "cpu", "status": "ok"})  # fmt: skip
    row = sweep.outcome_row(cell, outcome_of("log\n" + summary, 0), "p", 0.5)
    assert row["status"] == "ok" and row["dev_f1"] == "0.750000" and row["steps"] == "20"
    crash = format_summary({"status": "crash", "reason": "loss is nan at step 3"})
    row = sweep.outcome_row(cell, outcome_of(crash, 1), "p", 0.5)
    assert row["status"] == "crash" and row["reason"] == "loss is nan at step 3"
    row = sweep.outcome_row(cell, outcome_of("stage 1\nKilled", -9), "p", 0.5)
    assert row["reason"] == "no summary (exit code -9): stage 1 | Killed"
    assert sweep.outcome_row(cell, outcome_of("", None, 60), "p", 0.5)["reason"] == (
        "timeout: killed after 60 s"
    )


# -----------------------------------------------------------------------------
# real runs: 2 targets x 1 source x 2 seeds


def test_sequential_matrix_then_resume_runs_nothing(synthetic_home, tmp_path):
    results, logs = tmp_path / "matrix.tsv", tmp_path / "logs"
    args = [*MATRIX_ARGS, "--results", str(results), "--logs", str(logs)]
    r = run_script(*args, home=synthetic_home)
    assert r.returncode == 0, r.stdout + r.stderr
    df = results_file.read_matrix(results)
    expected = {Cell(t, s, k) for t in TARGETS for s in (BASELINE, SOURCE) for k in (0, 1)}
    assert len(df) == 8 and cells_of(df) == expected
    assert set(df["status"]) == {"ok"} and (df["steps"] == 20).all()
    assert df["dev_f1"].between(0.05, 1).all()  # trained: an all-O prediction scores 0
    assert df["protocol"].nunique() == 1 and set(df["fraction"]) == {0.5}
    assert len(list(logs.glob("*.log"))) == 8
    again = run_script(*args, home=synthetic_home)
    assert again.returncode == 0 and "8 done" in again.stdout and "0 to run" in again.stdout
    assert len(results_file.read_matrix(results)) == 8

    out = tmp_path / "matrix.png"
    r = run_script("analyze.py", "matrix", "--results", str(results), "--out", str(out),
                   home=synthetic_home)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"| ncbi_disease | {SOURCE} |" in r.stdout and f"| linnaeus | {SOURCE} |" in r.stdout
    assert out.stat().st_size > 20_000 and imread(out).shape[1] >= 1000


def test_ray_workers_resume_only_missing_and_crashed_cells(synthetic_home, tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    results = tmp_path / "matrix.tsv"
    protocol = sweep.protocol_of(load_config(SMOKE, SHORT), 0.5)
    # seed 0 done (made-up rows: resume must not look at their numbers), seed 1 of one cell
    # crashed: the sweep runs the four seed-1 cells and nothing else
    for t in TARGETS:
        for s in (BASELINE, SOURCE):
            row = {"target": t, "source": s, "seed": 0, "dev_f1": 0.5, "status": "ok"}
            results_file.append_matrix_row(results, {"protocol": protocol, **row})
    row = {"target": TARGETS[0], "source": SOURCE, "seed": 1, "status": "crash", "reason": "x"}
    results_file.append_matrix_row(results, {"protocol": protocol, **row})
    r = run_script(*MATRIX_ARGS, "--results", str(results), "--logs", str(tmp_path / "logs"),
                   "--workers", "2", home=synthetic_home)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 done" in r.stdout and "4 to run" in r.stdout
    assert "ray: 2 workers, 1 CPU per run" in r.stdout
    new = results_file.read_matrix(results).iloc[5:]
    assert len(new) == 4 and set(new["status"]) == {"ok"} and set(new["seed"]) == {1}
    assert cells_of(new) == {Cell(t, s, 1) for t in TARGETS for s in (BASELINE, SOURCE)}
