"""runs/<tag>/report.html while the loop runs: the report (nerlab.report) under a banner that
says whether the loop runs or why it stopped, and a Running now section (each experiment in
flight: its config diff against the best, its run log's latest progress line, elapsed time, an
estimated finish). The loop rewrites it after every decision and every TICK_S while runs are in
flight; the browser reloads it while the loop runs (a meta refresh: no server, a copied file or
`python -m http.server` over an ssh tunnel will do). Once stopped, the page stops reloading.

The page must never stop or slow the loop: a failure to render is said once and the loop goes
on, and the report's part (figures, findings, git reads) is rendered again only when results.tsv
changed; between results a rewrite reads only the run logs' last lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from nerlab import report
from nerlab.config import dump_config, parse_config_text
from nerlab.errors import UserError
from nerlab.experiment import Experiment, RunLogs
from nerlab.files import write_atomic
from nerlab.gitops import RunBranch
from nerlab.ledger import Best, Ledger
from nerlab.proposals import config_diff
from nerlab.text import html, visible

TICK_S = 10.0  # the page is rewritten at least this often while runs are in flight (a few ms)
REFRESH_S = 15  # the browser reloads it this often while the loop runs
# train.py's plain progress line in a log (nerlab's StatusLine), e.g.
# `stage 2 | step 90 | loss (10-step mean) 0.0004 | lr 1.42e-03 | 281 tok/s | 60 steps left`
PROGRESS = re.compile(r"^stage \d+ \| step (\d+) \|.*\| ([\d.,]+) (steps|s) left\s*$")
SEED_DONE = re.compile(r"^seed \d+: \w+_f1 ")
TAIL_BYTES = 16_384  # of a run log read for its latest lines
SLOT = "<!-- running now -->"  # where the cached report takes the Running now section


class Options(Protocol):
    tag: str
    results: Path
    confirm_repeats: int


class Driver(Protocol):
    """What the page reads of the loop (nerlab.loop.ResearchLoop): its state, never changed."""

    root: Path
    config_path: Path
    opts: Options
    git: RunBranch
    ledger: Ledger | None
    best: Best | None
    logs: RunLogs
    in_flight: dict[int, Experiment]
    say: Callable[[str], None]


class LivePage:
    def __init__(self, loop: Driver):
        self.loop = loop
        self.path = loop.logs.dir / "report.html"
        self.render_s: list[float] = []  # each rewrite's cost (bench/loop_throughput.py)
        self._seen: dict[tuple[int, int], float] = {}  # (n, seeds measured) -> first seen
        self._report: tuple[tuple, str, tuple | None] | None = None  # (results' stat, ...)
        self._best: tuple[str, str] | None = None  # (commit, config text)
        self._said = False

    def update(self, stopped: str | None = None) -> None:
        """Rewrite the page; `stopped`: why the loop stopped (the page stops reloading)."""
        t = time.perf_counter()
        try:
            write_atomic(self.path, self.render(stopped))
        except Exception as e:  # noqa: BLE001 -- whatever the page hits, the loop goes on
            if not self._said:
                self.loop.say(f"live page {self.path} not written ({type(e).__name__}: "
                              f"{visible(e)}); the loop goes on")  # fmt: skip
                self._said = True
        self.render_s.append(time.perf_counter() - t)

    def render(self, stopped: str | None) -> str:
        """While the loop runs, Running now sits below the headline; once stopped the page is
        the report under a line saying why."""
        running = "" if stopped else f"<h2>Running now</h2>\n{self._running()}"
        body, last = self._report_part()
        head = "" if stopped else f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        banner = self._banner(stopped, last)
        if body is None:  # no result yet
            return report.page(self.loop.opts.tag, f"{banner}\n{running}", head)
        return report.page(self.loop.opts.tag, banner + body.replace(SLOT, running, 1), head)

    # -- the report: rendered again only when results.tsv changed ------------------------

    def _report_part(self) -> tuple[str | None, tuple | None]:
        loop = self.loop
        results = loop.root / loop.opts.results
        stat = results.stat() if results.exists() else None
        key = (stat.st_mtime_ns, stat.st_size) if stat else ()
        if self._report is None or self._report[0] != key:
            self._report = (key, *self._render_report(results))
        return self._report[1], self._report[2]

    def _render_report(self, results: Path) -> tuple[str | None, tuple | None]:
        loop = self.loop
        try:
            body = report.render_body(loop.root, loop.opts.tag, results, loop.config_path,
                                      loop.root / "matrix.tsv", SLOT)  # fmt: skip
        except UserError:  # the tag has no row yet
            return None, None
        rows = loop.ledger.tag_rows() if loop.ledger else None
        if rows is None or rows.empty:
            return body, None
        return body, (rows["n"].iloc[-1], rows["timestamp"].iloc[-1])

    # -- the banner and Running now ---------------------------------------------------

    def _banner(self, stopped: str | None, last: tuple | None) -> str:
        now = dt.datetime.now()
        since = ""
        if last:
            n, stamp = last
            ago = _ago(now, stamp)
            since = f" Last result: #{html(n)}{f', {ago} ago' if ago else ''}."
        if stopped:
            return (f"<p class='live stopped'><b>The loop stopped</b> at {now:%H:%M:%S}: "
                    f"{html(stopped)}. This page no longer reloads.{since}</p>")  # fmt: skip
        return (f"<p class=live><b>Live: the loop is running</b> (page written {now:%H:%M:%S}; "
                f"rewritten at every result and every {TICK_S:.0f} s, reloads itself every "
                f"{REFRESH_S} s).{since}</p>")  # fmt: skip

    def _running(self) -> str:
        exps = sorted(self.loop.in_flight.values(), key=lambda e: e.n)
        if not exps:
            return "<p>Nothing at this moment (the next experiment is being proposed).</p>"
        return "\n".join(self._one(exp) for exp in exps)

    def _one(self, exp: Experiment) -> str:
        loop = self.loop
        started = self._seen.setdefault((exp.n, len(exp.f1s)), time.time())
        confirming = bool(exp.f1s)
        repeats = loop.opts.confirm_repeats - len(exp.f1s) if confirming else exp.cfg.repeats
        log = loop.logs.path(exp.n, ".confirm" if confirming else "")
        line, seeds = progress(_tail(log))
        elapsed = time.time() - started
        left = _left(line, seeds, repeats, exp.cfg.budget.seconds, elapsed)
        if seeds >= repeats:
            line = f"{line}\n(trained: evaluating, then the summary)".lstrip()
        what = "confirming with more seeds" if confirming else exp.role
        finish = ("" if left is None else f" · estimated finish "
                  f"{dt.datetime.now() + dt.timedelta(seconds=left):%H:%M} (in about "
                  f"{report.duration(left)})")  # fmt: skip
        status = html(line) if line else "no progress line yet (starting, or a Ray task)"
        return (
            f"<p><b>#{exp.n}</b> <code>{html(exp.commit)}</code> ({html(what)}, {repeats} "
            f"seed(s)): {html(exp.description)}<br><span class=note>running for "
            f"{report.duration(elapsed)}{finish} · log {html(log.name)}</span></p>"
            f"<pre>{status}</pre>{self._diff(exp)}"
        )

    def _diff(self, exp: Experiment) -> str:
        loop = self.loop
        if loop.best is None:
            return "<p class=note>The baseline: the config as committed.</p>"
        diff = config_diff(self._best_text(), dump_config(exp.cfg)) or "(same config)"
        numbers = {c: n for n, c in loop.git.experiments().items()}
        best = numbers.get(loop.best.commit, "?")
        return (f"<p class=note>config against the best (#{best}):</p>"
                f"{report.diff_html(diff, whole=False)}")  # fmt: skip

    def _best_text(self) -> str:
        """The best's config, normalised like the experiment's (read from git once a best)."""
        commit = self.loop.best.commit
        if self._best is None or self._best[0] != commit:
            text = self.loop.git.show(commit, self.loop.config_path)
            with contextlib.suppress(UserError):  # else diffed as committed
                text = dump_config(parse_config_text(text))
            self._best = (commit, text)
        return self._best[1]


def progress(lines: list[str]) -> tuple[str, int]:
    """The latest progress line of the seed in training ("" before its first) and the number
    of seeds done (a `seed N: dev_f1 ...` line each)."""
    done = [i for i, x in enumerate(lines) if SEED_DONE.match(x)]
    current = lines[done[-1] + 1 :] if done else lines
    return next((x for x in reversed(current) if PROGRESS.match(x)), ""), len(done)


def _tail(log: Path) -> list[str]:
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _left(line: str, seeds: int, repeats: int, budget_s: float | None,
          elapsed: float) -> float | None:  # fmt: skip
    """Seconds until the run ends, from its progress so far (start-up and evaluation included
    in the pace); None before the first progress line."""
    if seeds >= repeats:
        return 0.0  # evaluating
    m = PROGRESS.match(line)
    if not m:
        return None
    step, left = int(m[1]), float(m[2].replace(",", ""))
    if m[3] == "steps":
        seed_done = step / (step + left) if step + left else 1.0
    elif budget_s:
        seed_done = max(0.0, 1 - left / budget_s)
    else:
        return None
    done = (seeds + seed_done) / max(repeats, 1)
    return elapsed * (1 - done) / done if done > 0 else None


def _ago(now: dt.datetime, stamp: str) -> str:
    try:
        seconds = (now - dt.datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return ""
    return report.duration(seconds) if seconds >= 0 else ""
