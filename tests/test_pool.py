"""nerlab.pool on Ray: a Ray instance already on the machine is never joined unless the user
names it (--ray-address or RAY_ADDRESS); the loop, final.py and the sweep share make_pool."""

import tempfile
from pathlib import Path

import pytest
import yaml

from nerlab.errors import UserError
from nerlab.results import read_results
from nerlab.runner import RunSpec
from tests.helpers import HANG_GUARD_S, ROOT, agent_loop, make_repo
from tests.ray_nodes import RayNode, free_port, ray_tmpdir, remove

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")

FAKE = str(ROOT / "tests" / "fake_train.py")


@pytest.fixture(scope="module")
def someones_ray():
    """A `ray start --head` left running on the machine (1 CPU), found the way Ray finds one:
    its address recorded in the Ray temp dir that every process here uses (RAY_TMPDIR)."""
    tmpdir = ray_tmpdir()
    try:
        node = RayNode(tmpdir, num_cpus=1)
    except RuntimeError as e:
        remove(tmpdir)
        pytest.skip(f"Ray cannot start a node here: {e}")
    yield node
    node.stop()
    remove(tmpdir)


@pytest.fixture
def ray_env(someones_ray, monkeypatch):
    """This process sees that instance. (Not RAY_AUTH_MODE: Ray reads it once, at import.)"""
    monkeypatch.setenv("RAY_TMPDIR", str(someones_ray.tmpdir))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return someones_ray


def _gcs_of_pool(workers: int, address: str | None = None) -> int:
    """Which Ray instance a pool runs on (its GCS port: Ray names this machine by its IP, not
    127.0.0.1), after running one task there."""
    from nerlab.pool import make_pool

    pool = make_pool(workers, address, say=lambda *a: None)
    try:
        gcs = int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
        pool.submit("k", RunSpec(yaml.safe_dump({"optim": {"lr": 0.05}}), train_py=FAKE), _log())
        key, outcome = pool.wait()
        assert key == "k" and outcome.ok, outcome.reason
        return gcs
    finally:
        pool.close()


def _log() -> Path:
    return Path(tempfile.mkdtemp()) / "run.log"


@pytest.mark.slow
def test_a_ray_instance_on_the_machine_is_joined_only_when_named(ray_env, monkeypatch):
    assert _gcs_of_pool(2) != ray_env.port  # a private instance (final.py, sweep: the same)
    assert _gcs_of_pool(2, ray_env.address) == ray_env.port  # --ray-address
    monkeypatch.setenv("RAY_ADDRESS", ray_env.address)
    assert _gcs_of_pool(2) == ray_env.port  # RAY_ADDRESS, set by the user


@pytest.mark.slow
def test_the_loop_with_workers_starts_its_own_ray_beside_an_existing_one(
    ray_env, tmp_path, synthetic_home
):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    env = {**ray_env.env(), "NER_AR_HOME": str(synthetic_home)}
    proc = agent_loop(repo, "--max-experiments", "3", "--workers", "2", env=env)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert len(read_results(repo / "results.tsv")) == 3
    # the loop started its own instance (in the same Ray temp dir) and never joined that one
    assert ray_env.session != (ray_env.tmpdir / "ray" / "session_latest").resolve()
    assert not list((ray_env.session / "logs").glob(f"*driver*_{proc.pid}.log"))


@pytest.mark.slow
def test_a_model_saved_in_a_ray_task_is_written_by_the_driver(tmp_path, monkeypatch):
    """The files come back with the task's result and replace what the directory held."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from nerlab.pool import make_pool

    out = tmp_path / "seed0"
    out.mkdir()
    (out / "stale.bin").write_text("from an older run")
    spec = RunSpec(yaml.safe_dump({"optim": {"lr": 0.05}}), train_py=FAKE, save_model=str(out))
    pool = make_pool(2, say=lambda *a: None)
    try:
        pool.submit("k", spec, tmp_path / "run.log")
        key, outcome = pool.wait()
    finally:
        pool.close()
    assert outcome.ok, (tmp_path / "run.log").read_text()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "tokenizer/vocab.txt",
        "weights.bin",
    ]
    assert (out / "weights.bin").read_bytes() == b"\x00\x01" * 100


def test_a_named_cluster_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from nerlab.pool import make_pool

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(UserError, match=f"no Ray cluster answers at {address}"):
        make_pool(2, address)


@pytest.mark.parametrize("workers", [1, 2])  # threads, Ray
def test_a_wait_with_a_timeout_comes_back_empty_while_a_run_goes_on(workers, monkeypatch):
    """The loop rewrites its live page between waits: a wait that times out is None, and the
    run is still there for the next wait."""
    from nerlab.pool import make_pool

    monkeypatch.setenv("FAKE_TRAIN_SLEEP", "3")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    text = "# agent_loop.py experiment 2: sleeps\n" + yaml.safe_dump({"optim": {"lr": 0.05}})
    pool = make_pool(workers, say=lambda *a: None)
    try:
        pool.submit("k", RunSpec(text, train_py=FAKE), _log())
        assert pool.wait(0.1) is None and pool.in_flight() == 1
        done = pool.wait(HANG_GUARD_S)
        assert done is not None and done[0] == "k" and done[1].ok, done
    finally:
        pool.close()


@pytest.mark.slow
def test_no_secret_reaches_a_ray_task_or_its_worker(tmp_path, monkeypatch):
    """The driver's key stays out of the local Ray instance: train.py in a task and the worker
    process that runs it (a child of Ray's raylet, not of the driver) hold none."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-never-in-a-task")
    from nerlab.pool import make_pool

    show = tmp_path / "show_env.py"  # a train.py that prints what it and its parent were given
    show.write_text(
        "import os\n"
        "parent = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode(errors='replace')\n"
        "print('train.py:', 'OPENAI_API_KEY' in os.environ)\n"
        "print('worker:', 'sk-test-never-in-a-task' in parent)\n"
    )
    log = tmp_path / "run.log"
    pool = make_pool(2, say=lambda *a: None)
    try:
        pool.submit("k", RunSpec("{}", train_py=str(show)), log)
        pool.wait(HANG_GUARD_S)
    finally:
        pool.close()
    text = log.read_text()
    assert "train.py: False" in text and "worker: False" in text, text
