"""The one way to run train.py: on a config text, with a timeout, in a subprocess here or inside
a Ray task, its output going to a log. The outcome is read only from the summary block (the
output contract of nerlab.summary). The loop, the transfer-matrix sweep and the final evaluation
all use this.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from nerlab.config import config_hash
from nerlab.files import read_tree
from nerlab.summary import parse_summary

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PY = ROOT / "train.py"
CONFIG_ECHO_BYTES = 20_000  # of a config copied into a run's log


@dataclass(frozen=True)
class RunSpec:
    """What to run: a whole config file's text, optional `--set` overrides, a hard timeout."""

    config_text: str
    sets: tuple[str, ...] = ()
    timeout: float | None = None  # seconds; None waits forever
    train_py: str = str(TRAIN_PY)  # tests swap in a fake trainer with the same contract
    eval_split: str = "dev"
    save_model: str | None = None  # train.py --save-model: where the first seed's model goes


@dataclass
class RunOutcome:
    status: str  # ok | crash
    f1s: list[float] = field(default_factory=list)  # one per seed, from `f1_seeds`
    summary: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # why it crashed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.f1s)


def outcome_of(log_text: str, returncode: int | None, timeout: float | None = None) -> RunOutcome:
    """A run's outcome from its output: the summary block and the exit code, nothing else."""
    if returncode is None:
        return RunOutcome("crash", reason=f"timeout: killed after {timeout or 0:.0f} s")
    summary = parse_summary(log_text)
    if summary is None:
        tail = " | ".join(log_text.strip().splitlines()[-3:])
        return RunOutcome("crash", reason=f"no summary (exit code {returncode}): {tail[-300:]}")
    if summary["status"] != "ok" or returncode != 0:
        reason = summary.get("reason") or f"exit code {returncode}"
        return RunOutcome("crash", summary=summary, reason=reason)
    try:
        f1s = [float(x) for x in summary.get("f1_seeds", "").split(",")]
    except ValueError:
        return RunOutcome("crash", summary=summary, reason="summary: f1_seeds is not numbers")
    return RunOutcome("ok", f1s, summary)


# -----------------------------------------------------------------------------
# running: a subprocess whose process group dies with it


_live: set[subprocess.Popen] = set()  # every train.py running now, so one call can stop all
_live_lock = threading.Lock()


def run_train(spec: RunSpec, log_path: Path, env: dict | None = None) -> RunOutcome:
    """Run train.py on `spec`, its output (stdout and stderr) streamed into `log_path`.
    A timeout kills the whole process group; so does KeyboardInterrupt (then re-raised)."""
    log_path = Path(log_path)
    with _temp_dir("ner-run-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(spec.config_text)
        cmd = [sys.executable, spec.train_py, "--config", str(config)]
        cmd += [a for s in spec.sets for a in ("--set", s)]
        if spec.eval_split != "dev":
            cmd += ["--eval-split", spec.eval_split]
        if spec.save_model:
            cmd += ["--save-model", spec.save_model]
        with open(log_path, "w", encoding="utf-8") as out:
            out.write(f"$ {' '.join(cmd)}\n# config sha256: {config_hash(spec.config_text)}\n"
                      f"# config\n{echo(spec.config_text)}\n# output\n")  # fmt: skip
            out.flush()
            code = _wait(cmd, out, spec.timeout, env)
    return outcome_of(log_path.read_text(encoding="utf-8", errors="replace"), code, spec.timeout)


def echo(config_text: str) -> str:
    """The config as a run's log shows it: whole up to CONFIG_ECHO_BYTES, else cut at a line
    end with what was left out (a 10 MB config is not copied into every log)."""
    text = config_text.rstrip()
    data = text.encode("utf-8")
    if len(data) <= CONFIG_ECHO_BYTES:
        return text
    head = data[:CONFIG_ECHO_BYTES].decode("utf-8", errors="ignore").rsplit("\n", 1)[0]
    return f"{head}\n... ({len(data) - len(head.encode('utf-8'))} more bytes)"


def _temp_dir(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory named after this process (`ner-run-p<pid>-...`), first removing
    those of processes that are gone: a killed loop or Ray worker cannot clean up its own."""
    for path in Path(tempfile.gettempdir()).glob("ner-*-p*-*"):
        pid = path.name.split("-")[2][1:]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}p{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _wait(cmd: list[str], out, timeout: float | None, env: dict | None) -> int | None:
    """The exit code, or None after a timeout (the process group killed)."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
        start_new_session=True, preexec_fn=_die_with_parent,
    )  # fmt: skip
    with _live_lock:
        _live.add(proc)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
        return None
    except BaseException:  # Ctrl-C, or the caller giving up: never leave it running
        kill(proc)
        raise
    finally:
        with _live_lock:
            _live.discard(proc)


def kill_all() -> None:
    """Stop every train.py started by this process (Ctrl-C, shutdown)."""
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        kill(proc)


def kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _die_with_parent() -> None:
    """Linux: train.py gets SIGKILL when the thread that started it dies (the loop killed),
    so no orphan holds the GPU; the loop's threads live as long as their run."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_for_ray(spec: RunSpec, env: dict[str, str]) -> tuple[RunOutcome, str, dict[str, bytes]]:
    """The body of a Ray task: run here (on whichever node) and return the outcome, the log
    text and the saved model's files, which the driver writes: a node need not share the
    driver's filesystem, so the model is saved in the task's own temp dir. `env` is the
    driver's environment to carry over: a Ray worker's own does not hold the user's settings
    (NER_AR_HOME, HF_HOME, ...)."""
    merged = {**os.environ, **env}  # the worker's CUDA_VISIBLE_DEVICES stays Ray's choice
    with _temp_dir("ner-task-") as tmp:
        log, model = Path(tmp) / "run.log", Path(tmp) / "model"
        if spec.save_model:
            spec = replace(spec, save_model=str(model))
        outcome = run_train(spec, log, merged)
        files = read_tree(model) if outcome.ok and model.is_dir() else {}
        return outcome, log.read_text(encoding="utf-8", errors="replace"), files
