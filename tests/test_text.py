"""Untrusted text made safe: rendered markdown holds no tag, link or image from the text and
shows it as written; HTML is escaped; terminals get no control character."""

from __future__ import annotations

import html as stdlib_html
import re

import pytest
import yaml

from nerlab.agents import Proposal
from nerlab.loop import LoopOptions, ResearchLoop
from nerlab.results import read_results
from nerlab.text import html, markdown, visible
from tests.helpers import BASE, make_repo

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[x](javascript:alert(1))",
    "![pic](https://evil.example/p.png)",
    "<https://evil.example>",
    "lr $x^ 50% | bs 64 | *bold* _it_ __b__ a_b_c `code` ~~s~~ \\[no]",
    "# heading",
    "> quote -> arrow",
    "- item",
    "1. item",
    "a\x1b[31mred\x1b[0m\x00\u202etxt.exe\nsecond line",
    "a & b &amp; c",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_renders_the_text_as_written_and_nothing_else(text):
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")
    out = md.render(f"| a | b |\n|---|---|\n| x | {markdown(text)} |\n\nsee {markdown(text)}")
    assert not re.search(r"<(?!/?(table|thead|tbody|tr|th|td|p)>)", out)  # no other tag
    assert out.count("<td>") == 2  # a `|` in the text split no cell
    shown = re.findall(r"<td>(.*?)</td>", out)[1]
    assert stdlib_html.unescape(shown) == visible(text)


def test_html_and_terminal():
    assert html('<img onerror="x">') == "&lt;img onerror=&quot;x&quot;&gt;"
    assert visible("a\x1b[2Jb\x07\u202e\n") == "a\\x1b[2Jb\\x07\\u202e\\n"
    assert all(c.isprintable() for t in HOSTILE for c in visible(t))
    assert visible("F1 — ok: ΔF1 $x$") == "F1 — ok: ΔF1 $x$"


class Hostile:
    """A proposer whose description would drive a terminal (clear screen, bell, bidi)."""

    name = "hostile"
    slow = False
    description = "lr 0.01 \x1b[2J\x1b[31m\x07\u202e <script>"

    def propose(self, ctx, error=None):
        raw = {**BASE, "optim": {**BASE["optim"], "lr": 0.01}}
        return Proposal(yaml.safe_dump(raw), self.description)

    def observe(self, proposal, f1):
        pass


def test_the_loop_prints_descriptions_without_control_characters(tmp_path, synthetic_home,
                                                                  monkeypatch):  # fmt: skip
    monkeypatch.setenv("NER_AR_HOME", str(synthetic_home))
    repo = make_repo(tmp_path / "proj", fake_train=True)
    said: list[str] = []
    ResearchLoop(repo, LoopOptions(tag="t", max_experiments=2), Hostile(), said.append).run()
    assert any("\\x1b[2J" in line for line in said)  # shown, escaped
    assert all(c.isprintable() for line in said for c in line)
    rows = read_results(repo / "results.tsv")  # the data keeps the text as written
    assert rows["description"].iloc[1].startswith(Hostile.description)
