"""The live report page: rewritten while the loop runs (the run in flight, its progress line, an
estimated finish), reloading itself until the loop stops, then saying why; a page that cannot
be rendered never stops the loop."""

from __future__ import annotations

import threading
import time

import git
import pytest

from nerlab import loop as loop_module
from nerlab.agents import Proposal
from nerlab.live import LivePage, _left, progress
from nerlab.loop import LoopOptions, ResearchLoop
from tests.helpers import HANG_GUARD_S, Scripted, make_repo

HOSTILE = "<script>alert(1)</script> lr | $x^ 50%"


class Described(Scripted):
    """Scripted proposals under a description that tries to be HTML."""

    def propose(self, ctx, error=None):
        p = super().propose(ctx, error)
        return Proposal(p.config_yaml, HOSTILE)


@pytest.fixture
def sleepy(tmp_path, monkeypatch, synthetic_home):
    """A project with the fake trainer; runs of configs written by the loop take 4 s, and the
    page is rewritten every 0.2 s while they run."""
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "4")
    monkeypatch.setattr(loop_module, "TICK_S", 0.2)
    return make_repo(tmp_path / "proj", fake_train=True)


def read_until(page, proc: threading.Thread, *wanted: str) -> str:
    deadline = time.monotonic() + HANG_GUARD_S
    text = ""
    while time.monotonic() < deadline and proc.is_alive():
        text = page.read_text() if page.exists() else ""
        if all(w in text for w in wanted):
            return text
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {wanted}:\n{text[-3000:]}")


def test_the_page_shows_the_run_in_flight_then_why_the_loop_stopped(sleepy):
    opts = LoopOptions(tag="t", max_experiments=2, confirm_repeats=1, live_page=True)
    said: list[str] = []
    loop = ResearchLoop(sleepy, opts, Described([0.06]), say=said.append)
    thread = threading.Thread(target=loop.run)
    thread.start()
    page = sleepy / "runs" / "t" / "report.html"
    live = read_until(page, thread, "<b>#2</b>", "step 5 |")
    thread.join(HANG_GUARD_S)
    assert '<meta http-equiv="refresh"' in live and "Live: the loop is running" in live
    assert "Last result: #1" in live  # the baseline's row
    running = live.split("<h2>Running now</h2>")[1].split("<h2>")[0]
    assert live.index("experiments kept") < live.index("Running now") < live.index("Progress")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; lr | $x^ 50%" in running
    assert "<script" not in live
    assert "stage 1 | step 5 | loss (10-step mean) 0.5000" in running  # from 2.log
    assert "estimated finish" in running and "log 2.log" in running
    assert "<span class=del>-  lr: 0.05</span>\n<span class=add>+  lr: 0.06</span>" in running
    # the report below it: the baseline's result
    assert "<h2>Progress</h2>" in live and "<h2>Findings</h2>" in live

    done = page.read_text()
    assert '<meta http-equiv="refresh"' not in done and "Live:" not in done
    assert "The loop stopped" in done and "2 experiments in tag t (--max-experiments)" in done
    assert "Running now" not in done and "Last result: #2" in done
    assert not any("live page" in line for line in said)
    assert loop.page.render_s  # measured (bench/loop_throughput.py prints it)


class Watching(Scripted):
    """A proposer that may take minutes (a model), reading the live page when it is asked."""

    slow = True

    def __init__(self, lrs, page):
        super().__init__(lrs)
        self.page, self.seen = page, []

    def propose(self, ctx, error=None):
        self.seen.append(self.page.read_text())
        return super().propose(ctx, error)


def test_a_result_is_on_the_page_while_the_next_experiment_is_proposed(sleepy, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "0")
    opts = LoopOptions(tag="t", max_experiments=2, confirm_repeats=1, live_page=True)
    proposer = Watching([0.06], sleepy / "runs" / "t" / "report.html")
    ResearchLoop(sleepy, opts, proposer, say=lambda *a: None).run()
    asked = proposer.seen[0]  # asked for #2 once the baseline was decided
    assert "Last result: #1" in asked and "the next experiment is being proposed" in asked


def test_a_page_that_cannot_be_written_is_said_once_and_the_loop_goes_on(sleepy, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "1")

    def broken(self, stopped):
        raise RuntimeError("no figure today")

    monkeypatch.setattr(LivePage, "render", broken)
    said: list[str] = []
    opts = LoopOptions(tag="t", max_experiments=3, confirm_repeats=1, live_page=True)
    loop = ResearchLoop(sleepy, opts, Scripted([0.06, 0.07]), say=said.append)
    loop.run()
    complaints = [line for line in said if "live page" in line]
    assert len(complaints) == 1 and "no figure today" in complaints[0]
    assert list(loop.ledger.tag_rows()["n"]) == [1, 2, 3]
    assert len(loop.page.render_s) > 3  # it kept trying


def test_a_stop_by_error_is_said_on_the_page(sleepy):
    """A crash of the baseline stops the loop with a UserError: the page says so."""
    opts = LoopOptions(tag="t", max_experiments=3, live_page=True)
    (sleepy / "configs" / "current.yaml").write_text(
        (sleepy / "configs" / "current.yaml").read_text().replace("lr: 0.05", "lr: 5.0")
    )
    git.Repo(sleepy).git.commit("-am", "a baseline that crashes")
    loop = ResearchLoop(sleepy, opts, Scripted([]), say=lambda *a: None)
    with pytest.raises(Exception, match="the baseline crashed"):
        loop.run()
    done = (sleepy / "runs" / "t" / "report.html").read_text()
    assert "The loop stopped" in done and "the baseline crashed (loss is nan at step 3)" in done


def test_the_finish_is_estimated_from_the_pace_so_far():
    line = (
        "stage 2 | step 90 | loss (10-step mean) 0.0004 | lr 1.42e-03 | 281 tok/s | 60 steps left"
    )
    assert _left(line, 0, 1, None, 60.0) == pytest.approx(40.0)  # 90 of 150 steps in 60 s
    assert _left(line, 1, 2, None, 160.0) == pytest.approx(40.0)  # the 2nd of 2 seeds
    seconds = "stage 1 | step 9 | loss (10-step mean) 0.1 | lr 1e-3 | 9 tok/s | 30 s left"
    assert _left(seconds, 0, 1, 120.0, 100.0) == pytest.approx(100 / 3)  # 90 of 120 s done
    assert _left("stage 1: 30% of the budget on bc2gm", 0, 1, None, 5.0) is None


def test_the_progress_of_the_seed_in_training_is_read_after_the_seeds_done():
    first = "stage 2 | step 150 | loss (10-step mean) 0.1 | lr 1e-5 | 9 tok/s | 0 steps left"
    second = "stage 1 | step 30 | loss (10-step mean) 0.5 | lr 1e-3 | 9 tok/s | 120 steps left"
    done = "seed 0: dev_f1 0.800000 | steps 150 | loss 0.6 -> 0.1"
    assert progress(["stage 1: 30% of the budget on bc2gm", first, done]) == ("", 1)
    assert progress([first, done, second]) == (second, 1)
    assert _left("", 1, 1, None, 30.0) == 0.0  # every seed trained: evaluating, never < 0
    assert _left(second, 1, 2, None, 100.0) == pytest.approx(100 * (1 - 0.6) / 0.6)
