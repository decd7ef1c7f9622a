"""Untrusted text (a proposer's description, a config, a crash reason) made safe for where it
goes: a terminal, an HTML page, markdown (final.md, the model card), a matplotlib figure.
JSON needs nothing here: json.dumps escapes what it must.

Every function keeps the text readable: characters are escaped, never dropped.
"""

from __future__ import annotations

import html as _html
import re

# Markdown punctuation that starts emphasis, code, links, images, table cells or math (GitHub
# renders `$...$`) anywhere in a line; `<` and `&` are HTML-escaped instead, so no tag or
# entity reaches a renderer (a `>` starts nothing but a quote at the start of a line: `->`
# stays readable). A `_` between two letters or digits starts no emphasis: `ncbi_disease` stays.
MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]|~$]|(?<![^\W_])_|_(?![^\W_]))")
# what starts a block (heading, list, quote, setext underline) at the start of a line
MARKDOWN_LINE_START = re.compile(r"^(\s*(?:\d+(?=[.)]))?)([#+\-=.)>])")
# figures: matplotlib renders `$...$` as mathtext (a parse error on a lone `$`, TeX with usetex)
PLAIN_FIGURE_TEXT = {"text.parse_math": False, "text.usetex": False}


def visible(text: object) -> str:
    """Control and invisible format characters (ESC, NUL, bidi overrides, line breaks) written
    as escapes (`\\x1b`, `\\u202e`): safe for a terminal or a log line, and on one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(text))


def html(text: object) -> str:
    """For an HTML page: escaped (`<`, `>`, `&`, quotes) and visible."""
    return _html.escape(visible(text), quote=True)


def markdown(text: object) -> str:
    """Inline markdown (a table cell, a sentence): shows the text as written. HTML is escaped
    and markdown punctuation backslash-escaped, so no tag, link, image, emphasis or table cell
    border can come out of it, on GitHub, the Hugging Face hub or any CommonMark renderer."""
    escaped = visible(text).replace("&", "&amp;").replace("<", "&lt;")
    escaped = MARKDOWN_SPECIAL.sub(r"\\\1", escaped)
    return MARKDOWN_LINE_START.sub(r"\1\\\2", escaped)
