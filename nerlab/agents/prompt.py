"""What every LLM proposer tells the model and how it reads the answer: one module, so the
Claude and the OpenAI-compatible proposers can never drift apart.

System prompt = program.md. Each experiment starts a fresh conversation whose first message
(`render`) shows the current best config, the results so far, the experiments in flight, the
corpora and the schema. The model answers with one of two tools (`TOOLS`, converted to each
API's format): `propose_experiment` (config YAML + description) or `read_run_log` (the tail of
an earlier run's log, by experiment number only: no path from the model is ever opened). A
model without tool calling is asked for the proposal as one JSON object (`ASK_JSON`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from nerlab.agents import Context, Proposal, ProposalError
from nerlab.errors import UserError
from nerlab.redact import redact

MAX_LOG_LINES = 200

PROPOSE = {
    "name": "propose_experiment",
    "description": (
        "Propose the next experiment: the complete config file (YAML, same schema as the "
        "current config) and a one-line description of the change and why."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "config_yaml": {"type": "string", "description": "the whole config, as YAML"},
            "description": {"type": "string", "description": "one line: what and why"},
        },
        "required": ["config_yaml", "description"],
    },
}
READ_LOG = {
    "name": "read_run_log",
    "description": "The last lines of an earlier experiment's train.py log (e.g. a crash).",
    "parameters": {
        "type": "object",
        "properties": {
            "experiment": {"type": "integer", "description": "experiment number"},
            "lines": {"type": "integer", "description": f"how many lines (max {MAX_LOG_LINES})"},
        },
        "required": ["experiment"],
    },
}
TOOLS = [PROPOSE, READ_LOG]

ASK_TOOL = "Propose the next experiment with the propose_experiment tool."
ASK_JSON = (
    "Answer with one JSON object and nothing else, with two string fields: "
    '{"config_yaml": "<the whole config, as YAML>", "description": "<one line: what and why>"}'
)


def load_program(root: Path) -> str:
    """The system prompt: the research protocol in program.md."""
    path = root / "program.md"
    if not path.is_file():
        raise UserError(f"{path} is missing: the proposer's system prompt is program.md")
    return path.read_text()


def anthropic_tools() -> list[dict]:
    return [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in TOOLS
    ]


def openai_tools() -> list[dict]:
    return [{"type": "function", "function": t} for t in TOOLS]


def render(ctx: Context, ask: str = ASK_TOOL, keep_results: int | None = None) -> str:
    """The experiment's first message. `keep_results` trims the results table to its last
    rows (the older ones summarised) for a model whose context is too short for all of it;
    the config and the schema are never trimmed."""
    best = f"{ctx.best_f1:.4f} ({ctx.best_description})" if ctx.best_f1 is not None else "none"
    return (
        f"Experiment {ctx.experiment}. Best dev F1 so far: {best}.\n\n"
        f"## Current best config (configs file you edit)\n```yaml\n{ctx.config_yaml}```\n\n"
        f"## Results so far\n```\n{trim_results(ctx.results, keep_results) or '(none yet)'}\n"
        "```\n\n"
        + (
            "## Running now (do not propose these again; their results come later)\n"
            f"{ctx.running}\n\n"
            if ctx.running
            else ""
        )
        + f"## Corpora\n{ctx.corpora}\n\n"
        f"## Config schema (JSON schema)\n```json\n{ctx.schema}\n```\n\n"
        f"{ask}"
    )


def result_rows(results: str) -> int:
    return max(0, len(results.splitlines()) - 1)  # below the header


def trim_results(results: str, keep: int | None) -> str:
    """The header, a one-line summary of all but the last `keep` rows, and those rows."""
    lines = results.splitlines()
    header, rows = lines[:1], lines[1:]
    if keep is None or len(rows) <= keep:
        return results
    old, recent = rows[: len(rows) - keep], rows[len(rows) - keep :]
    fields = [r.split("\t") + ["", "", ""] for r in old]  # commit, dev_f1, status, description
    counts = {s: sum(f[2] == s for f in fields) for s in ("keep", "discard", "crash")}
    best = max(((f1, f[3]) for f in fields if (f1 := _float(f[1])) is not None), default=None)
    summary = (
        f"({len(old)} older experiments, summarised: {counts['keep']} keep, "
        f"{counts['discard']} discard, {counts['crash']} crash"
        + (f"; best of them {best[0]:.4f}: {best[1]}" if best else "")
        + ")"
    )
    return "\n".join([*header, summary, *recent])


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_proposal(data: object) -> Proposal:
    """A proposal from the propose_experiment arguments (or the JSON answer without tools)."""
    if not isinstance(data, dict):
        raise ProposalError("propose_experiment input is not an object")
    config, description = data.get("config_yaml"), data.get("description")
    if not isinstance(config, str) or not config.strip():
        raise ProposalError("propose_experiment needs config_yaml: the whole config as YAML")
    if not isinstance(description, str) or not description.strip():
        raise ProposalError("propose_experiment needs a one-line description")
    return Proposal(config, " ".join(description.split()))


def parse_arguments(text: str | None, tool: str) -> dict:
    """A tool call's JSON arguments (OpenAI sends them as a string the model wrote)."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ProposalError(f"{tool} arguments are not valid JSON ({e.msg} at {e.pos})") from None
    if not isinstance(data, dict):
        raise ProposalError(f"{tool} arguments must be a JSON object")
    return data


def parse_json_answer(text: str | None) -> Proposal:
    """The proposal in a reply without tools: one JSON object, perhaps in a code fence."""
    body = (text or "").strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ProposalError("the reply holds no JSON object with config_yaml and description")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as e:
        raise ProposalError(f"the reply's JSON object is not valid JSON ({e.msg})") from None
    return read_proposal(data)


def read_run_log(arguments: dict, ctx: Context) -> str:
    """The read_run_log tool: an experiment's log tail, by number only."""
    try:
        n = int(arguments.get("experiment"))
        lines = max(1, min(int(arguments.get("lines", 50)), MAX_LOG_LINES))
    except (TypeError, ValueError):
        return "experiment must be an integer"
    return ctx.log_tail(n, lines)


def run_tool(name: str, arguments: dict, ctx: Context) -> str:
    if name != READ_LOG["name"]:
        return f"unknown tool {name!r}"
    return read_run_log(arguments, ctx)


def one_line(text: str, limit: int = 300) -> str:
    """A server's message as one short line, secrets removed."""
    line = re.sub(r"\s+", " ", redact(text)).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."
