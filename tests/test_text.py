"""Untrusted text made safe: rendered markdown holds no tag, link or image from the text and
shows it as written; HTML is escaped; terminals get no control character."""

from __future__ import annotations

import html as stdlib_html
import re

import pytest

from nerlab.text import html, markdown, visible

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
