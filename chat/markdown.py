"""Safe markdown: markdown-it-py without raw HTML, highlighted by Pygments, cleaned by nh3.

`render_markdown` renders a whole text; `render_blocks` renders a run of complete top-level
blocks with the link references seen so far, which is how `chat.progressive` renders a reply
while it streams. Both give the same HTML for the same blocks.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Sequence
from html import escape
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import find_lexer_class_by_name
from pygments.util import ClassNotFound

from .flanking import cjk_friendly

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "a",
    "img",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "span",
    "div",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class", "title"},
    "div": {"class"},
    "pre": {"class"},
    "ol": {"start"},
    "th": {"class"},
    "td": {"class"},
}
# A table column's alignment (":--", "--:", ":-:" in its delimiter row), drawn by a class of
# its cells: markdown-it writes it as a style attribute, which the page's CSP would refuse.
CELL_ALIGNMENTS = {f"align-{side}" for side in ("left", "center", "right")}
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="")
# The white space markdown-it trims (its own set since markdown-it-py 4; Python's strip() takes
# more, \v and \x85 among them)
MD_TRIMMED: str | None = getattr(
    importlib.import_module("markdown_it.common.utils"), "MD_TRIM_CHARS", None
)


def _highlight(code: str, language: str, _attrs: object) -> str:
    # markdown-it's language name may be only what Python's split() takes for white space
    # ("\x85", "\x1c"): no language, as for none.
    words = language.split()
    lexer = _lexer_class(words[0]) if words else None
    if lexer is None:
        return ""  # markdown-it escapes it as plain code
    # A lexer of its own for each block: some keep state on themselves while they run
    # (Modula-2's dialect, TNT's tokens), which a shared one carried into other renders.
    return highlight(code, lexer(), _FORMATTER)


@functools.lru_cache(maxsize=256)
def _lexer_class(name: str) -> type[Lexer] | None:
    """Pygments' lexer for a language name, found once (finding it by name costs 20-50 µs,
    more than making one or highlighting a short block); None for a name it does not know."""
    try:
        return find_lexer_class_by_name(name)
    except ClassNotFound:
        return None


def same_origin_path(url: str) -> bool:
    """Whether `url` is a path on this site: the only images a reply shows (a model's reply
    must not make the browser call another host)."""
    parts = urlsplit(url)
    return not (parts.scheme or parts.netloc) and url.startswith("/")


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src" and not same_origin_path(value):
        return None
    if tag in ("th", "td"):
        return value if attribute == "class" and value in CELL_ALIGNMENTS else None
    if attribute == "class":
        return " ".join(c for c in value.split() if c.replace("-", "").replace("_", "").isalnum())
    return value


def code_frame_open(language: str) -> str:
    """The frame around a fenced code block, with its language label: the same while the
    block streams (unhighlighted) and once it is rendered, so nothing moves when it closes."""
    label = f'<div class="code-lang">{escape(language)}</div>' if language else ""
    return f'<div class="code-block">{label}'


CODE_FRAME_CLOSE = "</div>"


def fence_language(info: str) -> str:
    """The language named by a code fence's info string ("python" in ```` ```python x=1 ````)."""
    words = unescapeAll(info).split()
    return words[0] if words else ""


