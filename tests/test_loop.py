"""The research loop: git and results.tsv stay consistent through crashes, hangs and kills.

Most tests run the loop against tests/fake_train.py (same CLI and summary block as train.py,
no model), so they take seconds; the first runs the real scripts end to end."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
import yaml

from nerlab.errors import UserError
from nerlab.gitops import PREFIX, parse_experiment
from nerlab.ledger import Best
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import read_results
from nerlab.signals import Interrupted
from tests.helpers import (
    BASE,
    HANG_GUARD_S,
    ROOT,
    Scripted,
    agent_loop,
    branch_state,
    make_repo,
    run_loop,
    trainers_of,
    wait_for,
)


@pytest.fixture
def repo(tmp_path, synthetic_home, monkeypatch) -> Path:
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    return make_repo(tmp_path / "proj", fake_train=True)


def test_decisions_confirmation_and_git_history(repo):
    # baseline 0.5; 0.07 -> 0.70 keep (clear win); 0.06 discard; 0.0705 -> +0.005, within
    # the margin: confirmed over 3 seeds (mean 0.706 > 0.70) and kept
    loop, proposer = run_loop(repo, [0.07, 0.06, 0.0705], max_experiments=4)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep", "discard", "keep"]
    assert rows["repeats"].tolist() == [1, 1, 1, 3]
    assert rows["dev_f1"].iloc[3] == pytest.approx(0.706, abs=1e-6)
    assert "confirm" not in rows["status"].tolist()
    assert (repo / "runs" / "t" / "4.confirm.log").exists()
    r, experiments = branch_state(repo)
    assert experiments == ["lr 0.0705", "lr 0.07", "baseline"]  # newest first; kept ones only
    assert not r.is_dirty() and r.head.commit.hexsha[:7] == rows["commit"].iloc[3]
    assert loop.ledger.best() == Best(rows["commit"].iloc[3], pytest.approx(0.706), "lr 0.0705")
    # a restart of the same tag resumes from that best: no new baseline; the limit is the tag's
    run_loop(repo, [0.01], max_experiments=5)
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 5 and rows["status"].iloc[4] == "discard"
    assert [f1 for _, f1 in proposer.observed] == pytest.approx([0.7, 0.6, 0.706])


def test_confirmation_that_fails_is_discarded(repo):
    # 0.0505 -> 0.505: +0.005 over 0.5; two more seeds give 0.506, 0.507: mean 0.506 > 0.5 keep;
    # 0.0508 -> 0.508 over best 0.506 by 0.002; seeds 0..2 mean 0.509 > 0.506 -> keep too.
    # So make it lose: best is 0.506 and 0.0503 -> 0.503 is below: discard without confirming.
    run_loop(repo, [0.0505, 0.0503], max_experiments=3)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep", "discard"]
    assert rows["repeats"].tolist() == [1, 3, 1]


def test_crash_and_hang_are_rows_and_the_loop_goes_on(repo):
    run_loop(repo, [5.0, 0.0123, 0.08], max_experiments=4, timeout=30)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "crash", "crash", "keep"]
    assert "loss is nan" in rows["reason"].iloc[1] and rows["description"].iloc[1] == "lr 5.0"
    assert "timeout: killed after 30 s" in rows["reason"].iloc[2]
    assert rows["dev_f1"].iloc[1] == 0
    _, experiments = branch_state(repo)
    assert experiments == ["lr 0.08", "baseline"]


def test_invalid_proposals_go_back_to_the_proposer(repo):
    bad = yaml.safe_dump({**BASE, "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 0.5}]})
    loop, proposer = run_loop(repo, ["[not, a, mapping", bad, 0.08], max_experiments=2)
    assert proposer.errors[0] is None
    assert "not valid YAML" in proposer.errors[1]
    assert "stage fractions must sum to 1, got 0.5" in proposer.errors[2]
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep"]


def test_three_invalid_proposals_are_a_failed_proposal_row(repo):
    run_loop(repo, ["{target: nope}"] * 3 + [0.08], max_experiments=3)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "crash", "keep"]
    assert rows["commit"].iloc[1] == "-" and "no valid proposal" in rows["reason"].iloc[1]


def test_refuses_a_dirty_tree(repo):
    (repo / "configs" / "current.yaml").write_text("edited: true\n")
    with pytest.raises(Exception, match="uncommitted changes: configs/current.yaml"):
        run_loop(repo, [], max_experiments=1)


def test_sigkill_mid_experiment_then_resume(repo, synthetic_home):
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "60"}
    proc = agent_loop(repo, "--max-experiments", "3", env=env)
    log2 = repo / "runs" / "t" / "2.log"
    deadline = time.time() + HANG_GUARD_S
    while not log2.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert log2.exists(), proc.communicate()[0]
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = git.Repo(repo)
    killed = r.commit("refs/autoresearch/t/2").hexsha[:7]  # the killed experiment
    assert r.head.commit.message.startswith(PREFIX + "[1] baseline")  # never checked out
    time.sleep(0.5)
    assert not trainers_of(repo)  # the training child died with the loop
    with open(repo / "results.tsv", "a") as f:
        f.write("2026-01-01T00:00:00\tpartial")  # and results.tsv got a torn last line
    env.pop("FAKE_TRAIN_SLEEP")
    out, _ = agent_loop(repo, "--max-experiments", "3", env=env).communicate(timeout=HANG_GUARD_S)
    assert "has no row: interrupted" in out, out
    rows = read_results(repo / "results.tsv")
    assert rows["commit"].tolist()[:2] == [rows["commit"].iloc[0], killed]
    assert rows["status"].tolist()[:2] == ["keep", "crash"]
    assert rows["reason"].iloc[1] == "interrupted"
    assert len(rows) == 3 and (repo / "results.tsv.partial").exists()
    r, experiments = branch_state(repo)
    assert not r.is_dirty()
    kept = set(rows.loc[rows["status"] == "keep", "commit"])
    for c in r.iter_commits("autoresearch/t"):
        if c.message.startswith(PREFIX):
            assert c.hexsha[:7] in kept


def test_optuna_loop_end_to_end_with_the_real_trainer(tmp_path, synthetic_home):
    repo = make_repo(tmp_path / "real", fake_train=False)
    env = {"NER_AR_HOME": str(synthetic_home)}
    proc = agent_loop(repo, "--max-experiments", "4", "--confirm-repeats", "1", env=env)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, out
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 4 and rows["role"].iloc[0] == "baseline"
    assert set(rows["status"]) <= {"keep", "discard", "crash"}
    # the baseline learned; a proposal may be hopeless in 40 steps (F1 0) without crashing
    assert rows["dev_f1"].iloc[0] > 0
    assert rows["dev_f1"][rows["status"] != "crash"].between(0, 1).all()
    assert sorted(p.name for p in (repo / "runs" / "t").glob("*.log")) == [
        "1.log", "2.log", "3.log", "4.log"
    ]  # fmt: skip
    assert (repo / "runs" / "t" / "optuna.db").exists()
    r, experiments = branch_state(repo)
    assert not r.is_dirty()
    kept = rows[rows["status"] == "keep"]
    assert len(experiments) == len(kept)
    assert r.head.commit.hexsha[:7] == rows.loc[rows["status"] == "keep", "commit"].iloc[-1]


def test_anthropic_agent_without_a_key_is_a_clear_error(repo):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    r = subprocess.run(
        [sys.executable, str(ROOT / "agent_loop.py"), "--tag", "t", "--agent", "anthropic"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: --agent anthropic needs ANTHROPIC_API_KEY")


def test_fixed_fields_go_back_to_the_proposer(repo):
    moved = yaml.safe_dump({**BASE, "data": "prepared"})
    longer = yaml.safe_dump({**BASE, "budget": {"steps": 400}})
    _, proposer = run_loop(repo, [moved, longer, 0.08], max_experiments=2)
    assert "data is fixed for this run at 'synthetic'" in proposer.errors[1]
    assert "budget is fixed for this run at {'steps': 40}" in proposer.errors[2]


def test_a_proposal_changing_only_the_seed_goes_back(repo):
    """Seed 24 scores higher with the fake trainer: another seed's luck, never a keep."""
    reseeded = yaml.safe_dump({**BASE, "seed": 24})
    _, proposer = run_loop(repo, [reseeded, 0.08], max_experiments=2)
    assert proposer.errors[1].startswith("seed is fixed for this run at 0")
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 2 and rows["description"].iloc[1].startswith("lr 0.08")


