"""Any OpenAI-compatible server as the researcher: Ollama, vLLM, llama.cpp's server, LM Studio,
OpenAI, gateways. The official `openai` SDK, chat completions with function tools.

Configured the ecosystem's way: OPENAI_BASE_URL (or --base-url), OPENAI_API_KEY (local
servers take any or none), --model (default: the server's only model). Same protocol as the
Claude proposer (nerlab/agents/prompt.py): program.md as the system prompt, a fresh
conversation per experiment, the tools `propose_experiment` and `read_run_log`, a rejected
config sent back as the tool's result.

A server or model without tool calling (an error naming tools, or a first reply with no tool
call) is asked for one JSON object with the same two fields instead (JSON mode where the server
takes it). A prompt over the model's context gets its results table trimmed (the oldest rows
summarised; never the config or the schema). Rate limits and 5xx wait and retry within the
same patience as Claude; a server that never answered once fails at once, with what to check.
"""

from __future__ import annotations

import os
import re
import time

import openai

from nerlab.agents import (
    DEFAULT_REQUEST_TIMEOUT,
    PATIENCE_S,
    Context,
    Proposal,
    ProposalError,
    ProposerUnavailable,
)
from nerlab.agents.prompt import (
    ASK_JSON,
    ASK_TOOL,
    PROPOSE,
    one_line,
    openai_tools,
    parse_arguments,
    parse_json_answer,
    read_proposal,
    render,
    result_rows,
    run_tool,
)
from nerlab.errors import UserError

MAX_TOOL_TURNS = 4  # log reads before a proposal is required
MAX_MODELS_SHOWN = 20
NO_KEY = "unused"  # local servers need no key, but the SDK refuses to start without one
CONTEXT_EXCEEDED = re.compile(
    r"context.{0,20}(length|size|window)|maximum context|too many tokens|prompt is too long",
    re.IGNORECASE,
)


