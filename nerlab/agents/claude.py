"""Claude as the researcher: the Anthropic Messages API with tool use.

System prompt = program.md (prompt-cached). Each experiment starts a fresh conversation showing
the current best config, the schema, the corpora and the results so far. Claude answers with
one of two tools: `propose_experiment` (config YAML + description) or `read_run_log` (the tail
of an earlier run's log, by experiment number only: no path from the model is ever opened).
A rejected config goes back as the tool's error result so Claude can fix it.

The SDK retries transient failures itself; beyond that, rate limits and outages wait and retry
(up to `patience` seconds in total) rather than end the night. An API that has not answered once
since the start is not an outage but a set-up problem (no network, a proxy, a wrong base URL):
that fails after the SDK's retries, within two minutes. ANTHROPIC_API_KEY is read by the SDK
from the environment and never logged.
"""

from __future__ import annotations

import os
import time

import anthropic

from nerlab.agents import Context, Proposal, ProposalError, ProposerUnavailable

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 4096
MAX_TOOL_TURNS = 4  # log reads before a proposal is required
TRANSIENT = (
    anthropic.RateLimitError,
    anthropic.APIConnectionError,  # includes timeouts
    anthropic.InternalServerError,  # 5xx, overloaded
)

TOOLS = [
    {
        "name": "propose_experiment",
        "description": (
            "Propose the next experiment: the complete config file (YAML, same schema as the "
            "current config) and a one-line description of the change and why."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "config_yaml": {"type": "string", "description": "the whole config, as YAML"},
                "description": {"type": "string", "description": "one line: what and why"},
            },
            "required": ["config_yaml", "description"],
        },
    },
    {
        "name": "read_run_log",
        "description": "The last lines of an earlier experiment's train.py log (e.g. a crash).",
        "input_schema": {
            "type": "object",
            "properties": {
                "experiment": {"type": "integer", "description": "experiment number"},
                "lines": {"type": "integer", "description": "how many lines (max 200)"},
            },
            "required": ["experiment"],
        },
    },
]


def render(ctx: Context) -> str:
    best = f"{ctx.best_f1:.4f} ({ctx.best_description})" if ctx.best_f1 is not None else "none"
    return (
        f"Experiment {ctx.experiment}. Best dev F1 so far: {best}.\n\n"
        f"## Current best config (configs file you edit)\n```yaml\n{ctx.config_yaml}```\n\n"
        f"## Results so far\n```\n{ctx.results or '(none yet)'}\n```\n\n"
        + (
            "## Running now (do not propose these again; their results come later)\n"
            f"{ctx.running}\n\n"
            if ctx.running
            else ""
        )
        + f"## Corpora\n{ctx.corpora}\n\n"
        f"## Config schema (JSON schema)\n```json\n{ctx.schema}\n```\n\n"
        "Propose the next experiment with the propose_experiment tool."
    )


class ClaudeProposer:
    name = "claude"

    def __init__(self, program: str, model: str = DEFAULT_MODEL, client=None,
                 patience: float = 6 * 3600, sleep=time.sleep):  # fmt: skip
        self.program = program
        self.model = model
        # a short connect timeout bounds the SDK's 5 attempts at an unreachable API to ~1 minute
        timeout = anthropic.Timeout(180.0, connect=10.0)
        self.client = client or anthropic.Anthropic(max_retries=4, timeout=timeout)
        self.patience = patience
        self.sleep = sleep
        self.answered = False  # has the API ever replied (even with an error status)?
        self.messages: list[dict] = []
        self.pending: str | None = None  # id of the tool_use awaiting our tool_result

    def propose(self, ctx: Context, error: str | None = None) -> Proposal:
        if error is None:
            self.messages = [{"role": "user", "content": render(ctx)}]
        elif self.pending:
            self.messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": self.pending, "is_error": True,
                 "content": f"Rejected: {error}. Fix it and call propose_experiment again."},
            ]})  # fmt: skip
        else:
            self.messages.append({"role": "user", "content": f"{error}. Call propose_experiment."})
        self.pending = None
        for _ in range(MAX_TOOL_TURNS + 1):
            reply = self._create()
            self.messages.append({"role": "assistant", "content": reply.content})
            uses = [b for b in reply.content if b.type == "tool_use"]
            if not uses:
                raise ProposalError("the reply called no tool")
            proposal = next((u for u in uses if u.name == "propose_experiment"), None)
            if proposal is not None:
                self.pending = proposal.id
                return _read_proposal(proposal.input)
            self.messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u.id, "content": _tool(u, ctx)}
                for u in uses
            ]})  # fmt: skip
        raise ProposalError(f"no proposal after {MAX_TOOL_TURNS} log reads")

    def observe(self, proposal: Proposal, f1: float | None) -> None:
        """Nothing to keep: the next turn shows every result in the table."""

    def _create(self):
        waited, delay = 0.0, 30.0
        while True:
            try:
                reply = self.client.messages.create(
                    model=self.model,
                    max_tokens=MAX_TOKENS,
                    system=[
                        {
                            "type": "text",
                            "text": self.program,
                            "cache_control": {"type": "ephemeral"},
                        }
                    ],  # fmt: skip
                    tools=TOOLS,
                    tool_choice={"type": "any", "disable_parallel_tool_use": True},
                    messages=self.messages,
                )
                self.answered = True
                return reply
            except TRANSIENT as e:
                self.answered |= isinstance(e, anthropic.APIStatusError)  # 429, 5xx: it replied
                if not self.answered:
                    raise ProposerUnavailable(
                        f"cannot reach the Anthropic API ({type(e).__name__}: {_safe(e)}) and it "
                        "has not answered once since the start, so this is no outage to wait out: "
                        "check the network, a proxy (HTTPS_PROXY) or ANTHROPIC_BASE_URL"
                    ) from None
                if waited >= self.patience:
                    msg = f"Anthropic API unavailable for {waited:.0f} s: {_safe(e)}"
                    raise ProposerUnavailable(msg) from None
                print(f"anthropic: {type(e).__name__}; retrying in {delay:.0f} s", flush=True)
                self.sleep(delay)
                waited += delay
                delay = min(delay * 2, 600.0)
            except anthropic.APIStatusError as e:  # auth, bad request: waiting will not help
                msg = f"Anthropic API error {e.status_code}: {_safe(e)}"
                raise ProposerUnavailable(msg) from None


def _read_proposal(data: object) -> Proposal:
    if not isinstance(data, dict):
        raise ProposalError("propose_experiment input is not an object")
    config, description = data.get("config_yaml"), data.get("description")
    if not isinstance(config, str) or not config.strip():
        raise ProposalError("propose_experiment needs config_yaml: the whole config as YAML")
    if not isinstance(description, str) or not description.strip():
        raise ProposalError("propose_experiment needs a one-line description")
    return Proposal(config, " ".join(description.split()))


def _tool(use, ctx: Context) -> str:
    if use.name != "read_run_log":
        return f"unknown tool {use.name!r}"
    try:
        n = int(use.input.get("experiment"))
        lines = max(1, min(int(use.input.get("lines", 50)), 200))
    except (TypeError, ValueError):
        return "experiment must be an integer"
    return ctx.log_tail(n, lines)


def _safe(e: Exception) -> str:
    """An error message with any trace of the API key removed."""
    text = str(e)
    key = os.environ.get("ANTHROPIC_API_KEY")
    return text.replace(key, "[redacted]") if key else text
