"""CoNLL reading and BIO tag handling.

Accepts what real files contain: TAB- or space-separated columns (token first, tag last),
`-DOCSTART-` lines, CRLF line ends, runs of blank lines, IOB1 tags (converted to IOB2).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from nerlab.errors import UserError

TAG_RE = re.compile(r"^(O|[BI]-\S+)$")


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]


def read_conll(path: Path) -> tuple[list[Sentence], int]:
    """Read one CoNLL file; return its sentences (IOB2) and how many tags were IOB1-repaired."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as f:  # text mode turns CRLF into LF
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if tokens:
                    sentences.append(Sentence(tokens, tags))
                    tokens, tags = [], []
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if parts[0].strip() == "-DOCSTART-":
                continue
            if len(parts) < 2:
                raise UserError(f"{path}:{lineno}: one column, expected TOKEN<TAB>TAG: {line!r}")
            token, tag = parts[0].strip(), parts[-1].strip()
            if not token:
                raise UserError(f"{path}:{lineno}: empty token: {line!r}")
            if not TAG_RE.match(tag):
                raise UserError(f"{path}:{lineno}: tag {tag!r} is not O, B-<type> or I-<type>")
            tokens.append(token)
            tags.append(tag)
    if tokens:
        sentences.append(Sentence(tokens, tags))
    if not sentences:
        raise UserError(f"{path}: empty file (no sentences)")
    converted = 0
    for s in sentences:
        s.tags, n = to_iob2(s.tags)
        converted += n
    return sentences, converted


def to_iob2(tags: list[str]) -> tuple[list[str], int]:
    """IOB1 -> IOB2: an I-X that does not continue an X mention becomes B-X. Returns (tags, n)."""
    out: list[str] = []
    converted = 0
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            tag = "B-" + tag[2:]
            converted += 1
        out.append(tag)
        prev = tag
    return out, converted


def count_mentions(sentences: list[Sentence]) -> Counter[str]:
    """Entity mentions per type (IOB2: one B- tag per mention)."""
    return Counter(t[2:] for s in sentences for t in s.tags if t.startswith("B-"))


def restrict_tags(tags: list[str], keep: frozenset[str]) -> list[str]:
    """Narrow to some entity types: tags of other types become O."""
    return [t if t == "O" or t[2:] in keep else "O" for t in tags]


def write_conll(path: Path, sentences: list[Sentence]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for s in sentences:
            f.writelines(f"{tok}\t{tag}\n" for tok, tag in zip(s.tokens, s.tags))
            f.write("\n")
