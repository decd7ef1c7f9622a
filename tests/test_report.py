"""The tag's report page and tag-numbered experiments: rows in completion order map to the
loop's numbers through the tag's refs; report.html is one self-contained file."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re

import pytest
import yaml

from nerlab.analysis import tag_experiments
from nerlab.card import model_card
from nerlab.config import ExperimentConfig
from nerlab.errors import UserError
from nerlab.final import markdown as final_markdown
from nerlab.findings import EFFECT, points, tag_findings
from nerlab.gitops import RunBranch
from nerlab.plots import plt, progress_figure
from nerlab.report import duration
from nerlab.results import append_row
from tests.helpers import FINAL_BASE as BASE
from tests.helpers import ROOT, analyze_py, init_repo, run_script


@pytest.fixture
def repo(tmp_path, monkeypatch):
    path = tmp_path / "proj"
    (path / "configs").mkdir(parents=True)
    (path / "configs" / "current.yaml").write_text(yaml.safe_dump(BASE))
    init_repo(path)
    monkeypatch.chdir(path)
    return path


# n, lr, status, dev F1, std, crash reason; rows are appended in the order of `FINISHED`
NIGHT = [
    (1, 0.005, "keep", 0.70, 0.0, ""),
    (2, 0.01, "keep", 0.78, 0.012, ""),
    (3, 0.02, "discard", 0.60, 0.0, ""),
    (4, 5.0, "crash", 0.0, 0.0, "loss is nan at step 3"),
    (5, 0.008, "keep", 0.80, 0.01, ""),
]
FINISHED = [1, 3, 2, 5, 4]  # parallel workers: completion order is not experiment order


def record_night(repo, descriptions: dict[int, str] | None = None) -> dict[int, str]:
    """The experiments as the loop leaves them: commits with refs, rows, kept ones landed;
    `descriptions` replaces some experiments' `lr ...` descriptions."""
    descriptions = descriptions or {}
    git_ = RunBranch(repo, "night")
    git_.checkout()
    path = repo / "configs" / "current.yaml"
    commits, texts = {}, {}
    for n, lr, *_ in NIGHT:
        texts[n] = yaml.safe_dump({**BASE, "optim": {**BASE["optim"], "lr": lr}})
        description, role = (
            ("baseline", "baseline") if n == 1 else (descriptions.get(n, f"lr {lr}"), "experiment")
        )
        commits[n] = git_.experiment_commit(n, path, texts[n], description, git_.tip().hexsha,
                                            role)  # fmt: skip
    by_n = {row[0]: row for row in NIGHT}
    for n in FINISHED:
        _, lr, status, f1, std, reason = by_n[n]
        description, role = (
            ("baseline", "baseline") if n == 1 else (descriptions.get(n, f"lr {lr}"), "experiment")
        )
        append_row(
            repo / "results.tsv",
            {
                "commit": commits[n],
                "target": "ncbi_disease",
                "dev_f1": f"{f1:.6f}",
                "dev_f1_std": f"{std:.6f}",
                "repeats": 3 if std else 1,
                "status": status,
                "reason": reason,
                "description": description,
                "tag": "night",
                "n": n,
                "role": role,
            },
        )
        if status == "keep":
            git_.land(n, commits[n], path, texts[n], description, role)
    git_.repo.git.checkout("main")
    run_dir = repo / "runs" / "night"
    run_dir.mkdir(parents=True)
    (run_dir / "5.log").write_text("...\n---\ndev_f1: 0.80\nstatus: ok\nf1_Disease: 0.80\n")
    return commits


def test_rows_in_completion_order_take_the_loops_numbers(repo):
    commits = record_night(repo)
    df = tag_experiments(repo / "results.tsv", repo, "night")
    assert df["n"].tolist() == [1, 2, 3, 4, 5]
    assert df["commit"].tolist() == [commits[n] for n in range(1, 6)]
    with pytest.raises(UserError, match="tag 'other' has no experiments"):
        tag_experiments(repo / "results.tsv", repo, "other")


def final_report(commits: dict[int, str]) -> dict:
    """final.json of the night: experiment 5 beat the baseline on test."""
    return {
        "tag": "night",
        "target": "ncbi_disease",
        "note": "The test split is used here",
        "seeds": [0, 1, 2],
        "hardware": "CPU",
        "best_is_baseline": False,
        "baseline": {
            "n": 1,
            "commit": commits[1],
            "finished": 3,
            "crashed": 0,
            "dev": {"f1": 0.7, "f1_std": 0.01},
            "test": {
                "f1": 0.68,
                "f1_std": 0.01,
                "precision": 0.7,
                "recall": 0.66,
                "per_type": {"Disease": 0.68},
            },
        },
        "best": {
            "n": 5,
            "commit": commits[5],
            "finished": 3,
            "crashed": 0,
            "dev": {"f1": 0.8, "f1_std": 0.01},
            "test": {
                "f1": 0.79,
                "f1_std": 0.01,
                "precision": 0.8,
                "recall": 0.78,
                "per_type": {"Disease": 0.79},
            },
        },
        "difference": {"mean": 0.11, "half_width": 0.02, "significant": True},
    }