def _fence(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    code = RendererHTML.fence(self, tokens, idx, options, env)
    return code_frame_open(fence_language(tokens[idx].info)) + code + CODE_FRAME_CLOSE


def _code_block(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    """Indented code, in the fenced code's frame (its Copy code button's place): the page framed
    it only on load, so a block that settled as a reply streamed had none until a reload."""
    code = RendererHTML.code_block(self, tokens, idx, options, env)
    return code_frame_open("") + code + CODE_FRAME_CLOSE


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image on this site, drawn; another host's (or one whose address is still being
    written) a link to it, its text the image's (`IMAGE_TEXT` if it has none): the page loads
    nothing from elsewhere, and a broken image's icon beside its text said less. In a link
    (a badge: "[![build](https://...)](https://...)"), its text, as an image's, in that link."""
    token = tokens[idx]
    src = str(token.attrs.get("src", ""))
    if same_origin_path(src):
        return RendererHTML.image(self, tokens, idx, options, env)
    text = self.renderInlineAsText(token.children or [], options, env)
    text = escapeHtml(text if text.strip() else IMAGE_TEXT)
    title = token.attrs.get("title")
    titled = f' title="{escapeHtml(str(title))}"' if title else ""
    opened = sum(t.type == "link_open" for t in tokens[:idx])
    if opened > sum(t.type == "link_close" for t in tokens[:idx]):
        return f'<span class="image-link"{titled}>{text}</span>'  # (no link in a link)
    return f'<a href="{escapeHtml(src)}" class="image-link"{titled}>{text}</a>'


IMAGE_TEXT = "image"


def _cell_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    """A table cell's opening tag, its column's alignment a class (see `CELL_ALIGNMENTS`)."""
    token = tokens[idx]
    style = token.attrs.get("style")
    if isinstance(style, str) and style.startswith("text-align:"):
        token.attrs = {"class": f"align-{style.removeprefix('text-align:')}"}
    return self.renderToken(tokens, idx, options, env)


# Chinese and Japanese: their ideographs, kana, bopomofo, punctuation and full-width forms
# (Hangul is not: Korean puts spaces between words). `static/chat/chat.js` has the same set.
JOINED_ACROSS_LINES = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u31a0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff01-\uff60\uffe0-\uffe6"
    "\U00020000-\U0003fffd"
)
_JOINED_ACROSS_LINES = re.compile(f"[{JOINED_ACROSS_LINES}]")
_TEXT_TOKENS = ("text", "text_special", "code_inline")


def _character_beside(tokens: Sequence[Token], idx: int, step: int) -> str:
    """The text's character next to `tokens[idx]` (before it, or after it; a code span's
    too), past the marks between (an emphasis, a link), or "" if something else stands there
    (an image, a line break)."""
    idx += step
    while 0 <= idx < len(tokens):
        token = tokens[idx]
        if token.type in _TEXT_TOKENS:
            if token.content:
                return token.content[-1] if step < 0 else token.content[0]
        elif not token.type.endswith(("_open", "_close")):
            return ""
        idx += step
    return ""