def test_a_new_tag_runs_its_own_baseline(repo):
    run_loop(repo, [0.08], max_experiments=2)  # tag t keeps an experiment
    r = git.Repo(repo)
    assert r.active_branch.name == "autoresearch/t"
    loop = ResearchLoop(repo, LoopOptions(tag="u", max_experiments=1), Scripted([]),
                        say=lambda *a: None)  # fmt: skip
    loop.run()  # branched from t's best commit, but t's score is not u's
    rows = read_results(repo / "results.tsv")
    assert rows["role"].iloc[-1] == "baseline" and len(rows) == 3


def test_an_unavailable_proposer_stops_the_loop(repo):
    from nerlab.agents import ProposerUnavailable

    class Down(Scripted):
        def propose(self, ctx, error=None):
            raise ProposerUnavailable("Anthropic API error 401: invalid key")

    loop = ResearchLoop(repo, LoopOptions(tag="t", max_experiments=5), Down([]),
                        say=lambda *a: None)  # fmt: skip
    with pytest.raises(ProposerUnavailable):
        loop.run()
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep"]  # the baseline, and no failed-proposal rows
    assert not git.Repo(repo).is_dirty()


# -----------------------------------------------------------------------------
# night-proof: kills at the worst moments, a full disk, two loops, Ctrl-C, hostile proposals


