"""Tag text with a saved model (`train.py --save-model DIR` or `final.py --export DIR`).

    python predict.py --model DIR notes.txt                  # one sentence per line -> JSONL
    python predict.py --model DIR abstracts.txt --sentences  # paragraphs split into sentences
    python predict.py --model DIR test.conll --out pred.conll   # CoNLL in -> CoNLL out

Plain text gives one JSON line per input line: {"line", "text", "entities": [{"start", "end",
"type", "text"}]}, offsets in characters within the line. CoNLL (a .conll/.iob/.bio/.tsv file,
or --format conll) gives the input lines with the predicted tag appended as the last column.
Long sentences are windowed as in training; a progress bar shows on long files. Output is
written as it is tagged; --out's directory is created when missing.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from nerlab.errors import UserError, run_cli
from nerlab.modelio import load_tagger
from nerlab.tagging import read_text, tag_conll, tag_text
from nerlab.training import pick_device

CONLL_SUFFIXES = (".conll", ".iob", ".bio", ".tsv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("input", type=Path, help="a text or CoNLL file")
    p.add_argument("--model", type=Path, required=True, help="a saved or exported model directory")
    p.add_argument(
        "--format",
        choices=["auto", "text", "conll"],
        default="auto",
        help="auto: conll for .conll/.iob/.bio/.tsv, else text",
    )
    p.add_argument("--sentences", action="store_true", help="split text lines into sentences")
    p.add_argument("--out", type=Path, help="default: standard output")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    args = p.parse_args(argv)
    text = read_text(args.input)  # empty or binary input fails before the model loads
    if args.out:
        make_parent(args.out)
    device = pick_device(args.device)
    saved = load_tagger(args.model, device)
    conll = args.format == "conll" or (
        args.format == "auto" and args.input.suffix.lower() in CONLL_SUFFIXES
    )
    if conll:
        lines = tag_conll(saved, text, device, str(args.input))
    else:
        lines = tag_text(saved, text, device, args.sentences)
    with output(args.out) as out:
        for line in lines:
            out.write(line + "\n")
    return 0


def make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {path}: cannot create its directory ({e.strerror or e})") from None


def output(path: Path | None):
    """The output, line-buffered: each tagged line is on disk as soon as it is written."""
    if path is None:
        return nullcontext(sys.stdout)
    try:
        return path.open("w", encoding="utf-8", buffering=1)
    except OSError as e:
        raise UserError(f"--out {path}: cannot write it ({e.strerror or e})") from None


if __name__ == "__main__":
    run_cli(main)
