"""What a streaming reply's frames put on the page is safe whatever the model writes: the open
tail is drawn by the app's own code (wrappers, classes, ids, a code block's language label, words
rendered as they will render), not by the sanitiser's pass over a finished block, so its HTML is
held here to the same rules as a settled block's: only the tags and attributes the sanitiser
keeps, no event handler or style, and links and images only to http, https or mailto (or
relative) addresses. Text written to look like markup, in every kind of block and split
anywhere, must come out as text."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.fragments import CONTENT, tail_html, text_step
from chat.markdown import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, render_markdown
from chat.progressive import ProgressiveRenderer
from tests.test_progressive import split

# What a model may write to break out of its text: tags, handlers, script addresses in links,
# images and autolinks, entities that spell tags, quotes that would end an attribute
PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)",
    "[x](javascript:alert(1))",
    '[x](JaVaScRiPt:alert(1) "t")',
    "[x](<javascript:alert(1)>)",
    '[x](https://a.example/" onclick="alert(1))',
    "![i](javascript:alert(1))",
    "![i](data:text/html;base64,PHNjcmlwdD4=)",
    "<javascript:alert(1)>",
    '<https://a.example/"onmouseover=alert(1)>',
    "<vbscript:msgbox(1)>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "**<b onclick=alert(1)>bold</b>**",
    "*<i>em*",
    "`<script>`",
    "~~<s style=x>~~",
    "<!-- x --><style>*{}</style>",
    "[ref]\n\n[ref]: javascript:alert(1)",
    "<a href='javascript:alert(1)'>a</a>",
    "<iframe src=//a.example>",
    "\\<script>",
]
WORDS = ["word", "two words", "**bold**", "*em*", "`code`", "_x_", "[ok](https://a.example)", "é"]
# Where the text stands while it streams: each kind of open tail
PREFIXES = [
    "",
    "# ",
    "- ",
    "1. ",
    "> ",
    "> - ",
    "- a\n  - ",
    "1. a\n\n   ",
    "| a | b |\n| --- | :-: |\n| ",
    "Here:\n| ",
    "```",
    "```py\n",
    "- a\n\n  ```",
    "    ",
]
SEPARATORS = st.sampled_from([" ", "\n", "\n\n", " | ", "\n- ", "\n> "])


@st.composite
def hostile_documents(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(PAYLOADS + WORDS), min_size=1, max_size=5))
    text = draw(st.sampled_from(PREFIXES)) + parts[0]
    for part in parts[1:]:
        text += draw(SEPARATORS) + part
    return text


SCHEMES = ("http:", "https:", "mailto:")
# The attributes the page's own wrappers carry besides the sanitiser's, on any element
WRAPPER_ATTRIBUTES = {"id", "class", "hx-swap-oob"}
# A hypertext reference's scheme, as a browser reads it (it drops tabs and newlines, and
# ignores case and leading blanks and control characters)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def unsafe_parts(html: str) -> list[str]:
    """What in `html` the sanitiser would not let through to the page."""
    parser = _Elements()
    parser.feed(html)
    parser.close()
    found = [f"comment {c!r}" for c in parser.comments]
    for tag, attrs in parser.found:
        if tag not in ALLOWED_TAGS:
            found.append(f"<{tag}>")
            continue
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | WRAPPER_ATTRIBUTES | {"start", "rel"}
        for name, value in attrs:
            if name not in allowed:
                found.append(f"<{tag} {name}>")
            elif name in ("href", "src") and value is not None:
                address = re.sub(r"[\t\n\r]", "", value).lstrip("\x00- ").lower()
                scheme = _SCHEME.match(address)
                if scheme is not None and f"{scheme.group(1)}:" not in SCHEMES:
                    found.append(f"<{tag} {name}={value!r}>")
    return found


def test_the_checker_finds_what_it_looks_for() -> None:
    assert unsafe_parts('<p><a href="https://a.example">a</a> <code class="x">y</code></p>') == []
    assert unsafe_parts('<a href="/c/1">a</a><a href="#x">b</a>') == []
    assert unsafe_parts("<script>x</script>") == ["<script>"]
    assert unsafe_parts('<img src="x" onerror="y">') == ["<img onerror>"]
    assert unsafe_parts('<a href=" JavaScript:x">a</a>') == ["<a href=' JavaScript:x'>"]
    assert unsafe_parts('<a href="java\tscript:x">a</a>') == ["<a href='java\\tscript:x'>"]
    assert unsafe_parts('<span style="x">a</span>') == ["<span style>"]
    assert unsafe_parts("<!-- x -->") == ["comment ' x '"]


def test_the_sanitised_render_of_the_payloads_passes() -> None:
    """The checker's rules are the sanitiser's: every finished render passes them."""
    for payload in PAYLOADS:
        for prefix in PREFIXES:
            assert unsafe_parts(render_markdown(prefix + payload)) == [], (prefix, payload)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_every_frame_of_a_hostile_reply_is_safe(data: st.DataObject) -> None:
    """However a reply full of would-be markup is split, every step's frame and the tail a
    page loaded mid-stream draws hold only what the sanitiser keeps, and the finished reply's
    render too."""
    text = data.draw(hostile_documents())
    renderer = ProgressiveRenderer()
    fed = ""
    for piece in data.draw(split(text)):
        step = renderer.feed(piece)
        fed += piece
        frame = text_step(CONTENT, 5, step, renderer.tail)
        assert unsafe_parts(frame) == [], (fed, frame)
        tail = tail_html(CONTENT, 5, renderer.tail)
        assert unsafe_parts(tail) == [], (fed, tail)
    end, whole = renderer.finish()
    assert unsafe_parts(text_step(CONTENT, 5, end, renderer.tail)) == []
    assert unsafe_parts(whole) == []


def test_each_payload_fed_by_character_in_each_kind_of_block_is_safe() -> None:
    for payload in PAYLOADS:
        for prefix in PREFIXES:
            text = f"{prefix}a {payload} b **c** `d`"
            renderer = ProgressiveRenderer()
            for at, character in enumerate(text):
                step = renderer.feed(character)
                frame = text_step(CONTENT, 5, step, renderer.tail)
                assert unsafe_parts(frame) == [], (text[: at + 1], frame)
                tail = tail_html(CONTENT, 5, renderer.tail)
                assert unsafe_parts(tail) == [], (text[: at + 1], tail)
