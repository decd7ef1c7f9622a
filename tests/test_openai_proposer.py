"""The OpenAI-compatible proposer: the real `openai` SDK over HTTP to a scripted server on
127.0.0.1 (tests/chat_server.py), configured through OPENAI_BASE_URL and OPENAI_API_KEY."""

import json
import os
import re
import socket
import subprocess
import sys

import git
import openai
import pytest
import yaml

from nerlab.agents import Context, ProposalError, ProposerUnavailable
from nerlab.agents.factory import choose_agent
from nerlab.agents.openai_compat import OpenAIProposer
from nerlab.agents.prompt import ASK_JSON, render, trim_results
from nerlab.errors import UserError
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import read_results
from tests.chat_server import HANG, ChatServer, call, error, propose, text, tool_calls
from tests.helpers import BASE, HANG_GUARD_S, ROOT, make_repo

GOOD = yaml.safe_dump(BASE)
BAD = yaml.safe_dump({**BASE, "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 0.5}]})
SECRET = "sk-openai-test-secret-0123456789"


@pytest.fixture
def env(monkeypatch):
    """The SDK reads the key from the environment; the tests' servers accept only it."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return monkeypatch


def serve(replies, **kw) -> ChatServer:
    return ChatServer(replies, key=SECRET, **kw)


def proposer(server: ChatServer, monkeypatch, **kw) -> OpenAIProposer:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    kw = {"model": "test-model", "sleep": kw.pop("sleep", lambda s: None), **kw}
    return OpenAIProposer("PROGRAM TEXT", say=lambda *a: None, **kw)


def ctx(**kw) -> Context:
    fields = dict(
        experiment=2, config_yaml=GOOD, schema='{"title": "ExperimentConfig"}',
        corpora="- ncbi_disease", results="commit\tdev_f1\tstatus\tdescription",
        best_f1=0.5, best_description="baseline",
    )  # fmt: skip
    return Context(**{**fields, **kw})


def test_a_proposal_per_experiment_and_what_was_sent(env):
    with serve([propose(GOOD), propose(GOOD, "second")]) as server:
        p = proposer(server, env)
        assert p.propose(ctx()).description == "try bc5cdr first"
        assert p.propose(ctx(experiment=3)).description == "second"
    first, second = server.requests
    assert first["model"] == "test-model" and first["tool_choice"] == "required"
    assert first["messages"] == [
        {"role": "system", "content": "PROGRAM TEXT"},
        {"role": "user", "content": render(ctx())},
    ]
    assert [t["function"]["name"] for t in first["tools"]] == ["propose_experiment",
                                                               "read_run_log"]  # fmt: skip
    assert len(second["messages"]) == 2  # each experiment starts a fresh conversation
    assert second["messages"][1]["content"].startswith("Experiment 3.")


def test_a_rejected_config_goes_back_as_the_tool_result_then_fixed(env, tmp_path, synthetic_home):
    env.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "proj", fake_train=True)
    with serve([propose(BAD, id="call_bad"), propose(GOOD, id="call_good")]) as server:
        loop = ResearchLoop(repo, LoopOptions(tag="t"), proposer(server, env),
                            say=lambda *a: None)  # fmt: skip
        loop.start()
        _, cfg = loop.next.proposal(1)
    assert cfg.target == "ncbi_disease" and len(server.requests) == 2
    sent = server.requests[1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_bad"
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == "call_bad"
    assert "curriculum: stage fractions must sum to 1, got 0.5" in sent[-1]["content"]


def test_read_run_log_by_experiment_number(env):
    reads = tool_calls(call("read_run_log", {"experiment": 3, "lines": 2}, id="call_log"))
    asked = []
    context = ctx(log_tail=lambda n, lines: asked.append((n, lines)) or "status: crash")
    with serve([reads, propose(GOOD)]) as server:
        assert proposer(server, env).propose(context).config_yaml == GOOD
    assert asked == [(3, 2)]
    result = server.requests[1]["messages"][-1]
    assert result == {"role": "tool", "tool_call_id": "call_log", "content": "status: crash"}


def test_malformed_arguments_go_back_to_the_model(env):
    broken = tool_calls(call("propose_experiment", '{"config_yaml": "target: x', id="call_x"))
    with serve([broken, propose(GOOD, id="call_ok")]) as server:
        p = proposer(server, env)
        with pytest.raises(ProposalError, match="arguments are not valid JSON") as e:
            p.propose(ctx())
        assert p.propose(ctx(), error=str(e.value)).config_yaml == GOOD
    result = server.requests[1]["messages"][-1]
    assert result["tool_call_id"] == "call_x" and result["content"].startswith("Rejected: ")


def test_a_reply_without_a_tool_call_once_tools_work_is_a_proposal_error(env):
    with serve([propose(GOOD), text("I think..."), propose(GOOD, "again")]) as server:
        p = proposer(server, env)
        p.propose(ctx())
        with pytest.raises(ProposalError, match="called no tool"):
            p.propose(ctx())
        assert p.propose(ctx(), error="the reply called no tool").description == "again"
    assert server.requests[2]["messages"][-1]["content"].endswith("Call propose_experiment.")


def test_a_server_that_refuses_tools_is_asked_for_json(env):
    refused = error(400, "registry.ollama.ai/library/gemma:2b does not support tools")
    answer = text(f"```json\n{json.dumps({'config_yaml': GOOD, 'description': 'lr up'})}\n```")
    with serve([refused, answer, text("no JSON here"), propose(GOOD)]) as server:
        p = proposer(server, env)
        assert p.propose(ctx()).description == "lr up"
        with pytest.raises(ProposalError, match="no JSON object"):
            p.propose(ctx())
    asked = server.requests[1]
    assert "tools" not in asked and asked["response_format"] == {"type": "json_object"}
    assert asked["messages"][1]["content"] == render(ctx(), ask=ASK_JSON)
    assert "tools" not in server.requests[2]  # the fallback stays for the rest of the run


def test_a_model_that_answers_without_tools_switches_to_json(env):
    json_answer = '{"config_yaml": "x: 1", "description": "one"}'
    refused_mode = error(400, "response_format json_object is not supported")
    with serve([text("Sure! Here is my idea"), refused_mode, text(json_answer)]) as server:
        assert proposer(server, env).propose(ctx()).description == "one"
    plain, json_mode, without = server.requests
    assert "tools" in plain and "response_format" in json_mode
    assert "tools" not in without and "response_format" not in without


def test_401_is_one_line_naming_the_key_and_never_showing_it(env):
    env.setenv("OPENAI_API_KEY", SECRET + "-wrong")
    with serve([]) as server, pytest.raises(ProposerUnavailable) as e:
        proposer(server, env).propose(ctx())
    message = str(e.value)
    assert "401" in message and "OPENAI_API_KEY" in message and "\n" not in message
    assert SECRET not in message


def test_403_names_the_model_and_what_to_do(env):
    server = serve([error(403, "You are not allowed to sample from this model")])
    with server, pytest.raises(ProposerUnavailable) as e:
        proposer(server, env, model="gpt-x").propose(ctx())
    assert "403" in str(e.value) and "model gpt-x" in str(e.value) and "--model" in str(e.value)


def test_an_unknown_model_lists_the_servers_models(env):
    missing = error(404, "model 'llama9' not found, try pulling it first")
    server = serve([missing], models=("qwen3:8b", "llama3.1:8b"))
    with server, pytest.raises(ProposerUnavailable) as e:
        proposer(server, env, model="llama9").propose(ctx())
    assert str(e.value) == (
        f"the server at {server.url} has no model 'llama9': pick one with --model: "
        "llama3.1:8b, qwen3:8b"
    )


def test_a_wrong_base_url_is_named_as_such(env):
    server = serve([error(404, "404 page not found")], models=None)
    with server, pytest.raises(ProposerUnavailable, match="is the base URL right"):
        proposer(server, env).propose(ctx())


def test_no_model_given_takes_the_servers_only_one_or_lists_them(env):
    with serve([propose(GOOD)], models=("qwen3:8b",)) as server:
        p = proposer(server, env, model=None)
        assert p.model == "qwen3:8b"
        p.propose(ctx())
    assert server.requests[0]["model"] == "qwen3:8b"
    server = serve([], models=("a", "b"))
    with server, pytest.raises(UserError, match="needs --model: pick one with --model: a, b"):
        proposer(server, env, model=None)


def no_sdk_retries(url: str, timeout: float = 5.0) -> openai.OpenAI:
    """The SDK's own retries wait for real between attempts: none here (the default client's
    bound is checked below)."""
    return openai.OpenAI(base_url=url, max_retries=0, timeout=timeout)


def test_a_server_never_reached_fails_at_once(env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens there once closed
    slept = []
    p = OpenAIProposer("P", model="m", client=no_sdk_retries(url), sleep=slept.append)
    with pytest.raises(ProposerUnavailable) as e:
        p.propose(ctx())
    assert slept == [] and str(e.value).startswith(f"cannot reach the server at {url} (")
    assert "OPENAI_BASE_URL or --base-url" in str(e.value)


@pytest.mark.slow
def test_agent_loop_stops_with_one_line_when_the_server_is_never_reached(tmp_path, synthetic_home):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    env = {**os.environ, "NER_AR_HOME": str(synthetic_home), "OPENAI_API_KEY": SECRET}
    command = [sys.executable, str(ROOT / "agent_loop.py"), "--tag", "t", "--agent", "openai",
               "--base-url", url, "--model", "m", "--max-experiments", "3"]  # fmt: skip
    r = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                       timeout=HANG_GUARD_S)  # fmt: skip
    assert r.returncode == 1 and r.stdout.startswith(f"agent: openai (m at {url}): --agent openai")
    assert r.stderr.strip().startswith(f"error: cannot reach the server at {url} (")
    assert len(r.stderr.strip().splitlines()) == 1 and SECRET not in r.stdout + r.stderr
    assert read_results(repo / "results.tsv")["status"].tolist() == ["keep"]  # the baseline


def test_a_server_that_never_answers_times_out_with_what_to_do(env):
    with serve([HANG]) as server:
        p = OpenAIProposer("P", model="m", client=no_sdk_retries(server.url, timeout=1),
                           request_timeout=1, sleep=lambda s: None)  # fmt: skip
        with pytest.raises(ProposerUnavailable, match="no reply within 1 s.*--request-timeout"):
            p.propose(ctx())


def test_the_default_client_gives_up_on_an_unreachable_server_within_two_minutes(env):
    client = OpenAIProposer("P", model="m").client
    attempts = client.max_retries + 1
    sdk_backoff = sum(min(0.5 * 2**n, 8.0) for n in range(client.max_retries))  # SDK's schedule
    assert attempts * client.timeout.connect + sdk_backoff <= 120


def test_5xx_then_success(env):
    with serve([error(500, "boom"), propose(GOOD)]) as server:
        assert proposer(server, env).propose(ctx()).config_yaml == GOOD
    assert len(server.requests) == 2  # the SDK's own retry


def test_an_outage_beyond_the_sdk_retries_waits_within_the_patience(env):
    down = error(503, "overloaded")
    slept = []
    with serve([propose(GOOD), *[down] * 5, propose(GOOD, "after")]) as server:
        p = proposer(server, env, sleep=slept.append)
        p.propose(ctx())
        assert p.propose(ctx()).description == "after" and slept == [30.0]
    with serve([propose(GOOD), *[error(429, "slow down")] * 15]) as server:
        p = proposer(server, env, sleep=slept.append, patience=60)
        p.propose(ctx())
        with pytest.raises(ProposerUnavailable, match="was unavailable for 90 s"):
            p.propose(ctx())


def test_no_credit_is_not_waited_for(env):
    empty = error(429, "You exceeded your current quota", code="insufficient_quota")
    server = serve([empty] * 5)
    with server, pytest.raises(ProposerUnavailable, match="no credit"):
        proposer(server, env).propose(ctx())


def test_context_exceeded_trims_the_oldest_results_never_config_or_schema(env):
    rows = [f"c{i:06d}\t0.{50 + i}00\t{'keep' if i % 2 else 'discard'}\tidea {i}"
            for i in range(10)]  # fmt: skip
    context = ctx(results="commit\tdev_f1\tstatus\tdescription\n" + "\n".join(rows))
    over = error(400, "This model's maximum context length is 4096 tokens.",
                 code="context_length_exceeded")  # fmt: skip
    with serve([over, propose(GOOD)]) as server:
        assert proposer(server, env).propose(context).config_yaml == GOOD
    sent = server.requests[1]["messages"][1]["content"]
    assert "(5 older experiments, summarised: 2 keep, 3 discard, 0 crash; best of them " \
           "0.5400: idea 4)" in sent  # fmt: skip
    assert "idea 3" not in sent and all(f"idea {i}" in sent for i in range(5, 10))
    assert GOOD in sent and '{"title": "ExperimentConfig"}' in sent
    with serve([over] * 6) as server, pytest.raises(ProposerUnavailable, match="longer context"):
        proposer(server, env).propose(context)  # 10 rows, 5, 2, 1, 0: then nothing left to trim


def test_trim_results_leaves_a_short_table_alone():
    table = "commit\tdev_f1\tstatus\tdescription\nabc\t0.5\tkeep\tbaseline"
    assert trim_results(table, 5) == table == trim_results(table, None)


def test_agent_default_and_why():
    assert choose_agent(None, {"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "o"}) == (
        "anthropic", "ANTHROPIC_API_KEY is set")  # fmt: skip
    assert choose_agent(None, {"OPENAI_BASE_URL": "http://x/v1"}) == (
        "openai", "OPENAI_BASE_URL is set and ANTHROPIC_API_KEY is not")  # fmt: skip
    assert choose_agent(None, {"OPENAI_API_KEY": "o"})[0] == "openai"
    assert choose_agent(None, {}) == (
        "optuna", "none of ANTHROPIC_API_KEY, OPENAI_BASE_URL, OPENAI_API_KEY is set")  # fmt: skip
    assert choose_agent("optuna", {"ANTHROPIC_API_KEY": "k"}) == ("optuna", "--agent optuna")
    with pytest.raises(UserError, match="--agent anthropic needs ANTHROPIC_API_KEY"):
        choose_agent("anthropic", {})


def researcher(body: dict):
    """A scripted model for a whole loop: experiment 2 reads a log first, experiment 3 makes
    an invalid proposal first; each experiment n then proposes lr LRS[n]."""
    messages = body["messages"]
    n = int(re.match(r"Experiment (\d+)\.", messages[1]["content"]).group(1))
    if messages[-1]["role"] == "user" and n == 2:
        return tool_calls(call("read_run_log", {"experiment": 1, "lines": 5}, id="call_log"))
    if messages[-1]["role"] == "user" and n == 3:
        return propose(BAD, "half a curriculum", id="call_bad")
    raw = {**BASE, "optim": {**BASE["optim"], "lr": LRS[n]}}
    return propose(yaml.safe_dump(raw), f"lr {LRS[n]}", id=f"call_{n}")


LRS = {2: 0.07, 3: 0.06, 4: 0.08}  # fake trainer: dev F1 = 10 * lr (baseline 0.5)


@pytest.mark.slow
def test_agent_loop_end_to_end_with_two_workers_and_the_key_nowhere_on_disk(
    tmp_path, synthetic_home
):
    pytest.importorskip("ray", reason="--workers 2 runs on Ray")
    repo = make_repo(tmp_path / "proj", fake_train=True)
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    args = ["--tag", "t", "--max-experiments", "4", "--workers", "2", "--confirm-repeats", "1"]
    with ChatServer(researcher, key=SECRET) as server:
        env |= {"NER_AR_HOME": str(synthetic_home), "OPENAI_BASE_URL": server.url,
                "OPENAI_API_KEY": SECRET}  # fmt: skip
        command = [sys.executable, str(ROOT / "agent_loop.py"), *args]
        r = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True,
                           timeout=HANG_GUARD_S)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert out.splitlines()[0] == (
        f"agent: openai (test-model at {server.url}): "
        "OPENAI_BASE_URL is set and ANTHROPIC_API_KEY is not"
    )  # no --model: the server's only model
    assert "ray: 2 workers" in out
    rows = read_results(repo / "results.tsv")
    ideas = [d.split(" [")[0] for d in rows["description"]]
    assert sorted(ideas) == ["baseline", "lr 0.06", "lr 0.07", "lr 0.08"]
    assert set(rows["status"]) <= {"keep", "discard"}
    best = rows.loc[rows["dev_f1"].idxmax()]
    assert best["status"] == "keep" and best["description"].startswith("lr 0.08")
    assert git.Repo(repo).head.commit.hexsha[:7] == best["commit"]
    sent = [b["messages"][-1] for b in server.requests]
    assert any(m["role"] == "tool" and m["tool_call_id"] == "call_log" for m in sent)
    rejected = [m for m in sent if m.get("tool_call_id") == "call_bad"]
    assert "stage fractions must sum to 1" in rejected[0]["content"]
    # the key went to the server and nowhere else: not on disk, in git or in the output
    on_disk = subprocess.run(["grep", "-rl", SECRET, "runs", "results.tsv", ".git"], cwd=repo)
    history = git.Repo(repo).git.log("--all", "-p")
    assert on_disk.returncode == 1 and SECRET not in history and SECRET not in out