def test_a_kill_before_landing_a_keep_lands_it_on_restart(repo, monkeypatch):
    """The keep row is written, then the loop dies before the branch moves: the restart lands
    it (one keep row, no second baseline), never reruns it."""
    from nerlab.gitops import RunBranch

    def killed(*args, **kwargs):
        raise SystemExit("killed")

    run_loop(repo, [], max_experiments=1)
    monkeypatch.setattr(RunBranch, "land", killed)
    with pytest.raises(SystemExit):
        run_loop(repo, [0.08], max_experiments=2)
    monkeypatch.undo()
    loop, _ = run_loop(repo, [0.01], max_experiments=3)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep", "discard"]
    assert rows["commit"].nunique() == 3
    _, experiments = branch_state(repo)
    assert experiments == ["lr 0.08", "baseline"]
    assert loop.ledger.best().commit == rows["commit"].iloc[1]


def test_a_reset_cut_short_is_restored_but_a_users_edit_is_refused(repo):
    """A kill inside `git reset --hard` leaves the branch moved and the config file old: the
    loop's own half-step, undone on restart; any other edit is the user's and is refused."""
    run_loop(repo, [0.08], max_experiments=2)
    r = git.Repo(repo)
    config = repo / "configs" / "current.yaml"
    config.write_text(r.git.show("HEAD~1:configs/current.yaml") + "\n")  # the previous best
    run_loop(repo, [0.01], max_experiments=3)
    assert not r.is_dirty()
    config.write_text("edited: true\n")
    with pytest.raises(Exception, match="uncommitted changes: configs/current.yaml"):
        run_loop(repo, [], max_experiments=4)


def test_a_full_disk_stops_the_loop_and_the_result_is_recovered(repo, monkeypatch):
    import errno

    from nerlab import results

    run_loop(repo, [], max_experiments=1)
    before = (repo / "results.tsv").read_bytes()
    original = results._write_row

    def full(f, line):
        f.write(line[:10])  # half a row reaches the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "_write_row", full)
    with pytest.raises(UserError, match=r"results.tsv: cannot append a row: No space left"):
        run_loop(repo, [0.08], max_experiments=2)
    assert (repo / "results.tsv").read_bytes() == before  # nothing appended, not even half
    r = git.Repo(repo)
    assert r.head.commit.message.startswith(PREFIX + "[1] baseline") and not r.is_dirty()
    monkeypatch.setattr(results, "_write_row", original)
    run_loop(repo, [], max_experiments=2)  # the finished run is read back from its log
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep"] and rows["dev_f1"].iloc[1] == 0.8
    assert branch_state(repo)[1] == ["lr 0.08", "baseline"]


