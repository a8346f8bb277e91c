"""Which emphasis and strikethrough marks may open or close: CommonMark's flanking rules with
its CJK-friendly amendment (https://github.com/tats-u/markdown-cjk-friendly, the revision
proposed in commonmark-spec issue 650, which markdown-it, remark, comrak and Markdig offer).

Plain CommonMark leaves `**注意：**请确认` as text, its stars showing: a closing mark after
punctuation must be followed by white space or punctuation, and Chinese and Japanese put no
space between a full-width colon, bracket or full stop and the next word. Models answering in
Chinese, Japanese or Korean write bold that way all the time. The amendment counts CJK
punctuation as a letter and a CJK character as a space beside such marks; text without CJK
characters (or variation selectors) parses as before.

`cjk_friendly` installs the rules in one markdown-it-py parser (its `emphasis` and
`strikethrough` rules, which ask the inline state to `scanDelims`); `flanks` gives them for
the progressive renderer, which pairs marks itself before markdown-it renders them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from types import MethodType
from typing import NamedTuple

from markdown_it import MarkdownIt
from markdown_it.common.utils import isWhiteSpace
from markdown_it.rules_inline import emphasis, strikethrough
from markdown_it.rules_inline.state_inline import Scanned, StateInline

# CJK characters (East Asian Width W, F or H and no emoji's presentation, or Hangul), as
# the amendment's ranges list them for Unicode 16
CJK_CHARACTERS = (
    "\u1100-\u11ff\u20a9\u2329-\u232a\u2630-\u2637\u268a-\u268f\u2e80-\u2e99\u2e9b-\u2ef3"
    "\u2f00-\u2fd5\u2ff0-\u303e\u3041-\u3096\u3099-\u30ff\u3105-\u312f\u3131-\u318e"
    "\u3190-\u31e5\u31ef-\u321e\u3220-\u3247\u3250-\ua48c\ua490-\ua4c6\ua960-\ua97c"
    "\uac00-\ud7a3\ud7b0-\ud7c6\ud7cb-\ud7fb\uf900-\ufaff\ufe10-\ufe19\ufe30-\ufe52"
    "\ufe54-\ufe66\ufe68-\ufe6b\uff01-\uffbe\uffc2-\uffc7\uffca-\uffcf\uffd2-\uffd7"
    "\uffda-\uffdc\uffe0-\uffe6\uffe8-\uffee\U00016fe0-\U00016fe4\U00016ff0-\U00016ff6"
    "\U00017000-\U00018cd5\U00018cff-\U00018d1e\U00018d80-\U00018df2\U0001aff0-\U0001aff3"
    "\U0001aff5-\U0001affb\U0001affd-\U0001affe\U0001b000-\U0001b122\U0001b132"
    "\U0001b150-\U0001b152\U0001b155\U0001b164-\U0001b167\U0001b170-\U0001b2fb"
    "\U0001d300-\U0001d356\U0001d360-\U0001d376\U0001f200\U0001f202\U0001f210-\U0001f219"
    "\U0001f21b-\U0001f22e\U0001f230-\U0001f231\U0001f237\U0001f23b\U0001f240-\U0001f248"
    "\U0001f260-\U0001f265\U00020000-\U0003fffd"
)
_CJK = re.compile(f"[{CJK_CHARACTERS}]")
_FIRST_CJK = "\u1100"  # (nor a variation selector below it)
# A variation selector that may follow a CJK character or punctuation (not the emoji one)
_TEXT_VARIATION = re.compile("[\ufe00-\ufe0e]")
_IDEOGRAPHIC_VARIATION = re.compile("[\U000e0100-\U000e01ef]")
# Quotation marks that a variation selector makes full-width (CJK punctuation)
_FULL_WIDTH_QUOTES = "\u2018\u2019\u201c\u201d"


def cjk(character: str) -> bool:
    """Whether `character` is a CJK character."""
    return _CJK.match(character) is not None


def _sequence(before: str) -> tuple[str, bool]:
    """The character that the text `before` a mark ends in (the one before a variation
    selector: a sequence), and whether that is a CJK sequence (a full-width quotation mark's
    too)."""
    last = before[-1:] or " "
    if _TEXT_VARIATION.match(last) and len(before) > 1:
        base = before[-2]
        return base, cjk(base) or (last == "\ufe01" and base in _FULL_WIDTH_QUOTES)
    return last, cjk(last)


def cjk_before(before: str) -> bool:
    """Whether the text `before` a mark ends in a CJK sequence or an ideographic variation
    selector."""
    return _sequence(before)[1] or _IDEOGRAPHIC_VARIATION.match(before[-1:]) is not None


def punctuation(character: str) -> bool:
    """CommonMark's Unicode punctuation (Unicode's P and S categories)."""
    return unicodedata.category(character)[0] in "PS"


class Flanks(NamedTuple):
    """What a run of marks may do (CommonMark's terms)."""

    left: bool  # left-flanking: with "*" and "~", it may open
    right: bool  # right-flanking: it may close
    after_punctuation: bool  # preceded by a Unicode punctuation sequence
    before_punctuation: bool  # followed by a Unicode punctuation character

    def opens(self, mark: str) -> bool:
        """Whether a run of `mark` may open (an underscore not inside a word)."""
        return self.left and (mark != "_" or not self.right or self.after_punctuation)

    def closes(self, mark: str) -> bool:
        return self.right and (mark != "_" or not self.left or self.before_punctuation)


def flanks(before: str, after: str) -> Flanks:
    """The flanking of a run of marks between the text `before` it (its last two characters
    are looked at: a variation selector belongs to the character before it) and the
    character `after` it; "" at a line's start or end (white space)."""
    last = before[-1:] or " "
    after = after or " "
    base, cjk_base, cjk_after, ideographic = last, False, False, False
    if last >= _FIRST_CJK or after >= _FIRST_CJK:  # (below it, CommonMark's rules as they are)
        (base, cjk_base), cjk_after = _sequence(before), cjk(after)
        ideographic = _IDEOGRAPHIC_VARIATION.match(last) is not None
    last_space = isWhiteSpace(ord(last))
    after_space = isWhiteSpace(ord(after))
    after_punctuation = punctuation(base)
    after_other_punctuation = after_punctuation and not cjk_base
    before_punctuation = punctuation(after)
    before_other_punctuation = before_punctuation and not cjk_after
    left = not after_space and (
        not before_other_punctuation
        or last_space
        or after_other_punctuation
        or cjk_base
        or ideographic
    )
    right = not last_space and (
        not after_other_punctuation or after_space or before_other_punctuation or cjk_after
    )
    return Flanks(left, right, after_punctuation, before_punctuation)


def _scan_delims(state: StateInline, start: int, canSplitWord: bool) -> Scanned:
    """`StateInline.scanDelims` under the amended rules."""
    src, end = state.src, start
    while end < state.posMax and src[end] == src[start]:
        end += 1
    after = src[end] if end < state.posMax else ""
    if (start == 0 or src[start - 1] < _FIRST_CJK) and after < _FIRST_CJK:
        return StateInline.scanDelims(state, start, canSplitWord)  # (no CJK: as it was)
    flanking = flanks(src[max(0, start - 2) : start], after)
    if canSplitWord:
        return Scanned(flanking.left, flanking.right, end - start)
    return Scanned(flanking.opens("_"), flanking.closes("_"), end - start)


_Rule = Callable[[StateInline, bool], bool]


def _amended(rule: _Rule) -> _Rule:
    def scan_amended(state: StateInline, silent: bool) -> bool:
        if "scanDelims" not in vars(state):
            state.scanDelims = MethodType(_scan_delims, state)  # type: ignore[method-assign]
        return rule(state, silent)

    return scan_amended


def cjk_friendly(md: MarkdownIt) -> None:
    """A markdown-it-py plugin: emphasis and strikethrough marks flank by the amended rules
    in this parser (others are left as they are)."""
    md.inline.ruler.at("emphasis", _amended(emphasis.tokenize))
    md.inline.ruler.at("strikethrough", _amended(strikethrough.tokenize))