def _softbreak(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    """A line end inside a paragraph: nothing between two Chinese or Japanese characters, as
    CSS Text's segment break rule has it, which Chromium does not apply (it drew a space in
    the middle of a sentence, where a model wrapped a line: "第一行\n第二行"); a line end,
    which the browser draws as a space, everywhere else."""
    before, after = _character_beside(tokens, idx, -1), _character_beside(tokens, idx, 1)
    if _JOINED_ACROSS_LINES.match(before) and _JOINED_ACROSS_LINES.match(after):
        return ""
    return RendererHTML.softbreak(self, tokens, idx, options, env)


@functools.cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("js-default", {"html": False, "highlight": _highlight}).use(cjk_friendly)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("image", _image)
    md.add_render_rule("softbreak", _softbreak)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


@functools.cache
def block_parser() -> MarkdownIt:
    """Finds the top-level blocks of a text without parsing their inline content."""
    return MarkdownIt("js-default", {"html": False}).disable("inline")


def render_markdown(text: str) -> str:
    return render_blocks(text, {})


def render_blocks(text: str, env: dict[str, Any]) -> str:
    """Render `text`; link reference definitions found in it are added to `env`."""
    html = _parser().render(text, env)
    return _clean(html)


class RenderedList(NamedTuple):
    html: str
    loose: bool  # its items' paragraphs drawn as paragraphs
    items: int  # how many items it has


def render_list(text: str, env: dict[str, Any], *, loose: bool) -> RenderedList | None:
    """Render `text`, the first items of a top-level list that goes on after them, as the
    one list they make; drawn `loose` (their paragraphs as paragraphs) if asked or if they
    make it so, as markdown-it decides with one more item after them (a blank line before
    it makes the list loose). None if `text` is not one list alone."""
    start = _ITEM_MARKER.match(text)
    if start is None:
        return None
    delimiter, bullet = start.groups()
    next_item = f"1{delimiter} x\n" if delimiter else f"{bullet} x\n"
    text = text if text.endswith("\n") else text + "\n"
    md = _parser()
    tokens = md.parse(text + next_item, env)
    if len(tokens) < 7 or tokens[0].type not in _LIST_OPENS or tokens[-1].level != 0:
        return None
    if any(t.level == 0 for t in tokens[1:-1]):
        return None
    after = tokens[-6]  # the item after them: its paragraph is hidden if the list is tight
    if (
        after.type != "list_item_open"
        or after.level != 1
        or after.map != [text.count("\n"), text.count("\n") + 1]
    ):
        return None
    loose = loose or not tokens[-5].hidden
    del tokens[-6:-1]
    if loose:  # markdown-it hides a tight list's paragraphs (the items' own only)
        for token in tokens:
            if token.level == 2 and token.type.startswith("paragraph_"):
                token.hidden = False
    items = sum(1 for t in tokens if t.type == "list_item_open" and t.level == 1)
    return RenderedList(_clean(md.renderer.render(tokens, md.options, env)), loose, items)


def render_words(text: str, env: dict[str, Any]) -> str | None:
    """`text`, a run of words in a paragraph still being written, rendered inline as the
    paragraph will render them, or None if a mark in it is left open (an emphasis, a
    strikethrough, a code span or a link that text after it may still close or open). A run
    whose marks all closed renders the same whatever text follows it (after white space)."""
    tokens = _inline_tokens(text, env)
    for token in tokens:
        if token.type == "text" and _OPEN_MARK.search(token.content) and not _inert(token.content):
            return None
    return _render_inline_tokens(tokens, env)


def render_cell(text: str, env: dict[str, Any]) -> str:
    """A table cell's text (between its pipes, an escaped pipe unescaped) rendered as the
    table renders it: trimmed, inline, on its own."""
    return render_inline(text.strip(MD_TRIMMED), env)


def render_inline(text: str, env: dict[str, Any]) -> str:
    """`text` rendered inline as it is, marks left open shown as text."""
    return _render_inline_tokens(_inline_tokens(text, env), env)


def _inline_tokens(text: str, env: dict[str, Any]) -> list[Token]:
    md = _parser()
    tokens: list[Token] = []
    md.inline.parse(text, md, env, tokens)
    return tokens


def _render_inline_tokens(tokens: list[Token], env: dict[str, Any]) -> str:
    for token in tokens:
        if token.type == "text_special":  # an escaped character or an entity: text
            token.type = "text"
    md = _parser()
    return _clean(md.renderer.render(tokens, md.options, env))


# Marks that text after them may still pair with: left as text, they may be open.
_OPEN_MARK = re.compile(r"[*_~`\[]")
# Marks that can neither open nor close (CommonMark's flanking rules): "_" inside a word
# ("snake_case"), "*" or "_" between spaces ("a * b"), a lone "~"; brackets closed and not
# followed by a link's destination or label ("[1]", "arr[0]", "- [ ] task": a reference
# defined later makes them links, and the whole reply is drawn again at its end for that).
_INERT_MARK = re.compile(
    r"(?<=[^\W_])_+(?=[^\W_])|(?<= )(?:\*+|_+)(?= )|(?<!~)~(?!~)|\[[^\[\]\n*_~`]*\](?![(\[])"
)


def _inert(content: str) -> bool:
    return _OPEN_MARK.search(_INERT_MARK.sub("", content)) is None


_LIST_OPENS = {"bullet_list_open", "ordered_list_open"}
_ITEM_MARKER = re.compile(r" {0,3}(?:[0-9]{1,9}([.)])|([-+*]))")


@functools.cache
def _cleaner() -> nh3.Cleaner:
    """The sanitiser, made once: `nh3.clean` builds its rules again at every call, which cost
    more than cleaning a paragraph."""
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def _clean(html: str) -> str:
    return _cleaner().clean(html)