def test_a_second_loop_in_the_same_tree_is_refused(repo, synthetic_home):
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "60"}
    first = agent_loop(repo, "--max-experiments", "3", env=env)
    try:
        wait_for(repo / "runs" / "t" / "2.log", first)
        second = subprocess.run(
            [sys.executable, str(ROOT / "agent_loop.py"), "--tag", "u", "--agent", "optuna"],
            cwd=repo, env={**os.environ, **env}, capture_output=True, text=True,
            timeout=HANG_GUARD_S,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"error: another agent_loop.py (pid {first.pid}) is running in {repo}; stop it "
            "first, or run this one in another working tree (git worktree add)"
        )
    finally:
        first.kill()
        first.wait()
    # the lock died with the killed loop: a restart is not blocked
    env.pop("FAKE_TRAIN_SLEEP")
    out, _ = agent_loop(repo, "--max-experiments", "2", env=env).communicate(timeout=HANG_GUARD_S)
    assert "recovering: [2]" in out, out


def test_ctrl_c_during_the_baseline_records_it_and_exits_cleanly(repo, synthetic_home):
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "60"}
    (repo / "configs" / "current.yaml").write_text(
        "# agent_loop.py: sleep in the fake trainer\n" + yaml.safe_dump(BASE)
    )  # the fake trainer sleeps in configs that start with this comment
    git.Repo(repo).git.commit("-am", "sleepy baseline")
    proc = agent_loop(repo, "--max-experiments", "2", env=env, start_new_session=True)
    wait_for(repo / "runs" / "t" / "1.log", proc)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert "Traceback" not in out and "BrokenPipeError" not in out, out
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["crash"]
    assert rows["role"].iloc[0] == "baseline"
    assert rows["reason"].iloc[0] == "interrupted (SIGINT)"
    assert not git.Repo(repo).is_dirty()
    assert not trainers_of(repo)


def test_a_kill_during_the_baseline_leaves_a_row(repo, synthetic_home):
    env = {"NER_AR_HOME": str(synthetic_home), "FAKE_TRAIN_SLEEP": "60"}
    (repo / "configs" / "current.yaml").write_text(
        "# agent_loop.py: sleep in the fake trainer\n" + yaml.safe_dump(BASE)
    )
    git.Repo(repo).git.commit("-am", "sleepy baseline")
    proc = agent_loop(repo, "--max-experiments", "2", env=env)
    wait_for(repo / "runs" / "t" / "1.log", proc)
    proc.kill()
    proc.wait()
    env.pop("FAKE_TRAIN_SLEEP")
    out, _ = agent_loop(repo, "--max-experiments", "2", env=env).communicate(timeout=HANG_GUARD_S)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["crash", "keep"], out
    assert rows["role"].tolist()[:2] == ["baseline", "baseline"]
    assert rows["reason"].iloc[0] == "interrupted" and rows["status"].iloc[1] == "keep"


def test_the_same_crash_three_times_stops_the_loop(repo):
    with pytest.raises(UserError, match="3 crashes in a row for the same reason"):
        run_loop(repo, [5.0, 5.0, 5.0, 0.08], max_experiments=10)
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "crash", "crash", "crash"]


def test_a_measured_config_is_not_run_again(repo):
    _, proposer = run_loop(repo, [0.08, 0.08, 0.07], max_experiments=3)
    assert "this exact config is experiment 2 (keep)" in proposer.errors[2]
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 3 and rows["dev_f1"].tolist() == pytest.approx([0.5, 0.8, 0.7])


def test_hostile_proposals_go_back_to_the_proposer(repo):
    deep = "a: " + "[" * 3000 + "]" * 3000
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")
    )
    _, proposer = run_loop(repo, [deep, bomb, 0.08], max_experiments=2)
    assert len(proposer.errors[1]) < 300 and len(proposer.errors[2]) < 300
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep"]


def smoke_config(repo: Path) -> Path:
    """A second config file in the repository, as the README's --config configs/smoke.yaml."""
    path = repo / "configs" / "smoke.yaml"
    path.write_text(yaml.safe_dump({**BASE, "optim": {**BASE["optim"], "lr": 0.06}}))
    git.Repo(repo).git.commit("-am", "a smoke config")
    return path


