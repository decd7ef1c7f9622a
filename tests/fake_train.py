"""A stand-in for train.py in loop tests: same CLI and summary block, no model, instant.

dev F1 = 10 * lr (capped at 0.99) + 0.001 * seed, so a test picks outcomes through the config.
lr == 0.0123 hangs (for timeout tests); FAKE_TRAIN_SLEEP=S sleeps S seconds in runs of configs
written by the loop (for kill tests); lr >= 1 crashes like a NaN loss; lr == 0.0321 kills its
parent process (a Ray worker killed from outside); optim.weight_decay >= 0.05 sleeps
100 * weight_decay seconds (to order completions in parallel tests). A data root whose
manifest is gone (deleted mid-night) crashes with train.py's own reason and cause, when
FAKE_TRAIN_CHECK_DATA is set (the check costs a second per run). `--save-model DIR` writes two
small files there.
"""

import argparse
import os
import signal
import time
from pathlib import Path

import yaml

from nerlab.config import config_hash
from nerlab.summary import format_summary

p = argparse.ArgumentParser()
p.add_argument("--config", default="configs/current.yaml")
p.add_argument("--set", action="append", default=[])
p.add_argument("--save-model")
args = p.parse_args()
text = Path(args.config).read_text()
cfg = yaml.safe_load(text)
for item in args.set:
    key, _, value = item.partition("=")
    cfg[key] = yaml.safe_load(value)
lr = float(cfg["optim"]["lr"])
if lr == 0.0123:
    time.sleep(3600)
if lr == 0.0321:
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(3600)  # PR_SET_PDEATHSIG ends this when the parent dies
if cfg["optim"].get("weight_decay", 0) >= 0.05:
    time.sleep(100 * cfg["optim"]["weight_decay"])
if text.startswith("# agent_loop.py") and os.environ.get("FAKE_TRAIN_SLEEP"):
    # train.py's progress line in a log (the live page shows it)
    print(f"stage 1 | step 5 | loss (10-step mean) 0.5000 | lr {lr:.2e} | 100 tok/s | 5 steps "
          "left", flush=True)  # fmt: skip
    time.sleep(float(os.environ["FAKE_TRAIN_SLEEP"]))
status, reason = ("crash", "loss is nan at step 3") if lr >= 1 else ("ok", "")
cause = ""
home = Path(os.environ.get("NER_AR_HOME", "/nonexistent"))
root = home / ("synthetic" if cfg.get("data") == "synthetic" else "data")
if os.environ.get("FAKE_TRAIN_CHECK_DATA") and not (root / "manifest.json").exists():
    from nerlab.config import parse_config_text
    from nerlab.errors import UserError

    try:
        parsed = parse_config_text(text)
        parsed.store().require(parsed.corpora())
    except UserError as e:
        status, reason, cause = "crash", str(e), getattr(e, "cause", "")
f1s = [min(0.99, 10 * lr) + 0.001 * (cfg.get("seed", 0) + r) for r in range(cfg.get("repeats", 1))]
for r, f1 in enumerate(f1s):
    print(f"seed {cfg.get('seed', 0) + r}: dev_f1 {f1:.6f} | steps 10")
ok = status == "ok"
summary = {
    "dev_f1": sum(f1s) / len(f1s) if ok else 0.0,
    "dev_precision": 0.0,
    "dev_recall": 0.0,
    "dev_f1_std": 0.0,
    "f1_seeds": ",".join(f"{f:.6f}" for f in f1s) if ok else "",
    "eval_split": "dev",
    "repeats": len(f1s),
    "train_seconds": 1.0,
    "total_seconds": 1.0,
    "steps": 10,
    "tokens_per_sec": 1.0,
    "peak_memory_gb": 0.1,
    "device": "cpu",
    "config_sha256": config_hash(text),
    "status": status,
    "cause": cause,
    "reason": reason,
}
if ok and args.save_model:
    (Path(args.save_model) / "tokenizer").mkdir(parents=True, exist_ok=True)
    (Path(args.save_model) / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (Path(args.save_model) / "tokenizer" / "vocab.txt").write_text("[PAD]\nbrca1\n")
print(format_summary(summary))
raise SystemExit(0 if ok else 1)
