"""Markdown statistics: the word count and the headings (outline) of a Markdown document.

Python standard library only. This module touches no host import, so the plugin's tests
(`python3 -m unittest discover -s plugins/py-mdstats`) check the rules without a component.

The rules follow the Rust `markdown` plugin (pulldown-cmark) on a subset of CommonMark, like
the JavaScript and C examples: ATX headings (`# Title`, optional closing `#`s, `{#id}`
attributes), paragraphs, lists, task lists, block quotes, thematic breaks, fenced code blocks
(not counted), code spans, emphasis, strikethrough, links and images (their text counts),
backslash escapes. Not covered: setext headings, indented code blocks, raw HTML and entities.
"""

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])( *\1){2,} *$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_CLOSING_HASHES = re.compile(r"(^|[ \t]+)#+$")
_ATTRIBUTES = re.compile(r"^(.*?)[ \t]*\{([^{}]*)\}$")
_QUOTE = re.compile(r"^ {0,3}> ?")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)")
_TASK_BOX = re.compile(r"^\[[ xX]\](?:[ \t]+|$)")
_ESCAPABLE = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def analyze(markdown: str) -> dict:
    """Counts and headings of `markdown`: `{"words": n, "headings": [{level, text, id}]}`."""
    headings = []
    words = 0
    fence = None  # the open fence's character and length

    for raw_line in markdown.split("\n"):
        line = _strip_block_markers(raw_line[:-1] if raw_line.endswith("\r") else raw_line)
        fence_match = _FENCE.match(line)
        if fence is not None:
            if (
                fence_match
                and fence_match.group(1)[0] == fence[0]
                and len(fence_match.group(1)) >= fence[1]
                and fence_match.group(2).strip() == ""
            ):
                fence = None
            continue
        if fence_match and not (fence_match.group(1)[0] == "`" and "`" in fence_match.group(2)):
            fence = (fence_match.group(1)[0], len(fence_match.group(1)))
            continue

        if _THEMATIC_BREAK.match(line):
            continue
        heading = _HEADING.match(line)
        if heading:
            content = _CLOSING_HASHES.sub("", heading.group(2) or "", count=1).strip()
            explicit_id = None
            attributes = _ATTRIBUTES.match(content)
            if attributes:
                content = attributes.group(1)
                for token in attributes.group(2).split():
                    if token.startswith("#") and len(token) > 1:
                        explicit_id = token[1:]
            text = _inline_text(content).strip()
            words += len(text.split())
            headings.append((len(heading.group(1)), text, explicit_id))
            continue
        words += len(_inline_text(line).split())
    return {"words": words, "headings": _assign_ids(headings)}


def _strip_block_markers(line: str) -> str:
    """Drop block-quote markers, list markers and task-list boxes in front of a line."""
    while True:
        quote = _QUOTE.match(line)
        if quote:
            line = line[quote.end():]
            continue
        item = _LIST_ITEM.match(line)
        if item and not _THEMATIC_BREAK.match(line):
            line = _TASK_BOX.sub("", line[item.end():], count=1)
            continue
        return line


def _is_word_char(c: str) -> bool:
    return c.isalnum()


def _inline_text(source: str) -> str:
    """The text of inline markup: code spans, emphasis, links and escapes reduced to words."""
    out = []
    i = 0
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\\" and i + 1 < n and source[i + 1] in _ESCAPABLE:
            out.append(source[i + 1])
            i += 2
        elif c == "`":
            run = 1
            while i + run < n and source[i + run] == "`":
                run += 1
            close = source.find("`" * run, i + run)
            if close < 0:
                out.append("`" * run)
                i += run
            else:
                out.append(source[i + run:close])
                i = close + run
        elif c in "*_~":
            run = 1
            while i + run < n and source[i + run] == c:
                run += 1
            before = source[i - 1] if i > 0 else " "
            after = source[i + run] if i + run < n else " "
            # A delimiter touches text on one side; `_` inside a word and `~` alone are literal.
            delimiter = (
                not (before.isspace() and after.isspace())
                and not (c == "_" and _is_word_char(before) and _is_word_char(after))
                and not (c == "~" and run == 1)
            )
            if not delimiter:
                out.append(c * run)
            i += run
        elif c == "!" and i + 1 < n and source[i + 1] == "[":
            i += 1  # an image: its alt text counts like a link's text
        elif c in "[]":
            if c == "]" and i + 1 < n and source[i + 1] == "(":
                close = source.find(")", i + 2)
                i = i + 1 if close < 0 else close + 1
            else:
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _assign_ids(headings: list) -> list:
    """Explicit ids are kept; others are slugs of the text, suffixed `-1`, `-2`... when taken."""
    taken = [explicit for (_, _, explicit) in headings if explicit is not None]
    result = []
    for level, text, explicit in headings:
        heading_id = explicit
        if heading_id is None:
            base = slug(text)
            heading_id = base
            n = 0
            while heading_id in taken:
                n += 1
                heading_id = f"{base}-{n}"
            taken.append(heading_id)
        result.append({"level": level, "text": text, "id": heading_id})
    return result


def slug(text: str) -> str:
    """Lowercase letters and digits, with runs of anything else turned into one `-`."""
    out = []
    for c in text.lower():
        if _is_word_char(c):
            out.append(c)
        elif out and out[-1] != "-":
            out.append("-")
    result = "".join(out).rstrip("-")
    return result or "section"


def fnv1a64(text: str) -> str:
    """FNV-1a (64 bit) of the UTF-8 bytes of `text`, as 16 hex digits: the cache key."""
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"