class OpenAIProposer:
    name = "openai"
    slow = True

    def __init__(self, program: str, model: str | None = None, base_url: str | None = None,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT, client=None,
                 patience: float = PATIENCE_S, sleep=time.sleep, say=print):  # fmt: skip
        self.program = program
        self.request_timeout = request_timeout
        # a short connect timeout bounds the SDK's 5 attempts at an unreachable server
        self.client = client or openai.OpenAI(
            base_url=base_url,  # None: OPENAI_BASE_URL, else OpenAI's
            api_key=os.environ.get("OPENAI_API_KEY") or NO_KEY,
            max_retries=4,
            timeout=openai.Timeout(request_timeout, connect=10.0),
        )
        self.base_url = str(self.client.base_url).rstrip("/")
        self.patience, self.sleep, self.say = patience, sleep, say
        self.answered = False  # has the server ever replied (even with an error status)?
        self.tools = True  # function tools (until the server or model shows it has none)
        self.tools_seen = False  # a reply called a tool: tools work here
        self.json_mode = True  # response_format json_object, in the tool-less fallback
        self.keep_results: int | None = None  # results rows that fit the model's context
        self.messages: list[dict] = []
        self.pending: str | None = None  # id of the propose_experiment call awaiting its result
        self.model = model or ""
        if not model:
            self.model = self._only_model()  # the server's only one; an error lists them if not

    def propose(self, ctx: Context, error: str | None = None) -> Proposal:
        if error is None:
            self._start(ctx)
        elif self.pending:
            self.messages.append(_tool_result(
                self.pending, f"Rejected: {error}. Fix it and call propose_experiment again."
            ))  # fmt: skip
        else:
            ask = "Call propose_experiment." if self.tools else ASK_JSON
            self.messages.append({"role": "user", "content": f"Rejected: {error}. {ask}"})
        self.pending = None
        for _ in range(MAX_TOOL_TURNS + 1):
            message = self._create(ctx)
            if not self.tools:
                self.messages.append({"role": "assistant", "content": message.content or ""})
                return parse_json_answer(message.content)
            calls = [c for c in message.tool_calls or [] if getattr(c, "function", None)]
            if not calls and not self.tools_seen:
                self._without_tools(ctx, "the model answered without calling a tool")
                continue
            if not calls:
                self.messages.append({"role": "assistant", "content": message.content or ""})
                raise ProposalError("the reply called no tool")
            proposal = self._take_turn(message, calls, ctx)
            if proposal is not None:
                return proposal
        raise ProposalError(f"no proposal after {MAX_TOOL_TURNS} log reads")

    def observe(self, proposal: Proposal, f1: float | None) -> None:
        """Nothing to keep: the next turn shows every result in the table."""

    # -- one turn ---------------------------------------------------------------------------

    def _start(self, ctx: Context) -> None:
        ask = ASK_TOOL if self.tools else ASK_JSON
        self.messages = [
            {"role": "system", "content": self.program},
            {"role": "user", "content": render(ctx, ask, self.keep_results)},
        ]

    def _take_turn(self, message, calls: list, ctx: Context) -> Proposal | None:
        """Answers the reply's tool calls; the proposal it made, if any."""
        ids = [c.id or f"call_{i}" for i, c in enumerate(calls)]  # some servers send no id
        self.messages.append({
            "role": "assistant", "content": message.content or "",
            "tool_calls": [
                {"id": i, "type": "function",
                 "function": {"name": c.function.name, "arguments": c.function.arguments or ""}}
                for i, c in zip(ids, calls)
            ],
        })  # fmt: skip
        self.tools_seen = True
        chosen = next((i for i, c in zip(ids, calls) if c.function.name == PROPOSE["name"]), None)
        for i, c in zip(ids, calls):  # every call gets its result before the next request
            if i == chosen:
                continue
            if chosen is not None:
                text = "not run: one propose_experiment per reply counts, the first"
            else:
                try:
                    text = run_tool(
                        c.function.name, parse_arguments(c.function.arguments, c.function.name), ctx
                    )
                except ProposalError as e:
                    text = str(e)
            self.messages.append(_tool_result(i, text))
        if chosen is None:
            return None
        self.pending = chosen
        call = calls[ids.index(chosen)]
        return read_proposal(parse_arguments(call.function.arguments, PROPOSE["name"]))

    def _without_tools(self, ctx: Context, why: str) -> None:
        self.say(f"openai: {why}; asking for the proposal as a JSON object instead")
        self.tools = False
        self._start(ctx)

    # -- the request, its failures and its waits -----------------------------------------

    def _create(self, ctx: Context):
        waited, delay = 0.0, 30.0
        while True:
            try:
                reply = self.client.chat.completions.create(**self._request())
                self.answered = True
                if not reply.choices:
                    raise ProposalError("the server's reply holds no message")
                return reply.choices[0].message
            except openai.APIConnectionError as e:  # timeouts included: no reply at all
                if not self.answered:
                    raise ProposerUnavailable(self._unreachable(e)) from None
                failure = type(e).__name__
            except openai.APIStatusError as e:
                self.answered = True
                if self._adapt(e, ctx):
                    continue
                if not _transient(e):
                    raise ProposerUnavailable(self._explain(e)) from None
                failure = f"{e.status_code} {type(e).__name__}"
            if waited >= self.patience:
                msg = (
                    f"the server at {self.base_url} was unavailable for {waited:.0f} s ({failure})"
                )
                raise ProposerUnavailable(msg)
            self.say(f"openai: {failure}; retrying in {delay:.0f} s")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, 600.0)

    def _request(self) -> dict:
        request = {"model": self.model, "messages": self.messages}
        if self.tools:
            request |= {"tools": openai_tools(), "tool_choice": "required"}
        elif self.json_mode:
            request["response_format"] = {"type": "json_object"}
        return request

    def _adapt(self, e: openai.APIStatusError, ctx: Context) -> bool:
        """Whether the request can be changed to avoid `e` (and was): tools or JSON mode the
        server refuses, a prompt over the model's context."""
        text = _message(e)
        if e.status_code in (400, 413) and (
            e.code == "context_length_exceeded" or CONTEXT_EXCEEDED.search(text)
        ):
            self._trim(ctx)
            return True
        tools_refused = self.tools and not self.tools_seen and e.status_code in (400, 422, 500, 501)
        if tools_refused and re.search(r"tool", text, re.IGNORECASE):
            self._without_tools(ctx, f"the server refused tools ({one_line(text, 120)})")
            return True
        json_refused = not self.tools and self.json_mode and e.status_code in (400, 422)
        if json_refused and re.search(r"response_format|json", text, re.IGNORECASE):
            self.say("openai: the server refused JSON mode; asking without it")
            self.json_mode = False
            return True
        return False

    def _trim(self, ctx: Context) -> None:
        rows = result_rows(ctx.results)
        shown = rows if self.keep_results is None else min(rows, self.keep_results)
        if shown == 0:
            raise ProposerUnavailable(
                f"the prompt is over model {self.model}'s context even with the results table "
                "summarised: use a model with a longer context (or give it one: Ollama's "
                "num_ctx, vLLM's --max-model-len, llama.cpp's --ctx-size)"
            )
        keep = shown // 2
        self.say(f"openai: the prompt is over the model's context; showing the last {keep} "
                 "results (older ones summarised)")  # fmt: skip
        self.keep_results = keep
        self._start(ctx)

    def _unreachable(self, e: openai.APIConnectionError) -> str:
        if isinstance(e, openai.APITimeoutError):
            return (
                f"the server at {self.base_url} sent no reply within {self.request_timeout:.0f} s "
                "and has not answered once since the start: is the model still loading? a "
                "slow model needs a longer --request-timeout"
            )
        return (
            f"cannot reach the server at {self.base_url} ({type(e).__name__}: "
            f"{one_line(str(e))}) and it has not answered once since the start: is it "
            "running? check OPENAI_BASE_URL or --base-url (Ollama: http://localhost:11434/v1)"
        )

    def _explain(self, e: openai.APIStatusError) -> str:
        said = one_line(_message(e))
        if e.status_code == 401:
            fix = ("set OPENAI_API_KEY to a key it accepts" if os.environ.get("OPENAI_API_KEY")
                   else "it needs a key: set OPENAI_API_KEY")  # fmt: skip
            return f"the server at {self.base_url} refused the API key (401: {said}): {fix}"
        if e.status_code == 403:
            return (
                f"the server at {self.base_url} denied access (403: {said}): the key may not "
                f"use model {self.model}; check its permissions or pick another --model"
            )
        if e.status_code == 404 or e.code == "model_not_found":
            return self._unknown_model(said)
        if e.code == "insufficient_quota":
            return f"the account behind OPENAI_API_KEY has no credit left (429: {said})"
        return f"the server at {self.base_url} rejected the request ({e.status_code}: {said})"

    def _unknown_model(self, said: str) -> str:
        try:
            models = self._models()
        except openai.OpenAIError:
            models = []
        if self.model in models or not models:
            return (
                f"the server at {self.base_url} answered 404 ({said}) to a chat completion: is "
                "the base URL right? (it usually ends in /v1)"
            )
        return f"the server at {self.base_url} has no model {self.model!r}: {_pick(models)}"

    def _models(self) -> list[str]:
        page = self.client.with_options(max_retries=1, timeout=30.0).models.list()
        return sorted(m.id for m in page.data)

    def _only_model(self) -> str:
        """No --model: the server's only model, else an error listing them."""
        try:
            models = self._models()
        except openai.APIConnectionError as e:
            raise ProposerUnavailable(self._unreachable(e)) from None
        except openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise ProposerUnavailable(self._explain(e)) from None
            models = []
        if len(models) == 1:
            return models[0]
        if not models:
            raise UserError(f"--agent openai needs --model NAME (the server at {self.base_url} "
                            "lists no models at /models)")  # fmt: skip
        raise UserError(f"--agent openai needs --model: {_pick(models)}")


def _tool_result(call_id: str, text: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _message(e: openai.APIStatusError) -> str:
    """What the server said: OpenAI's {"error": {"message"}} or Ollama's {"error": "..."}."""
    body = e.body
    if isinstance(body, dict):
        body = body.get("message", body)
    return str(body) if body else e.message


def _transient(e: openai.APIStatusError) -> bool:
    """Worth waiting for: rate limits (not an empty account), timeouts, server errors."""
    if e.code == "insufficient_quota":
        return False
    return e.status_code in (408, 409, 429) or e.status_code >= 500


def _pick(models: list[str]) -> str:
    shown = ", ".join(models[:MAX_MODELS_SHOWN])
    more = f" and {len(models) - MAX_MODELS_SHOWN} more" if len(models) > MAX_MODELS_SHOWN else ""
    return f"pick one with --model: {shown}{more}"
