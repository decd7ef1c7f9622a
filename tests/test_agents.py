"""Proposers: Claude through the real anthropic SDK against a mock transport, and Optuna."""

import json
from pathlib import Path

import anthropic
import httpx2 as httpx  # the anthropic SDK 2.x speaks httpx2
import optuna
import pytest
import sqlalchemy.exc
import yaml

from nerlab.agents import Context, ProposalError, ProposerUnavailable
from nerlab.agents.claude import ClaudeProposer
from nerlab.agents.optuna_search import OptunaProposer, recorded_results
from nerlab.config import parse_config
from nerlab.errors import UserError
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import COLUMNS, read_results
from tests.helpers import BASE, ROOT, make_repo, run_script

GOOD = yaml.safe_dump(BASE)
BAD = yaml.safe_dump({**BASE, "curriculum": [{"corpora": ["ncbi_disease"], "fraction": 0.5}]})
SECRET = "sk-ant-test-secret-0123456789"


def message(*blocks: dict) -> dict:
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": list(blocks), "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }  # fmt: skip


def tool_use(name: str, data: dict, id: str = "toolu_1") -> dict:
    return {"type": "tool_use", "id": id, "name": name, "input": data}


def propose(config: str, description: str = "try bc5cdr first", id: str = "toolu_1") -> dict:
    return message(tool_use("propose_experiment", {"config_yaml": config,
                                                   "description": description}, id))  # fmt: skip


class Server:
    """Serves queued responses and records every request body."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.requests: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.content))
        status, body, headers = self.responses.pop(0)
        return httpx.Response(status, json=body, headers=headers)


def claude(server: Server, **kw) -> ClaudeProposer:
    client = anthropic.Anthropic(
        api_key=SECRET, max_retries=2,
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
    )  # fmt: skip
    return ClaudeProposer("PROGRAM TEXT", model="claude-test", client=client, **kw)


def ctx(**kw) -> Context:
    return Context(
        experiment=2, config_yaml=GOOD, schema="{}", corpora="- ncbi_disease",
        results="commit\tdev_f1", best_f1=0.5, best_description="baseline", **kw,
    )  # fmt: skip


def ok(body):
    return (200, body, {})


def test_tool_use_proposal_and_what_was_sent():
    server = Server(ok(propose(GOOD)))
    p = claude(server).propose(ctx())
    assert p.config_yaml == GOOD and p.description == "try bc5cdr first"
    sent = server.requests[0]
    assert sent["model"] == "claude-test"
    assert sent["system"] == [
        {"type": "text", "text": "PROGRAM TEXT", "cache_control": {"type": "ephemeral"}}
    ]
    assert [t["name"] for t in sent["tools"]] == ["propose_experiment", "read_run_log"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "Best dev F1 so far: 0.5000" in sent["messages"][0]["content"]


def test_invalid_config_goes_back_as_a_tool_error_then_fixed(tmp_path, synthetic_home,
                                                             monkeypatch):  # fmt: skip
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "proj", fake_train=True)
    server = Server(ok(propose(BAD, id="toolu_bad")), ok(propose(GOOD, id="toolu_good")))
    loop = ResearchLoop(repo, LoopOptions(tag="t"), claude(server), say=lambda *a: None)
    loop.start()
    proposal, cfg = loop.next.proposal(1)
    assert cfg.target == "ncbi_disease" and len(server.requests) == 2
    last = server.requests[1]["messages"][-1]["content"][0]
    assert last["type"] == "tool_result" and last["tool_use_id"] == "toolu_bad"
    assert last["is_error"] is True
    assert "curriculum: stage fractions must sum to 1, got 0.5" in last["content"]


def test_malformed_reply_is_a_proposal_error_and_the_retry_asks_again():
    text_only = message({"type": "text", "text": "I think we should..."})
    server = Server(ok(text_only), ok(propose(GOOD)))
    proposer = claude(server)
    with pytest.raises(ProposalError, match="called no tool"):
        proposer.propose(ctx())
    assert proposer.propose(ctx(), error="the reply called no tool").config_yaml == GOOD
    assert "Call propose_experiment" in server.requests[1]["messages"][-1]["content"]
    missing = Server(ok(message(tool_use("propose_experiment", {"config_yaml": GOOD}))))
    with pytest.raises(ProposalError, match="one-line description"):
        claude(missing).propose(ctx())


def test_rate_limit_then_success_uses_the_sdk_retry():
    limited = (429, {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
               {"retry-after": "0"})  # fmt: skip
    server = Server(limited, ok(propose(GOOD)))
    assert claude(server).propose(ctx()).config_yaml == GOOD
    assert len(server.requests) == 2


def test_outage_beyond_sdk_retries_waits_and_retries():
    down = (529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            {"retry-after": "0"})  # fmt: skip
    server = Server(down, down, down, ok(propose(GOOD)))  # SDK: 1 try + 2 retries, then us
    slept = []
    p = claude(server, sleep=slept.append).propose(ctx())
    assert p.config_yaml == GOOD and slept == [30.0]


def test_auth_error_is_fatal_and_never_shows_the_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    error = {"type": "authentication_error", "message": f"invalid x-api-key {SECRET}"}
    denied = (401, {"type": "error", "error": error}, {})
    with pytest.raises(UserError) as e:
        claude(Server(denied)).propose(ctx())
    assert "401" in str(e.value) and SECRET not in str(e.value)


class Flaky(Server):
    """A server reached only some of the time: `None` in the queue is a failed connection."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.responses[0] is None:
            self.responses.pop(0)
            raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution")
        return super().__call__(request)


