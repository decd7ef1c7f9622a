"""SIGINT (Ctrl-C), SIGTERM (`kill`) and SIGHUP (a dropped ssh session) stop agent_loop.py the
same way with one run in flight or several on Ray: a `crash` row naming the signal for each
run in flight, one line saying so, exit code 128 + the signal, nothing left running."""

import os
import signal
import subprocess
import sys
import time

import git
import pytest

from nerlab import signals
from nerlab.results import read_results
from tests.helpers import HANG_GUARD_S, agent_loop, make_repo, trainers_of, wait_for

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


def _stop_mid_run(repo, synthetic_home, signum: int, workers: int):
    """The loop with `workers` experiments in flight (the fake trainer sleeping), then the
    signal as it comes in life: Ctrl-C and a hang-up reach the whole process group (the
    terminal's), `kill` the loop alone. Returns the exit code and the output."""
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "120", "PYTHONUNBUFFERED": "1"}
    args = ("--max-experiments", "5", "--workers", str(workers))
    proc = agent_loop(repo, *args, env=env, start_new_session=True)
    for n in range(2, 2 + workers):  # the baseline is done; experiments 2.. train
        wait_for(repo / "runs" / "t" / f"{n}.log", proc)
    time.sleep(2.0)
    if signum == signal.SIGTERM:
        proc.send_signal(signum)
    else:
        os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    return proc.returncode, out


def _check(repo, code: int, out: str, signum: int, workers: int) -> None:
    name = signal.Signals(signum).name
    assert code == 128 + signum, out
    assert "Traceback" not in out and "*** SIGTERM received" not in out, out
    running = ", ".join(f"[{n}]" for n in range(2, 2 + workers))
    said = [line for line in out.splitlines() if "interrupted" in line]
    assert said == [f"interrupted ({name}): {running} recorded as crash"], out
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep"] + ["crash"] * workers, out
    assert rows["reason"].iloc[1:].tolist() == [f"interrupted ({name})"] * workers
    assert not git.Repo(repo).is_dirty()
    assert not trainers_of(repo)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_with_one_run_in_flight(tmp_path, synthetic_home, signum):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    code, out = _stop_mid_run(repo, synthetic_home, signum, workers=1)
    _check(repo, code, out, signum, workers=1)


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_with_runs_in_flight_on_ray(tmp_path, synthetic_home, signum):
    pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
    repo = make_repo(tmp_path / "proj", fake_train=True)
    code, out = _stop_mid_run(repo, synthetic_home, signum, workers=2)
    _check(repo, code, out, signum, workers=2)


def test_a_signal_already_ignored_stays_ignored():
    # `nohup python agent_loop.py ...` ignores SIGHUP: the loop must not undo that
    code = (
        "import signal, os\n"
        "from nerlab import signals\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "signals.install()\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "True", r.stderr


def test_a_plain_ctrl_c_is_sigint():
    assert signals.exit_code(KeyboardInterrupt()) == 130
    assert signals.name_of(KeyboardInterrupt()) == "SIGINT"
