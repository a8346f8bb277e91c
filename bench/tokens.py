"""The reply text the fake upstream streams, shared by the upstream and the clients.

Token `i` is a fixed function of `i` (and of the text's kind), so a client can tell from the
text it has which upstream chunks it has received. Two kinds: `plain`, paragraphs of words,
and `markdown`, markdown-heavy text (headings, emphasis, lists, tables, python and js code
blocks) split into word-sized tokens. The user's message names the stream and its shape:
`bench <tag> tokens=<n> rate=<tokens/s> chunk=<tokens per event> ttft=<ms>[ text=markdown]`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate "
    "velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident"
).split()


def token(i: int) -> str:
    """About four characters, like a real model's token; sentences and paragraphs for the
    final markdown rendering."""
    word = WORDS[(i * 7) % len(WORDS)]
    text = word if i == 0 else " " + word
    if i % 13 == 12:
        text += "."
    if i % 97 == 96:
        text += "\n\n"
    return text


# A model's tokens: a word, or a run of punctuation, with the white space before it.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s]+)")


def _words(k: int, start: int, n: int) -> str:
    return " ".join(WORDS[(k * 11 + start + 5 * m) % len(WORDS)] for m in range(n))


def markdown_section(k: int) -> str:
    """Section `k` of the markdown-heavy text: what a model's answer with code looks like."""
    w = functools.partial(_words, k)
    name = WORDS[(k * 7) % len(WORDS)]
    head = "" if k == 0 else "\n\n"
    return (
        f"{head}## {k + 1}. {w(0, 3).capitalize()}\n\n"
        f"{w(3, 9).capitalize()} **{w(12, 2)}**, with *{w(14, 3)}* and `{name}_{k}()` "
        f"{w(17, 8)}; see [the {w(25, 2)} guide](https://example.com/docs/{name}-{k}) for "
        f"{w(27, 10)}.\n\n"
        f"- **{name.capitalize()}**: {w(37, 6)} `{w(43, 1)}`\n"
        f"- {w(44, 4)} *{w(48, 2)}* {w(50, 5)}\n"
        f"- {w(55, 7)}\n\n"
        f"1. {w(62, 5).capitalize()} `--{name}`\n"
        f"2. {w(67, 3).capitalize()} **{w(70, 2)}** {w(72, 3)}\n"
        f"3. {w(75, 6).capitalize()}\n\n"
        "| Option | Default | Meaning |\n"
        "| --- | ---: | --- |\n"
        f"| `{name}` | {k % 17 + 3} | {w(81, 4)} |\n"
        f"| `{w(85, 1)}_limit` | {k * 37 % 1000} | {w(86, 3)} *{w(89, 2)}* |\n"
        f"| `strict` | false | {w(91, 5)} |\n\n"
        "```python\n"
        f"def {name}_{k}(items, limit={k % 9 + 1}):\n"
        f'    """{w(96, 5).capitalize()}."""\n'
        "    total = 0\n"
        "    for item in items[:limit]:\n"
        f'        if item.get("{name}") is not None:\n'
        f'            total += item["{name}"] * {k + 2}\n'
        '    return {"total": total, "count": len(items)}\n'
        "```\n\n"
        f"{w(101, 12).capitalize()} *{w(113, 2)}* {w(115, 9)} **{w(124, 3)}**.\n\n"
        "```js\n"
        f"function {name}{k}(items) {{\n"
        f"  const out = items.filter((x) => x.{name} > {k});\n"
        f"  return out.map((x) => ({{ id: x.id, value: x.{name} * 2 }}));\n"
        "}\n"
        "```"
    )


_markdown_tokens: list[str] = []  # sections 0, 1, ... tokenised, as far as asked for


def markdown_tokens(n: int) -> tuple[str, ...]:
    # A section ends with a non-space character and the next starts with white space, so
    # tokenising section by section gives the tokens of the whole text.
    while len(_markdown_tokens) < n:
        _markdown_tokens.extend(_TOKEN.findall(markdown_section(len(_sections))))
        _sections.append(len(_markdown_tokens))
    return tuple(_markdown_tokens[:n])


_sections: list[int] = []  # where each section's tokens end


@functools.lru_cache(maxsize=8)
def tokens(n: int, kind: str = "plain") -> tuple[str, ...]:
    if kind == "markdown":
        return markdown_tokens(n)
    if kind != "plain":
        raise ValueError(f"unknown text kind {kind!r}")
    return tuple(token(i) for i in range(n))


@dataclass(frozen=True)
class Shape:
    tag: str
    tokens: int
    rate: float  # tokens per second
    chunk: int = 1  # tokens per SSE event
    ttft_ms: float = 0.0  # the upstream's own time to first token
    kind: str = "plain"  # or "markdown"

    def message(self) -> str:
        return (
            f"bench {self.tag} tokens={self.tokens} rate={self.rate:g} chunk={self.chunk} "
            f"ttft={self.ttft_ms:g}" + (f" text={self.kind}" if self.kind != "plain" else "")
        )

    @property
    def chunks(self) -> int:
        return -(-self.tokens // self.chunk)

    def chunk_texts(self) -> list[str]:
        words = tokens(self.tokens, self.kind)
        return ["".join(words[j : j + self.chunk]) for j in range(0, self.tokens, self.chunk)]

    def chunk_ends(self) -> list[int]:
        """Offset in the reply (characters) where each chunk's text ends."""
        ends, total = [], 0
        for text in self.chunk_texts():
            total += len(text)
            ends.append(total)
        return ends

    def text(self) -> str:
        return "".join(tokens(self.tokens, self.kind))


SHAPE = re.compile(
    r"^bench (\S+) tokens=(\d+) rate=([\d.]+) chunk=(\d+) ttft=([\d.]+)(?: text=(plain|markdown))?",
)


def parse_shape(message: str) -> Shape | None:
    match = SHAPE.match(message)
    if match is None:
        return None
    tag, n, rate, chunk, ttft, kind = match.groups()
    return Shape(tag, int(n), float(rate), int(chunk), float(ttft), kind or "plain")
