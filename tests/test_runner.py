"""nerlab.runner: what a run leaves behind (its temporary directory, its log)."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from nerlab.runner import CONFIG_ECHO_BYTES, RunSpec, echo, run_for_ray, run_train
from tests.helpers import ROOT

FAKE = str(ROOT / "tests" / "fake_train.py")
CONFIG = {"optim": {"lr": 0.05}}


@pytest.fixture
def tmp_root(tmp_path, monkeypatch) -> Path:
    """tempfile's directory for this test alone."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_dirs_of_killed_runs_are_removed_by_the_next_run(tmp_root, tmp_path):
    killed = tmp_root / f"ner-run-p{_dead_pid()}-abc"  # a loop SIGKILLed mid-run left it
    killed.mkdir()
    (killed / "config.yaml").write_text("optim: {lr: 0.05}\n")
    lost_task = tmp_root / f"ner-task-p{_dead_pid()}-abc"  # a Ray worker killed with its node
    lost_task.mkdir()
    live = tmp_root / "ner-run-p1-abc"  # pid 1 runs: another loop's run in flight
    live.mkdir()
    other = tmp_root / "ner-run-unrelated"
    other.mkdir()
    outcome = run_train(RunSpec(yaml.safe_dump(CONFIG), train_py=FAKE), tmp_path / "run.log")
    assert outcome.ok, (tmp_path / "run.log").read_text()
    assert sorted(p.name for p in tmp_root.iterdir()) == ["ner-run-p1-abc", "ner-run-unrelated"]


def test_a_huge_config_is_not_copied_whole_into_the_log(tmp_root, tmp_path):
    padding = "".join(f"# padding line {i:06d} {'x' * 60}\n" for i in range(3000))  # ~230 KB
    text = padding + yaml.safe_dump(CONFIG)
    log = tmp_path / "run.log"
    outcome = run_train(RunSpec(text, train_py=FAKE), log)
    assert outcome.ok, log.read_text()[-2000:]
    logged = log.read_text()
    assert len(logged.encode()) < CONFIG_ECHO_BYTES + 5000
    assert "# padding line 000000" in logged and "# padding line 002999" not in logged
    assert "status:" in logged  # the run's own output follows in full


def test_echo_cuts_at_a_line_end_and_says_how_much_is_left_out():
    text = "a: 1\n" + "b" * (10 * 2**20) + "\nc: 3\n"  # a 10 MB config, one line of it huge
    shown = echo(text)
    assert shown.splitlines()[0] == "a: 1"
    assert shown.endswith(f"... ({len(text.rstrip()) - len('a: 1')} more bytes)")
    assert echo("a: 1\n") == "a: 1"


def test_a_ray_task_saves_its_model_in_its_own_temp_dir_and_returns_the_files(tmp_root, tmp_path):
    """A cluster's node need not see the driver's filesystem: the task never writes to the
    driver's path, and the files travel back with the outcome (nerlab.pool writes them)."""
    driver_path = tmp_path / "runs" / "t" / "final" / "abc" / "seed0"
    spec = RunSpec(yaml.safe_dump(CONFIG), train_py=FAKE, save_model=str(driver_path))
    outcome, log, files = run_for_ray(spec, {})
    assert outcome.ok, log
    assert sorted(files) == ["tokenizer/vocab.txt", "weights.bin"]
    assert files["tokenizer/vocab.txt"] == b"[PAD]\nbrca1\n"
    assert not (tmp_path / "runs").exists()
    assert f"--save-model {driver_path}" not in log
    assert list(tmp_root.iterdir()) == []  # the task's temp dir, model included, is gone