def test_report_is_one_self_contained_page(repo):
    commits = record_night(repo)
    final = final_report(commits)
    (repo / "runs" / "night" / "final.json").write_text(json.dumps(final))
    analyze_py("report", "--tag", "night", cwd=repo)
    page = (repo / "runs" / "night" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    assert "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 and base64.b64decode(images[0]).startswith(b"\x89PNG")
    assert "70.00 → 80.00" in page and "79.00 ± 1.00" in page and "+11.00 [95% CI" in page
    assert "loss is nan at step 3" in page
    # the improvements: #2 against the baseline's config, then #5 against #2's
    assert page.index(f"<b>#2</b> <code>{commits[2]}</code>") < page.index("<b>#5</b>")
    assert "<span class=del>-  lr: 0.01</span>\n<span class=add>+  lr: 0.008</span>" in page
    assert "<td>Disease</td><td class=num>80.00</td><td class=num>79.00</td>" in page


def test_report_with_a_wrong_config_path_names_the_tags(repo):
    record_night(repo)
    r = run_script(str(ROOT / "analyze.py"), "report", "--tag", "night", "--config",
                   "configs/smoke.yaml", cwd=repo)  # fmt: skip
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: --config configs/smoke.yaml: tag 'night' edits "
                               "configs/current.yaml")  # fmt: skip


HOSTILE = {
    2: "lr $x^ 50% $ <script>alert(1)</script>",
    3: '<img src=x onerror="alert(1)"> | bs $64',
    5: "$2 [x](javascript:alert(1)) ![i](https://evil.example/i.png) \x1b[31m",
}


def rendered(markdown_text: str) -> str:
    """The HTML a markdown renderer (raw HTML allowed, as on GitHub or the hub) makes of it."""
    markdown_it = pytest.importorskip("markdown_it")
    return (
        markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown_text)
    )


def test_hostile_descriptions_stay_text_in_the_report_final_md_and_the_card(repo):
    commits = record_night(repo, HOSTILE)
    final = final_report(commits)
    final["best"]["description"] = HOSTILE[5]
    final["best"]["seeds"] = [{"seed": 0, "status": "crash", "reason": HOSTILE[2]}]
    final["baseline"] |= {"description": "baseline", "seeds": []}
    (repo / "runs" / "night" / "final.json").write_text(json.dumps(final))
    analyze_py("report", "--tag", "night", cwd=repo)  # the `$` figure renders
    page = (repo / "runs" / "night" / "report.html").read_text()
    assert "<script" not in page and page.count("<img") == 1 and "href" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "\x1b" not in page
    assert "[x](javascript:alert(1))" in page  # shown as text, not a link

    cfg = ExperimentConfig.model_validate(BASE)
    meta = {"target": "ncbi_disease", "corpus": "ncbi_disease", "types": ["Disease"],
            "labels": ["O", "B-Disease", "I-Disease"], "seed": 0, "eval_f1": 0.8,
            "head": "linear"}  # fmt: skip
    for text in (final_markdown(final), model_card(final, meta, cfg, {}, "out")):
        html = rendered(text)
        assert not re.search(r"<(script|img|a)\b", html) and "\x1b" not in html
        assert "&lt;script&gt;" in html or "javascript:alert(1)" in html


def test_the_headline_says_what_it_counts_in_one_unit(repo):
    record_night(repo)
    analyze_py("report", "--tag", "night", cwd=repo)
    page = (repo / "runs" / "night" / "report.html").read_text()
    # 2 kept of the 4 judged (#2, #3, #4, #5): the baseline is kept by rule and not counted
    assert "<b>2 of 4</b><span>experiments kept (the baseline not counted)</span>" in page
    text = re.sub(r"<pre>.*?</pre>", "", page, flags=re.S)  # configs hold fractions (lr)
    assert not re.search(r"\b0\.\d{4}\b", text)  # F1 points everywhere, never 0.8000
    assert "<b>80.00</b> (+2.00)" in page  # #5 over #2, in points


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (42, 600, 3599, 5 * 3600)] == ["42 s", "10 min", "60 min",
                                                                "5.0 h"]  # fmt: skip