def test_a_resumed_tag_goes_on_with_its_own_config(repo):
    smoke = smoke_config(repo)
    run_loop(repo, [0.07], max_experiments=2, config=Path("configs/smoke.yaml"))
    loop, _ = run_loop(repo, [0.08], max_experiments=3)  # resumed without --config
    assert loop.config_path == smoke
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "keep", "keep"]
    assert rows["config"].tolist() == ["configs/smoke.yaml"] * 3 and rows["n"].tolist() == [1, 2, 3]
    r = git.Repo(repo)
    assert (
        "lr: 0.08" in smoke.read_text()
        and "lr: 0.05" in (repo / "configs/current.yaml").read_text()
    )
    info = parse_experiment(r.head.commit.message)
    assert (info.n, info.role, info.config, info.tag) == (
        3,
        "experiment",
        "configs/smoke.yaml",
        "t",
    )


def test_a_config_contradicting_the_tag_is_refused_with_the_tags(repo):
    smoke_config(repo)
    run_loop(repo, [], max_experiments=1, config=Path("configs/smoke.yaml"))
    with pytest.raises(
        UserError, match="tag 't' edits configs/smoke.yaml .*--config configs/smoke"
    ):
        run_loop(repo, [0.08], max_experiments=2, config=Path("configs/current.yaml"))
    loop, _ = run_loop(repo / "configs", [0.08], max_experiments=2, config=Path("smoke.yaml"))
    assert loop.config_path == repo / "configs" / "smoke.yaml"  # from a subdirectory: as meant


def test_a_config_outside_the_repository_is_refused_before_any_branch(repo, tmp_path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text(yaml.safe_dump(BASE))
    with pytest.raises(UserError, match="outside the repository"):
        run_loop(repo, [], max_experiments=1, config=outside)
    with pytest.raises(UserError, match="config file not found"):
        run_loop(repo, [], max_experiments=1, config=Path("configs/missing.yaml"))
    assert [h.name for h in git.Repo(repo).heads] == ["main"]


# -----------------------------------------------------------------------------
# the user's checkout and files: the loop writes its own branch and the files it wrote, only


def test_a_checkout_of_main_mid_loop_leaves_main_alone(repo):
    r = git.Repo(repo)
    project = r.heads.main.commit.hexsha
    said: list[str] = []
    run_loop(repo, [0.07, 0.08], {0: lambda: r.git.checkout("main")}, said, max_experiments=3)
    assert r.heads.main.commit.hexsha == project and r.active_branch.name == "main"
    assert branch_state(repo)[1] == ["lr 0.08", "lr 0.07", "baseline"]
    assert not r.is_dirty()
    notes = [s for s in said if "you checked out main" in s]
    assert len(notes) == 1 and "git checkout autoresearch/t" in notes[0]
    rows = read_results(repo / "results.tsv")
    assert r.commit("autoresearch/t").hexsha[:7] == rows["commit"].iloc[-1]


def test_an_edit_mid_loop_survives_keeps_and_ctrl_c(repo):
    program = repo / "program.md"
    edited = program.read_text() + "\nmy note, not committed yet\n"

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"^interrupted \(SIGINT\)$"):
        run_loop(repo, [0.07, 0.08], {0: lambda: program.write_text(edited), 2: interrupt},
                 max_experiments=5)  # fmt: skip
    assert program.read_text() == edited
    r = git.Repo(repo)
    assert r.active_branch.name == "autoresearch/t" and r.is_dirty()
    assert [d.a_path for d in r.index.diff(None)] == ["program.md"]  # the config is the best's
    assert branch_state(repo)[1] == ["lr 0.08", "lr 0.07", "baseline"]


def test_a_config_edited_mid_loop_is_left_alone_and_said_once(repo):
    config = repo / "configs" / "current.yaml"
    mine = "# my next idea\n" + config.read_text()
    said: list[str] = []
    run_loop(repo, [0.07, 0.08], {0: lambda: config.write_text(mine)}, said, max_experiments=3)
    assert config.read_text() == mine
    r = git.Repo(repo)
    assert yaml.safe_load(r.git.show("autoresearch/t:configs/current.yaml"))["optim"]["lr"] == 0.08
    notes = [s for s in said if "configs/current.yaml has changes the loop did not make" in s]
    assert len(notes) == 1


