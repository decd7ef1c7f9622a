"""Tag new text with a saved model (predict.py): plain text to JSONL entity spans with character
offsets, or CoNLL to CoNLL with a prediction column. Words are windowed and predicted exactly as
in training and evaluation (nerlab.tokenize.encode, nerlab.training.predict).

Plain text: each non-blank line is tagged; it is one sentence, or with `split_sentences` a
paragraph split at sentence ends. Words are runs of letters/digits or single other characters
(`BRCA1-associated` -> BRCA1, -, associated), as in the tokenised corpora.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from nerlab.conll import Sentence
from nerlab.errors import UserError
from nerlab.modelio import SavedTagger
from nerlab.tokenize import encode
from nerlab.training import Task, predict

WORD = re.compile(r"[^\W_]+|\S")  # letters/digits, or one other visible character
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
CHUNK = 256  # sentences per prediction call: the progress bar's unit of work
BINARY_PROBE = 8192


@dataclass
class Unit:
    """One sentence of the input: its words, and where each word sits in its line."""

    line: int  # 1-based line of the input
    words: list[str]
    spans: list[tuple[int, int]]  # character offsets within the line


def read_text(path: Path) -> str:
    """The file as text; an empty, blank or binary file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    data = path.read_bytes()
    if b"\x00" in data[:BINARY_PROBE]:
        raise UserError(f"{path}: binary file (NUL bytes), expected UTF-8 text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.start}): binary or another encoding"
        ) from None
    if not text.strip():
        raise UserError(f"{path}: empty file (nothing to tag)")
    return text


def text_units(text: str, split_sentences: bool) -> list[Unit]:
    units = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        starts = [0] + ([m.end() for m in SENTENCE_END.finditer(line)] if split_sentences else [])
        ends = starts[1:] + [len(line)]
        for a, b in zip(starts, ends):
            found = list(WORD.finditer(line, a, b))
            if found:
                units.append(Unit(i, [m.group() for m in found], [m.span() for m in found]))
    return units


def tag_words(
    saved: SavedTagger, sentences: list[list[str]], device: torch.device, progress: bool = True
) -> Iterator[list[str]]:
    """IOB2 tags per sentence, in order, a chunk at a time."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    chunks = range(0, len(sentences), CHUNK)
    bar = tqdm(total=len(sentences), unit="sent", disable=not progress or len(chunks) < 2)
    for start in chunks:
        batch = [Sentence(w, ["O"] * len(w)) for w in sentences[start : start + CHUNK]]
        encoded = encode(batch, saved.tokenizer, saved.cfg.max_length)
        task = Task(saved.view, batch, encoded, [])
        yield from predict(
            saved.model, task, saved.cfg, device, autocast, saved.tokenizer.pad_token_id
        )
        bar.update(len(batch))
    bar.close()


def entities(tags: list[str]) -> list[tuple[int, int, str]]:
    """(first word, last word + 1, type) of each IOB2 mention."""
    out: list[tuple[int, int, str]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") or (tag.startswith("I-") and (not out or out[-1][1] != i)):
            out.append((i, i + 1, tag[2:]))
        elif tag.startswith("I-") and out[-1][2] == tag[2:]:
            out[-1] = (out[-1][0], i + 1, out[-1][2])
    return out


def tag_text(saved: SavedTagger, text: str, device, split_sentences: bool) -> Iterator[str]:
    """One JSON line per tagged input line: its text and entity spans (character offsets),
    each line as soon as its chunk is tagged (a long file's output grows as it goes)."""
    units = text_units(text, split_sentences)
    if not units:
        raise UserError("no words to tag in the input")
    return _json_lines(saved, text.splitlines(), units, device)


def _json_lines(saved: SavedTagger, lines: list[str], units: list[Unit], device) -> Iterator[str]:
    tagged = zip(units, tag_words(saved, [u.words for u in units], device))
    for n, group in itertools.groupby(tagged, key=lambda pair: pair[0].line):
        line, found = lines[n - 1], []
        for unit, tags in group:
            for a, b, etype in entities(tags):
                start, end = unit.spans[a][0], unit.spans[b - 1][1]
                found.append({"start": start, "end": end, "type": etype, "text": line[start:end]})
        yield json.dumps({"line": n, "text": line, "entities": found}, ensure_ascii=False)


def read_conll_tokens(text: str, source: str) -> list[list[str]]:
    """CoNLL lines grouped by sentence (blank lines between); `-DOCSTART-` lines kept apart."""
    groups: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip() or line.split()[0] == "-DOCSTART-":
            if groups[-1]:
                groups.append([])
            if line.strip():
                groups[-1].append(line)
                groups.append([])
            continue
        groups[-1].append(line.rstrip("\r"))
    groups = [g for g in groups if g]
    if not any(not _docstart(g) for g in groups):
        raise UserError(f"{source}: no tokens in the CoNLL input")
    return groups


def tag_conll(saved: SavedTagger, text: str, device, source: str) -> Iterator[str]:
    """The input lines with a prediction column appended (token gold pred: conlleval input
    when the input has gold tags), a blank line after each sentence, as they are tagged."""
    return _conll_lines(saved, read_conll_tokens(text, source), device)


def _conll_lines(saved: SavedTagger, groups: list[list[str]], device) -> Iterator[str]:
    sentences = [g for g in groups if not _docstart(g)]
    words = [[_token(line) for line in g] for g in sentences]
    predicted = iter(tag_words(saved, words, device))
    for g in groups:
        if _docstart(g):
            yield g[0]
            yield ""
            continue
        for line, tag in zip(g, next(predicted)):
            yield f"{line}\t{tag}"
        yield ""


def _docstart(group: list[str]) -> bool:
    return len(group) == 1 and group[0].split()[0] == "-DOCSTART-"


def _token(line: str) -> str:
    return (line.split("\t") if "\t" in line else line.split())[0]
