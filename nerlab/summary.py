"""The summary block train.py prints last: a line `---`, then one `key: value` per line.

It is the contract between train.py and whoever runs it (a person, a coding agent with grep,
agent_loop.py, the sweep): always the same keys, crash or not.
"""

from __future__ import annotations

KEYS = [
    "dev_f1", "dev_precision", "dev_recall", "dev_f1_std", "f1_seeds", "eval_split", "repeats",
    "train_seconds", "paused_seconds", "startup_seconds", "eval_seconds", "total_seconds", "steps",
    "tokens_per_sec", "peak_memory_gb", "device", "torch_version", "transformers_version",
    "python_version", "gpu_name", "status", "cause",
]  # fmt: skip
# torch_version ... gpu_name: what the numbers were computed with (nerlab.environment);
# gpu_name is empty off CUDA.
# `dev_*` keys keep their names when eval_split is test (a final report): eval_split says which.
# f1_seeds: the F1 of each seed, comma-separated (dev_f1 is their mean).
# paused_seconds: steps' time judged a pause (nerlab.budget), over all seeds, outside the budget.
# cause: a crash's cause by a stable name where `reason` varies with the config (data-missing:
# the reason names the config's corpora), else empty; the loop compares causes, not reasons.


WIDTH = 22  # the longest key with its colon (`transformers_version:`) and a space


def format_summary(values: dict) -> str:
    lines = ["---"]
    for key in KEYS + [k for k in values if k not in KEYS and k != "reason"]:
        v = values.get(key, "")
        value = f"{v:.6f}" if isinstance(v, float) else v
        lines.append(f"{key + ':':<{WIDTH}}{value}".rstrip())
    if values.get("reason"):
        lines.append(f"{'reason:':<{WIDTH}}{values['reason']}")
    return "\n".join(lines)


def parse_summary(text: str) -> dict[str, str] | None:
    """The last summary block in `text` (e.g. a run log), or None if there is none."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return None
    out = {}
    for line in lines[starts[-1] + 1 :]:
        key, sep, value = line.partition(":")
        if sep and key and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out if "status" in out else None
