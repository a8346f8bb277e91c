"""Safe markdown: markdown-it-py without raw HTML, highlighted by Pygments, cleaned by nh3."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

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
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "pre": {"class"},
    "ol": {"start"},
}
_FORMATTER = HtmlFormatter(nowrap=True, classprefix="")


def _highlight(code: str, language: str, _attrs: object) -> str:
    if not language:
        return ""  # markdown-it escapes it as plain code
    try:
        lexer = get_lexer_by_name(language.split()[0])
    except ClassNotFound:
        return ""
    return highlight(code, lexer, _FORMATTER)


def _keep_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        parts = urlsplit(value)
        # Same-origin images only: a model reply must not make the browser call another host.
        if parts.scheme or parts.netloc or not value.startswith("/"):
            return None
    if attribute == "class":
        return " ".join(c for c in value.split() if c.replace("-", "").replace("_", "").isalnum())
    return value


@functools.cache
def _parser() -> MarkdownIt:
    return MarkdownIt("js-default", {"html": False, "highlight": _highlight})


def render_markdown(text: str) -> str:
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_keep_attribute,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