def test_the_progress_figure_of_the_page_fits_its_axis_and_has_no_key(repo):
    record_night(repo)
    df = tag_experiments(repo / "results.tsv", repo, "night")
    df.loc[df["n"] == 5, "dev_f1"] = 0.97
    df.loc[df["n"] == 3, "dev_f1"] = 0.0  # found no entity: drawn at the bottom edge
    fig = progress_figure(df, page=True)
    low, high = fig.axes[0].get_ylim()
    assert len(fig.axes) == 1  # the page lists the numbered points itself
    assert 97 < high < 100 and 60 < low < 70  # points, fitted to 0.70 .. 0.97: not 0 to 1
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "F1 0 (found no entity)" in legend and "crashed" in legend
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"1", "2", "5"} <= labels and all(t.get_fontsize() >= 9 for t in fig.axes[0].texts)
    plt.close(fig)


SHARES = (0.0, 0.2, 0.4)  # of the budget on bc2gm before the target


def share_night(repo, descriptions: list[str]) -> None:
    """12 experiments, 5 minutes apart (the first three kept): bc2gm before the target on a
    share of 0, 20 or 40% of the budget, dev F1 up 2 points per 10% of share (and a little
    noise)."""
    branch = RunBranch(repo, "shares")
    branch.checkout()
    path = repo / "configs" / "current.yaml"
    start = dt.datetime(2026, 1, 1, 22, 0)
    for i in range(12):
        n, share = i + 1, SHARES[i % 3]
        stages = [{"corpora": ["bc2gm"], "fraction": share}] if share else []
        stages.append({"corpora": ["ncbi_disease"], "fraction": round(1 - share, 2)})
        text = yaml.safe_dump({**BASE, "curriculum": stages})
        role = "baseline" if n == 1 else "experiment"
        desc = "baseline" if n == 1 else descriptions[(i - 1) % len(descriptions)]
        commit = branch.experiment_commit(n, path, text, desc, branch.tip().hexsha, role)
        f1 = 0.70 + 0.2 * share + 0.002 * (i % 2)
        append_row(repo / "results.tsv", {
            "timestamp": (start + dt.timedelta(minutes=5 * i)).isoformat(), "commit": commit,
            "target": "ncbi_disease", "dev_f1": f"{f1:.6f}", "repeats": 1, "tag": "shares",
            "status": "keep" if n <= 3 else "discard", "description": desc, "n": n,
            "reason": "+0.0400 over best 0.7000, beyond the noise margin" if n == 2 else "",
            "role": role, "train_s": "0"})  # fmt: skip
        if n <= 3:  # the baseline, then the first share of 20%, then of 40%: each better
            branch.land(n, commit, path, text, desc, role)
    branch.repo.git.checkout("main")


def test_the_report_shows_the_nights_findings_and_the_share_figure(repo, synthetic_home,
                                                                    monkeypatch):  # fmt: skip
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    hostile = ["<script>alert(1)</script> bc2gm $x^ 50%", "share | 0.4 | `x` $2 [a](b)"]
    share_night(repo, hostile)
    analyze_py("report", "--tag", "shares", cwd=repo)
    page = (repo / "runs" / "shares" / "report.html").read_text()
    findings = page.split("<h2>Findings</h2>")[1].split("<h2>")[0]
    f = tag_findings(repo, "shares", repo / "results.tsv")
    share = {e.factor: e for e in f.effects}["share"]
    assert share.verdict == EFFECT  # 2 points per 10% of the budget, known
    effects = findings.split("<h3>Effects")[1].split("<h3>")[0]
    row = (
        f"<td>budget share of the sources</td><td>per +10% of the budget</td><td class=num>"
        f"{points(share.estimate)}</td><td class=num>[{points(share.low)}, "
        f"{points(share.high)}]</td><td class=num>{share.n_with} vs {share.n_without}</td>"
    )
    assert row in effects  # fmt: skip
    assert "12 experiments: 12 in the fit" in findings and "Read with care" in findings
    images = re.findall(r'<img(?: class=small)? alt="([^"]+)"', page)
    assert images == ["progress of the experiments", "F1 against pretraining share per source"]
    # what the proposer wrote is text wherever it shows (the numbered points' list)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; bc2gm $x^ 50%" in page
    assert "<td>share | 0.4 | `x` $2 [a](b)</td>" in page
    assert "<b>12</b><span>experiments</span>" in page
    assert "(decision: +4.00 over best 70.00, beyond the noise margin)" in page  # points
    assert "<b>55 min</b>" in page and f"<b>{12 / (55 / 60):.1f}</b>" in page


def test_the_figure_of_a_first_result_numbers_it_as_one(repo):
    record_night(repo)
    df = tag_experiments(repo / "results.tsv", repo, "night").head(1)
    fig = progress_figure(df, page=True)
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    assert [t for t in ax.get_xticks() if low <= t <= high] == [1]  # not 0.30, 0.45, ...
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kept", "running best"]
    plt.close(fig)
