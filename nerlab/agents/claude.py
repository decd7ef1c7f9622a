"""Claude as the researcher: the Anthropic Messages API with tool use.

The prompt, the per-experiment message and the two tools (`propose_experiment`, `read_run_log`)
are nerlab/agents/prompt.py's, shared with the OpenAI-compatible proposer; program.md is the
system prompt, prompt-cached. A rejected config goes back as the tool's error result so Claude
can fix it.

The SDK retries transient failures itself; beyond that, rate limits and outages wait and retry
(up to `patience` seconds in total) rather than end the night. An API that has not answered once
since the start is not an outage but a set-up problem (no network, a proxy, a wrong base URL):
that fails after the SDK's retries, within two minutes. ANTHROPIC_API_KEY is read by the SDK
from the environment and never logged.
"""

from __future__ import annotations

import time

import anthropic

from nerlab.agents import PATIENCE_S, Context, Proposal, ProposalError, ProposerUnavailable
from nerlab.agents.prompt import anthropic_tools, read_proposal, render, run_tool
from nerlab.redact import redact

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_TOKENS = 4096
MAX_TOOL_TURNS = 4  # log reads before a proposal is required
TRANSIENT = (
    anthropic.RateLimitError,
    anthropic.APIConnectionError,  # includes timeouts
    anthropic.InternalServerError,  # 5xx, overloaded
)


class ClaudeProposer:
    name = "claude"
    slow = True

    def __init__(self, program: str, model: str = DEFAULT_MODEL, client=None,
                 patience: float = PATIENCE_S, sleep=time.sleep):  # fmt: skip
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
                return read_proposal(proposal.input)
            self.messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": u.id,
                 "content": run_tool(u.name, u.input if isinstance(u.input, dict) else {}, ctx)}
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
                    tools=anthropic_tools(),
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


def _safe(e: Exception) -> str:
    """An error message with any trace of a secret removed."""
    return redact(str(e))