def no_sdk_retries(server: Server, **kw) -> ClaudeProposer:
    """The SDK's own retries sleep for real between connection attempts: none here."""
    client = anthropic.Anthropic(
        api_key=SECRET, max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(server)),
    )  # fmt: skip
    return ClaudeProposer("PROGRAM TEXT", model="claude-test", client=client, **kw)


def test_an_api_never_reached_is_a_set_up_problem_not_an_outage(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    slept = []
    proposer = no_sdk_retries(Flaky(None, ok(propose(GOOD))), sleep=slept.append)
    with pytest.raises(ProposerUnavailable) as e:
        proposer.propose(ctx())
    assert slept == []  # failed at once: no waiting for an API that never answered
    # ours: what happened and what to check; the SDK's own text between the parentheses is not
    assert str(e.value).startswith("cannot reach the Anthropic API (APIConnectionError: ")
    assert str(e.value).endswith(
        ") and it has not answered once since the start, so this is no outage to wait out: "
        "check the network, a proxy (HTTPS_PROXY) or ANTHROPIC_BASE_URL"
    )
    assert SECRET not in str(e.value)


def test_once_the_api_has_answered_a_lost_connection_is_waited_out():
    slept = []
    server = Flaky(ok(propose(GOOD)), None, None, ok(propose(GOOD, description="second")))
    proposer = no_sdk_retries(server, sleep=slept.append)
    assert proposer.propose(ctx()).description == "try bc5cdr first"
    assert proposer.propose(ctx()).description == "second" and slept == [30.0, 60.0]
    lost = no_sdk_retries(Flaky(ok(propose(GOOD)), None, None, None), sleep=slept.append,
                          patience=60)  # fmt: skip
    lost.propose(ctx())
    with pytest.raises(ProposerUnavailable, match="Anthropic API unavailable for 90 s"):
        lost.propose(ctx())


def test_the_default_client_gives_up_on_an_unreachable_api_within_two_minutes(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    client = ClaudeProposer("PROGRAM TEXT").client
    attempts = client.max_retries + 1
    sdk_backoff = sum(min(0.5 * 2**n, 8.0) for n in range(client.max_retries))  # SDK's schedule
    assert attempts * client.timeout.connect + sdk_backoff <= 120


def test_read_run_log_tool_by_number_only():
    reads = message(tool_use("read_run_log", {"experiment": 3, "lines": 2}, id="toolu_log"))
    server = Server(ok(reads), ok(propose(GOOD)))
    asked = []
    context = ctx(log_tail=lambda n, lines: asked.append((n, lines)) or "status: crash")
    claude(server).propose(context)
    assert asked == [(3, 2)]
    result = server.requests[1]["messages"][-1]["content"][0]
    assert result == {"type": "tool_result", "tool_use_id": "toolu_log", "content": "status: crash"}


def test_optuna_proposals_are_valid_and_the_study_resumes(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    base = parse_config(BASE)
    sources = ["bc5cdr_disease", "bc2gm", "linnaeus", "ncbi_disease"]
    db = tmp_path / "optuna.db"
    first = OptunaProposer(base, sources, db, seed=1)
    assert "ncbi_disease" not in first.sources  # the target is not its own source
    seen = []
    for _ in range(6):
        p = first.propose(ctx())
        cfg = parse_config(yaml.safe_load(p.config_yaml))
        assert cfg.curriculum[-1].corpora == ["ncbi_disease"]
        seen.append(p.description)
        first.observe(p, 0.5)
    pending = first.propose(ctx())  # asked, never told: the loop was killed
    second = OptunaProposer(base, sources, db, seed=1)
    states = [t.state.name for t in second.study.trials]
    assert states.count("COMPLETE") == 6 and states[-1] == "FAIL" and pending.ref is not None
    assert len(set(seen)) > 1


def test_claude_sees_the_experiments_in_flight():
    server = Server(ok(propose(GOOD)))
    running = "- [3] bc2gm first, 30%\n    -  lr: 0.05\n    +  lr: 0.1"
    claude(server).propose(ctx(running=running))
    prompt = server.requests[0]["messages"][0]["content"]
    assert "## Running now (do not propose these again" in prompt and running in prompt
    server = Server(ok(propose(GOOD)))
    claude(server).propose(ctx())
    assert "Running now" not in server.requests[0]["messages"][0]["content"]


def test_optuna_never_proposes_a_pending_trial_twice(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    base = parse_config(BASE)
    proposer = OptunaProposer(base, ["bc5cdr_disease", "bc2gm", "linnaeus"], tmp_path / "o.db")
    for _ in range(12):  # past TPE's random start-up trials
        proposer.observe(proposer.propose(ctx()), 0.5)
    pending = [proposer.propose(ctx()) for _ in range(6)]  # in flight together
    assert len({p.config_yaml for p in pending}) == 6


def test_a_restarted_search_does_not_replay_its_proposals(tmp_path, synthetic_home, monkeypatch):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    base, db = parse_config(BASE), tmp_path / "o.db"
    sources = ["bc5cdr_disease", "bc2gm", "linnaeus"]
    first = OptunaProposer(base, sources, db)
    p = first.propose(ctx())
    first.observe(p, 0.5)
    again = OptunaProposer(base, sources, db).propose(ctx())  # same seed, after a restart
    assert again.config_yaml != p.config_yaml


def test_optuna_never_pairs_overlapping_views_and_leaves_numbering_to_the_loop(
    tmp_path, synthetic_home, monkeypatch
):
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    sources = ["bc5cdr", "bc5cdr_chem", "bc5cdr_disease"]
    proposer = OptunaProposer(parse_config(BASE), sources, tmp_path / "optuna.db")
    fixed = {"source_share": 0.4, "lr_scale": 1.0, "batch_size": 16, "head": "crf"}
    # bc5cdr_chem is a part of bc5cdr: dropped, and with one source left `mixed` is never asked
    trial = optuna.trial.FixedTrial({**fixed, "source_0": "bc5cdr", "source_1": "bc5cdr_chem"})
    raw, description = proposer._config(trial)
    assert [s["corpora"] for s in raw["curriculum"]] == [["bc5cdr"], ["ncbi_disease"]]
    assert description.startswith("bc5cdr 40% -> target |")
    # disjoint views of one corpus are two sources
    both = {**fixed, "source_0": "bc5cdr_chem", "source_1": "bc5cdr_disease", "mixed": True}
    raw, description = proposer._config(optuna.trial.FixedTrial(both))
    assert raw["curriculum"][0]["corpora"] == ["bc5cdr_chem", "bc5cdr_disease"]
    assert description.startswith("mix(bc5cdr_chem+bc5cdr_disease) 40% -> target |")


def test_a_full_disk_under_the_study_is_one_line_and_the_restart_tells_the_lost_result(
    tmp_path, synthetic_home, monkeypatch
):
    """`database or disk is full` when the study records a result: the loop stops with one
    line after the row; the next start gives the trial that row's result, not FAIL."""
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "proj", fake_train=True)
    db = repo / "runs" / "t" / "optuna.db"
    sources = ["bc5cdr_disease", "bc2gm"]

    def full(*args, **kwargs):
        full_disk = sqlalchemy.exc.OperationalError(
            "COMMIT", {}, Exception("database or disk is full")
        )
        raise optuna.exceptions.StorageInternalError("commit failed") from full_disk

    proposer = OptunaProposer(parse_config(BASE), sources, db)
    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", full)
    loop = ResearchLoop(repo, LoopOptions(tag="t", max_experiments=3), proposer,
                        say=lambda *a: None)  # fmt: skip
    with pytest.raises(ProposerUnavailable) as e:
        loop.run()
    assert "database or disk is full" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.undo()  # space freed
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    rows = read_results(repo / "results.tsv")
    assert len(rows) == 2 and rows["status"].iloc[1] != "crash"  # the baseline, then [2]
    finished = recorded_results(repo, "t", Path("results.tsv"))
    assert finished == {1: rows["dev_f1"].iloc[0], 2: rows["dev_f1"].iloc[1]}
    again = OptunaProposer(parse_config(BASE), sources, db, finished=finished)
    (trial,) = again.study.trials
    assert trial.state.name == "COMPLETE" and trial.value == rows["dev_f1"].iloc[1]


def test_a_config_that_is_not_a_mapping_is_reported_as_the_users_file(tmp_path, synthetic_home):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    (repo / "configs" / "list.yaml").write_text("- target: ncbi_disease\n- model: tiny\n")
    r = run_script(str(ROOT / "agent_loop.py"), "--tag", "t", "--agent", "optuna", "--config",
                   "configs/list.yaml", home=synthetic_home, cwd=repo)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "configs/list.yaml" in r.stderr and "optuna_base" not in r.stderr
    assert not (repo / "runs" / "t" / "optuna_base.yaml").exists()


def test_recorded_results_read_past_a_torn_row(tmp_path):
    repo = make_repo(tmp_path / "proj", fake_train=True)
    (repo / "results.tsv").write_text("\t".join(COLUMNS) + "\n2026-01-01T00:00:00\tab")  # torn
    assert recorded_results(repo, "t", Path("results.tsv")) == {}
    assert (repo / "results.tsv.partial").exists()


def test_both_llm_proposers_send_the_one_shared_prompt_and_tools(monkeypatch):
    from nerlab.agents import prompt
    from nerlab.agents.openai_compat import OpenAIProposer
    from tests.chat_server import ChatServer
    from tests.chat_server import propose as chat_propose

    # a change to the shared definitions reaches both proposers
    monkeypatch.setitem(prompt.PROPOSE, "description", "SHARED DESCRIPTION")
    context = ctx(running="- [3] bc2gm first")
    server = Server(ok(propose(GOOD)))
    claude(server).propose(context)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with ChatServer([chat_propose(GOOD)]) as chat:
        OpenAIProposer("PROGRAM TEXT", model="m", base_url=chat.url).propose(context)
    to_claude, to_openai = server.requests[0], chat.requests[0]
    assert to_claude["system"][0]["text"] == "PROGRAM TEXT" == to_openai["messages"][0]["content"]
    first = prompt.render(context)
    assert to_claude["messages"][0]["content"] == first == to_openai["messages"][1]["content"]
    shared = [(t["name"], t["description"], t["parameters"]) for t in prompt.TOOLS]
    assert shared[0][1] == "SHARED DESCRIPTION"
    assert [(t["name"], t["description"], t["input_schema"]) for t in to_claude["tools"]] == shared
    functions = [t["function"] for t in to_openai["tools"]]
    assert [(f["name"], f["description"], f["parameters"]) for f in functions] == shared