def test_corpora_deleted_mid_loop_stop_it_after_three_crashes(repo, synthetic_home, tmp_path,
                                                             monkeypatch):  # fmt: skip
    """Each crash names its config's corpora, so the reasons differ: the cause is the same."""
    home = tmp_path / "home"
    shutil.copytree(synthetic_home, home)
    monkeypatch.setenv("NER_AR_HOME", str(home))
    monkeypatch.setenv("FAKE_TRAIN_CHECK_DATA", "1")
    stages = [["ncbi_disease"], ["bc5cdr", "ncbi_disease"], ["bc2gm", "ncbi_disease"]] * 2
    proposals = [
        yaml.safe_dump({**BASE, "curriculum": [{"corpora": c, "fraction": 1.0}]}) for c in stages
    ]
    proposals[0] = 0.07  # the base curriculum, another LR
    with pytest.raises(UserError, match="3 crashes in a row for the same reason"):
        run_loop(repo, proposals, {0: lambda: shutil.rmtree(home / "synthetic")},
                 max_experiments=10)  # fmt: skip
    rows = read_results(repo / "results.tsv")
    assert rows["status"].tolist() == ["keep", "crash", "crash", "crash"]
    assert rows["reason"].iloc[1:].str.contains("not prepared in").all()
    assert rows["reason"].iloc[1:].nunique() == 3  # three texts, one cause


def test_a_tag_resumed_in_another_worktree_is_refused(repo, tmp_path):
    """The loop's own advice is another working tree; the tag's rows and logs stay in the
    first one, so a resume there would call finished runs interrupted and rerun the baseline."""
    run_loop(repo, [0.07], max_experiments=2)
    r = git.Repo(repo)
    r.git.checkout("main")  # frees the branch
    other = tmp_path / "other"
    r.git.worktree("add", "-b", "elsewhere", str(other), "main")
    with pytest.raises(UserError) as e:
        run_loop(other, [0.08], max_experiments=3)
    assert str(e.value) == (
        f"tag t has 2 experiment(s) but neither {other / 'results.tsv'} nor "
        f"{other / 'runs' / 't'} records them (they are in {repo}: run the loop there, or "
        "choose another --tag)"
    )
    assert (
        git.Repo(other).active_branch.name == "elsewhere" and not (other / "results.tsv").exists()
    )
    assert len(read_results(repo / "results.tsv")) == 2


def test_an_empty_git_object_after_a_power_loss_is_one_line(repo):
    run_loop(repo, [0.07], max_experiments=2)
    r = git.Repo(repo)
    sha = r.commit("refs/autoresearch/t/2").hexsha
    obj = repo / ".git" / "objects" / sha[:2] / sha[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"")  # written, renamed, never flushed: what a power loss leaves
    with pytest.raises(UserError) as e:
        run_loop(repo, [0.08], max_experiments=3)
    assert str(e.value).startswith(f"git object file .git/objects/{sha[:2]}/{sha[2:]} is empty")


def test_a_config_fixed_before_any_experiment_is_read_fresh(repo, synthetic_home):
    """A config with a TAB fails; once fixed and committed, the rerun reads the fixed one."""
    config = repo / "configs" / "current.yaml"
    good = config.read_text()
    config.write_text(good.replace("  lr:", "\tlr:"))
    r = git.Repo(repo)
    r.git.commit("-am", "a TAB")
    env = {"NER_AR_HOME": str(synthetic_home)}
    out, _ = agent_loop(repo, "--max-experiments", "1", env=env).communicate(timeout=HANG_GUARD_S)
    assert "configs/current.yaml" in out and "Traceback" not in out, out
    config.write_text(good)
    r.git.commit("-am", "fixed")
    proc = agent_loop(repo, "--max-experiments", "1", env=env)
    out, _ = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, out
    assert read_results(repo / "results.tsv")["status"].tolist() == ["keep"]
