"""analyze.py and nerlab.analysis on logs written by the project's own writers (results.append_row
and the sweep's append_matrix_row); every expected number is computed here independently (numpy,
scipy)."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats as sps

from nerlab import analysis
from nerlab.errors import UserError
from nerlab.results import BASELINE, COLUMNS, append_matrix_row, append_row
from nerlab.stats import diff_ci, mean_ci
from tests.helpers import REASONS, run_script, write_loop_log


def expected_running_best(rows: list[dict]) -> np.ndarray:
    f1 = np.array([float(r["dev_f1"]) for r in rows])
    kept = np.array([r["status"] in ("keep", "ok") for r in rows])
    best = np.maximum.accumulate(np.where(kept, f1, -np.inf))
    return np.where(np.isinf(best), np.nan, best)


# -----------------------------------------------------------------------------
# results.tsv: progress and summary


def test_running_best_and_target_choice(tmp_path, capsys):
    path = tmp_path / "results.tsv"
    rows = write_loop_log(path)
    df = analysis.load_experiments(path, None)  # the latest row's target, with a note
    assert "holds 2 targets" in capsys.readouterr().err
    assert df["target"].unique().tolist() == ["ncbi_disease"] and len(df) == len(rows)
    np.testing.assert_allclose(analysis.running_best(df), expected_running_best(rows))
    assert len(analysis.load_experiments(path, "linnaeus")) == 1


def test_summary_json(tmp_path):
    path = tmp_path / "results.tsv"
    rows = write_loop_log(path)
    r = run_script("analyze.py", "summary", "--results", str(path), "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    counts = Counter(x["status"] for x in rows)
    assert s["counts"] == {k: counts[k] for k in ("keep", "discard", "crash", "ok")}
    assert s["experiments"] == len(rows) and s["target"] == "ncbi_disease"
    # the baseline is kept by rule: no part of the keep rate
    assert s["baselines"] == 1
    assert s["keep_rate"] == pytest.approx((counts["keep"] - 1) / (len(rows) - counts["ok"] - 1))
    best = expected_running_best(rows)
    assert s["best"]["dev_f1"] == pytest.approx(best[-1])
    assert rows[s["best"]["n"] - 1]["dev_f1"] == f"{best[-1]:.6f}"
    # improvements: each row that raised the running best, by gain; the first has no gain
    gains = [(i + 1, best[i] - best[i - 1]) for i in range(1, len(rows))
             if not math.isnan(best[i - 1]) and best[i] > best[i - 1]]  # fmt: skip
    top = sorted(gains, key=lambda g: -g[1])[: analysis.TOP_IMPROVEMENTS]
    got = [(x["n"], x["delta"]) for x in s["improvements"] if x["delta"] is not None]
    assert [n for n, _ in got] == [n for n, _ in top]
    np.testing.assert_allclose([d for _, d in got], [d for _, d in top])
    crashed = [r for r in rows if r["status"] == "crash"]
    assert [x["reason"] for x in s["crashes"]] == [
        REASONS[int(r["commit"][1:]) % 2] for r in crashed
    ]
    assert [x["description"] for x in s["crashes"]] == [r["description"] for r in crashed]


def test_an_old_layout_file_is_summarised_as_it_is(tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(
        "timestamp\tcommit\ttarget\tdev_f1\tdev_f1_std\trepeats\tmemory_gb\ttrain_s\tstatus\t"
        "description\n"
        "2026-11-28T01:00:00\ta\tt\t0.5\t0\t1\t0.1\t1.0\tkeep\tbaseline [keep: first result]\n"
        "2026-11-28T02:00:00\tb\tt\t0\t0\t1\t0.1\t1.0\tcrash\tlr 5 [crash: loss is nan]\n"
    )  # fmt: skip
    before = path.read_text()
    s = analysis.summarize(analysis.load_experiments(path, None), path)
    assert (s["experiments"], s["baselines"]) == (2, 1) and path.read_text() == before
    assert s["crashes"][0]["reason"] == "loss is nan"
    assert s["crashes"][0]["description"] == "lr 5"


def test_summary_markdown(tmp_path):
    path = tmp_path / "results.tsv"
    rows = write_loop_log(path)
    s = analysis.summarize(analysis.load_experiments(path, None), path)
    text = analysis.summary_markdown(s)
    n_keep = sum(r["status"] == "keep" for r in rows)
    assert f"| keep | {n_keep} |" in text and "## Top improvements" in text
    assert f"| {REASONS[0]} |" in text and "Keep rate:" in text
    kept, judged = n_keep - 1, sum(r["status"] != "ok" for r in rows) - 1
    assert f"({kept} kept of {judged} judged, baselines aside)" in text


def test_summary_markdown_escapes_pipes_in_descriptions(tmp_path):
    path = tmp_path / "results.tsv"
    append_row(path, {"commit": "a", "target": "t", "dev_f1": "0.5", "status": "keep",
                      "description": "baseline", "role": "baseline"})  # fmt: skip
    append_row(path, {"commit": "b", "target": "t", "dev_f1": "0.6", "status": "keep",
                      "description": "bc2gm 30% -> target | lr 1e-3 | crf"})  # fmt: skip
    text = analysis.summary_markdown(
        analysis.summarize(analysis.load_experiments(path, None), path)
    )
    row = next(line for line in text.splitlines() if line.startswith("| 2 |"))
    assert row.endswith(r"| bc2gm 30% -> target \| lr 1e-3 \| crf |")
    assert len(row.replace(r"\|", "").split("|")) == 7  # five cells between the bars
    assert "Keep rate: 100% (1 kept of 1 judged" in text


def test_progress_png(tmp_path):
    path, out = tmp_path / "results.tsv", tmp_path / "plots" / "progress.png"
    write_loop_log(path, n=40)
    r = run_script("analyze.py", "progress", "--results", str(path), "--out", str(out),
                   home=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    image = imread(out)
    assert out.stat().st_size > 30_000
    assert image.shape[0] >= 600 and image.shape[1] >= 1200  # inches x dpi 150
    assert image[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "results file not found"),
        ("", "empty file"),
        ("HEADER", "no experiments recorded yet"),
        ("HEADER2026-01-01\tc1\tncbi_disease\n", "expected 15 tab-separated columns, found 3"),
        ("a\tb\n", "expected the header"),
        ("HEADERt\tt\t1\t\tc1\tc.yaml\tncbi_disease\t0.5\t0\t1\t1\t3\tgreat\t\td\n",
         r"results.tsv:2: status 'great' is not one of ok, keep, discard, crash"),
        ("HEADER\xff\n", r"results.tsv:2: not valid UTF-8 \(byte 0xff at column 1\)"),
    ],
)  # fmt: skip
def test_bad_results_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "results.tsv"
    if content is not None:  # latin-1: one byte per character, so \xff stays a lone byte
        path.write_bytes(content.replace("HEADER", "\t".join(COLUMNS) + "\n").encode("latin-1"))
    with pytest.raises(UserError, match=message):  # summary's and progress's loader
        analysis.load_experiments(path, None)


def test_an_error_is_one_line_without_traceback(tmp_path):
    r = run_script("analyze.py", "progress", "--results", str(tmp_path / "none.tsv"), home=tmp_path)
    assert (
        r.returncode == 1
        and r.stderr == f"error: {tmp_path / 'none.tsv'}: results file not found\n"
    )


# -----------------------------------------------------------------------------
# the transfer matrix


def test_intervals_match_scipy():
    a, b = [0.81, 0.84, 0.79, 0.86], [0.78, 0.77, 0.80]
    low, high = sps.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=sps.sem(a))
    iv = mean_ci(a)
    assert iv.mean == pytest.approx(np.mean(a))
    assert (iv.low, iv.high) == (pytest.approx(low), pytest.approx(high))
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = diff_ci(a, b)
    assert d.mean == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def write_matrix(path, seeds: int = 3) -> dict[tuple[str, str], list[float]]:
    """Runs of a 2-target matrix: B helps A by ~5 points, C does nothing for A, nor A for B.
    Returns the F1s as written, per (target, source)."""
    rng = np.random.default_rng(0)
    means = {("A", BASELINE): 0.70, ("A", "B"): 0.75, ("A", "C"): 0.70,
             ("B", BASELINE): 0.80, ("B", "A"): 0.80}  # fmt: skip
    written: dict[tuple[str, str], list[float]] = {}
    for seed in range(seeds):
        for (target, source), mean in means.items():
            f1 = rng.normal(mean, 0.01)
            cells = append_matrix_row(path, {"protocol": "p", "target": target, "source": source,
                                             "fraction": 0.5, "seed": seed,
                                             "dev_f1": f"{f1:.6f}", "status": "ok"})  # fmt: skip
            written.setdefault((target, source), []).append(float(cells["dev_f1"]))
    append_matrix_row(path, {"protocol": "p", "target": "A", "source": "C", "seed": 9,
                             "dev_f1": 0.0, "status": "crash", "reason": "oom"})  # fmt: skip
    return written


def test_matrix_cells_against_scipy(tmp_path):
    path = tmp_path / "matrix.tsv"
    f1 = write_matrix(path)
    cells, baselines = analysis.transfers(analysis.load_matrix(path))
    assert {(c.target, c.source) for c in cells} == {("A", "B"), ("A", "C"), ("B", "A")}
    for c in cells:
        x, base = f1[(c.target, c.source)], f1[(c.target, BASELINE)]
        ci = sps.ttest_ind(x, base, equal_var=False).confidence_interval(0.95)
        assert c.n == len(x) == 3 and c.n_base == 3  # the crashed run is left out
        assert c.delta.mean == pytest.approx(np.mean(x) - np.mean(base))
        assert c.delta.half_width == pytest.approx((ci.high - ci.low) / 2)
        assert c.significant == (ci.low > 0 or ci.high < 0)
    by = {(c.target, c.source): c for c in cells}
    assert by[("A", "B")].significant and not by[("A", "C")].significant  # both kinds of cell
    assert baselines["A"].mean == pytest.approx(np.mean(f1[("A", BASELINE)]))
    [pair] = analysis.asymmetries(cells)
    assert (pair["a"], pair["b"]) == ("A", "B")
    expected = (np.mean(f1[("B", "A")]) - np.mean(f1[("B", BASELINE)])) - (
        np.mean(f1[("A", "B")]) - np.mean(f1[("A", BASELINE)])
    )  # Δ(A -> B) - Δ(B -> A): A as source for target B, minus B as source for target A
    assert pair["asymmetry"] == pytest.approx(expected)
    # --json: the same numbers, a one-seed interval's half width as null
    got = json.loads(json.dumps(analysis.matrix_json(cells)))
    assert got["asymmetry"] == [pair] and len(got["cells"]) == len(cells)
    assert got["cells"][0]["delta"]["half_width"] == pytest.approx(cells[0].delta.half_width)
    assert got["cells"][0]["significant"] == cells[0].significant


def test_matrix_command_table_and_heatmap(tmp_path):
    path, out = tmp_path / "matrix.tsv", tmp_path / "matrix.png"
    f1 = write_matrix(path)
    r = run_script("analyze.py", "matrix", "--results", str(path), "--out", str(out),
                   home=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    x, base = f1[("A", "B")], f1[("A", BASELINE)]
    ci = sps.ttest_ind(x, base, equal_var=False).confidence_interval(0.95)
    label = f"{100 * (np.mean(x) - np.mean(base)):+.1f} ± {50 * (ci.high - ci.low):.1f}"
    assert (
        f"| A | B | {100 * np.mean(base):.1f} | {100 * np.mean(x):.1f} | {label} | 3/3 | yes |"
        in (r.stdout)
    )
    assert "| B | A |" in r.stdout and "| ns |" in r.stdout and "| A ↔ B |" in r.stdout
    assert "1 crashed runs left out" in r.stderr
    image = imread(out)
    assert out.stat().st_size > 20_000 and image.shape[0] >= 400 and image.shape[1] >= 1000
    assert image[..., :3].std() > 0.05


def test_matrix_errors(tmp_path):
    path = tmp_path / "matrix.tsv"
    r = run_script("analyze.py", "matrix", "--results", str(path), home=tmp_path)
    assert r.returncode == 1 and "matrix file not found" in r.stderr
    append_matrix_row(path, {"target": "A", "source": BASELINE, "seed": 0, "status": "crash"})
    r = run_script("analyze.py", "matrix", "--results", str(path), home=tmp_path)
    assert r.returncode == 1 and "every run crashed" in r.stderr and "Traceback" not in r.stderr


def test_the_cost_of_a_night():
    df = pd.DataFrame({
        "timestamp": ["2026-01-01T00:00:00", "2026-01-01T00:30:00", "2026-01-01T02:00:00"],
        "train_s": [300.0, 300.0, 400.0], "repeats": [1, 3, 1],
    })  # fmt: skip
    cost = analysis.night_cost(df)
    hours = (7200 + 300) / 3600  # from the first one's start: its end less its training
    assert cost["hours"] == pytest.approx(hours)
    assert cost["per_hour"] == pytest.approx(3 / hours)  # every experiment, the first too
    assert cost["train_share"] == pytest.approx((300 + 3 * 300 + 400) / 3600 / hours)
    assert analysis.night_cost(df.iloc[:1]) is None


def test_a_timezone_change_counts_no_hours(tmp_path):
    """Row times are local without a zone: 13 experiments, one every 10 minutes, the clock
    moved forward 7 h (a new timezone) after the 5th and back 1 h (DST ends) after the 9th."""
    path = tmp_path / "results.tsv"
    start = pd.Timestamp("2026-03-28T22:00:00")
    for i, shift in enumerate([0] * 5 + [7] * 4 + [6] * 4):
        at = start + pd.Timedelta(minutes=10 * i) + pd.Timedelta(hours=shift)
        row = {"commit": f"c{i}", "target": "ncbi_disease", "dev_f1": "0.5", "train_s": "300",
               "repeats": 1, "status": "discard"}  # fmt: skip
        append_row(path, {"timestamp": at.isoformat(), **row})
    s = analysis.summarize(analysis.load_experiments(path, None), path)
    hours = (2 * 3600 + 300) / 3600  # the first experiment's 300 s of training included
    assert s["cost"]["hours"] == pytest.approx(hours)
    assert s["cost"]["per_hour"] == pytest.approx(13 / hours)
    assert (
        f"Cost: {13 / hours:.1f} experiments/hour over {hours:.2f} h"
        in analysis.summary_markdown(s)
    )
