"""A real two-node Ray cluster on this machine (`ray start --head` and a second node joining it
on loopback, each with its own ports and one CPU): the loop (fake trainer) and final.py (real
tiny training) on it with --ray-address; a driver killed and restarted against the same
cluster; a worker node lost mid-run (its experiment is one crash row, the night goes on on
the head node)."""

import json
import signal
import subprocess
import sys
import time

import git
import pytest

from nerlab.results import read_results
from tests.helpers import HANG_GUARD_S, ROOT, agent_loop, make_repo, trainers_of, wait_for
from tests.ray_nodes import RayNode, ray_tmpdir, remove

pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[ray]'")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    tmpdir = ray_tmpdir()
    nodes = []
    try:
        # the fake trainer sleeps in the loop's runs (a task gets the node's environment and,
        # on a cluster, only the driver's NER_AR_*/HF_* settings)
        nodes.append(RayNode(tmpdir, num_cpus=1, FAKE_TRAIN_SLEEP="20"))
        nodes.append(RayNode(tmpdir, num_cpus=1, head=nodes[0], FAKE_TRAIN_SLEEP="20"))
    except RuntimeError as e:
        for node in nodes:
            node.stop()
        remove(tmpdir)
        pytest.skip(f"Ray cannot start two nodes on this machine: {e}")
    yield nodes
    for node in reversed(nodes):
        node.stop()
    remove(tmpdir)


def _in_flight(repo, proc, numbers) -> None:
    for n in numbers:
        wait_for(repo / "runs" / "t" / f"{n}.log", proc)
    time.sleep(3.0)  # the tasks have reached their nodes


def test_the_loop_on_two_nodes_a_killed_driver_and_a_lost_node(cluster, tmp_path, synthetic_home):
    head, worker = cluster
    repo = make_repo(tmp_path / "proj", fake_train=True)
    env = {**head.env(), "NER_AR_HOME": str(synthetic_home)}
    args = ("--max-experiments", "6", "--workers", "2", "--ray-address", head.address)

    # the driver killed with experiments 2 and 3 in flight, one on each node
    proc = agent_loop(repo, *args, env=env)
    _in_flight(repo, proc, (2, 3))
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # restarted against the same cluster; experiments 4 and 5 in flight, the second node lost
    proc = agent_loop(repo, *args, env=env)
    _in_flight(repo, proc, (4, 5))
    worker.stop(force=True)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0 and "Traceback" not in out, out

    rows = read_results(repo / "results.tsv")
    assert len(rows) == 6, out
    assert rows["reason"].iloc[1:3].tolist() == ["interrupted", "interrupted"], out  # restart
    lost = rows.iloc[3:5]
    assert (lost["status"] == "crash").sum() == 1, out  # the lost node's experiment
    assert lost["reason"].str.startswith("task failed").sum() == 1, out
    assert rows["status"].iloc[5] != "crash", out  # the night went on on the head node
    assert not git.Repo(repo).is_dirty()
    assert not trainers_of(repo)


def test_final_on_the_cluster(cluster, tmp_path, synthetic_home):
    head = cluster[0]  # the second node is lost by the test above, or still up: either works
    repo = make_repo(tmp_path / "proj", fake_train=False)
    env = {**head.env(), "NER_AR_HOME": str(synthetic_home)}
    proc = agent_loop(repo, "--max-experiments", "2", "--ray-address", head.address, env=env)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, out
    r = subprocess.run(
        [sys.executable, str(ROOT / "final.py"), "--tag", "t", "--seeds", "1", "--workers", "2",
         "--ray-address", head.address],
        cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((repo / "runs" / "t" / "final.json").read_text())
    seed = report["baseline"]["seeds"][0]
    assert seed["status"] == "ok" and seed["environment"]["torch_version"], seed
    # each node saved the model in its own temp dir and sent the files back: no shared disk
    final = repo / "runs" / "t" / "final" / report["baseline"]["commit"]
    assert (final / "seed0" / "nerlab.json").is_file()  # the save is whole
    assert f"--save-model {final / 'seed0'}" not in (final / "seed0.log").read_text()
    assert not trainers_of(repo)
