"""The reply text the fake upstream streams, shared by the upstream and the clients.

Token `i` is a fixed function of `i`, so a client can tell from the length of the text it has
which upstream chunks it has received. The user's message names the stream and its shape:
`bench <tag> tokens=<n> rate=<tokens/s> chunk=<tokens per event> ttft=<ms>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=8)
def tokens(n: int) -> tuple[str, ...]:
    return tuple(token(i) for i in range(n))


@dataclass(frozen=True)
class Shape:
    tag: str
    tokens: int
    rate: float  # tokens per second
    chunk: int = 1  # tokens per SSE event
    ttft_ms: float = 0.0  # the upstream's own time to first token

    def message(self) -> str:
        return (
            f"bench {self.tag} tokens={self.tokens} rate={self.rate:g} chunk={self.chunk} "
            f"ttft={self.ttft_ms:g}"
        )

    @property
    def chunks(self) -> int:
        return -(-self.tokens // self.chunk)

    def chunk_texts(self) -> list[str]:
        words = tokens(self.tokens)
        return ["".join(words[j : j + self.chunk]) for j in range(0, self.tokens, self.chunk)]

    def chunk_ends(self) -> list[int]:
        """Offset in the reply (characters) where each chunk's text ends."""
        ends, total = [], 0
        for text in self.chunk_texts():
            total += len(text)
            ends.append(total)
        return ends

    def text(self) -> str:
        return "".join(tokens(self.tokens))


SHAPE = re.compile(
    r"^bench (\S+) tokens=(\d+) rate=([\d.]+) chunk=(\d+) ttft=([\d.]+)",
)


def parse_shape(message: str) -> Shape | None:
    match = SHAPE.match(message)
    if match is None:
        return None
    tag, n, rate, chunk, ttft = match.groups()
    return Shape(tag, int(n), float(rate), int(chunk), float(ttft))
