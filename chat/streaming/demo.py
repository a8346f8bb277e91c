"""The built-in demo model: an httpx transport that answers like an OpenAI-compatible server.

It is plugged in where a real network transport would be, so a demo reply travels the same
httpx response and SSE parsing path as a real one; nothing downstream knows the difference.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .completion import CONTINUE_PROMPT

DEMO_MODEL = "demo"

DEMO_REPLY = """\
## The demo model

This is the **demo model** talking: no API key needed. Every word you see was streamed \
through the same pipeline a real model uses, one token at a time, and each part of this \
answer takes its *formatted* shape as soon as it is complete.

You asked about: *{topic}*

### What happened when you pressed Enter

1. The view saved your message and a placeholder for this reply.
2. A background consumer called an OpenAI-compatible `/chat/completions` endpoint with \
`stream: true`.
3. Each delta was pushed to your browser over a WebSocket, and every finished block \
(a heading, a list, a table) was rendered once on the server and sent once.
4. When the stream ended, the whole reply was saved with its rendered HTML.

### Where each part runs

| Stage | Runs in | Writes to the database |
|---|---|---|
| Saving your message | the web request | once |
| Streaming the reply | a background consumer | a checkpoint every few seconds |
| Rendering markdown | the same consumer | no |
| Showing the reply | your browser, over a WebSocket | no |

A small example of a code block, highlighted once its closing fence arrives:

```python
def greet(name: str) -> str:
    return f"Hello, {{name}}!"

print(greet("chatsite"))
```

To talk to a real model:

- set `OPENAI_BASE_URL` and `OPENAI_API_KEY` (see `.env.example`),
- pick a model with `CHAT_MODEL`,
- and restart the server.
"""


# The demo's answer to a Continue on a reply that is not its own text so far.
NOTHING_TO_CONTINUE = "\n\n*(The demo model goes on only from its own text.)*"


def demo_reply_for(messages: list[dict[str, Any]]) -> str:
    """The demo's reply to the question last asked; to a Continue, the rest of the reply
    after the text so far (the model is sent that text, then `CONTINUE_PROMPT`)."""
    if (
        len(messages) >= 2
        and messages[-1].get("role") == "user"
        and messages[-1].get("content") == CONTINUE_PROMPT
        and messages[-2].get("role") == "assistant"
    ):
        so_far = str(messages[-2].get("content") or "")
        whole = demo_reply_for(messages[:-2])
        return whole[len(so_far) :] if whole.startswith(so_far) else NOTHING_TO_CONTINUE
    last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    topic = " ".join(str(last_user or "").split())[:120] or "nothing yet"
    return DEMO_REPLY.format(topic=_MARKDOWN_PUNCTUATION.sub(r"\\\1", topic))


# What markdown may take for a mark: each is written escaped, so the question echoed shows as
# it was typed ("*.py", "`pytest`", "**verbose**"), in the reply's italics
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def tokenize(text: str) -> list[str]:
    """Split text into word-sized tokens that keep their spacing, like a real tokenizer."""
    return re.findall(r"\s*\S+|\s+", text)


class DemoStream(httpx.AsyncByteStream):
    def __init__(self, text: str, model: str, tokens_per_second: tuple[float, float]) -> None:
        self._tokens = tokenize(text)
        self._model = model
        self._tps = tokens_per_second

    async def __aiter__(self) -> AsyncIterator[bytes]:
        completion_id = f"chatcmpl-demo-{uuid.uuid4().hex[:12]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            body = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self._model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        low, high = self._tps
        for token in self._tokens:
            await asyncio.sleep(1.0 / random.uniform(low, high))
            yield chunk({"content": token})
        yield chunk({}, "stop")
        usage = {
            "prompt_tokens": 42,
            "completion_tokens": len(self._tokens),
            "total_tokens": 42 + len(self._tokens),
        }
        final = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self._model,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(final)}\n\n".encode()
        yield b"data: [DONE]\n\n"


def demo_title_for(messages: list[dict[str, Any]]) -> str:
    """The demo's answer to a title request: a short phrase from the user's first message,
    in the user's own capitals (a greeting and a "can you ..." are skipped, the phrase is cut
    at a clause or before a dangling word, at most six words)."""
    greeting = r"(?:hi|hello|hey|hiya|greetings|good (?:morning|afternoon|evening))(?: there| all)?"
    preamble = (
        r"^(?:(?:can|could|would|will) you(?: please)?|please|i(?:'d| would) like(?: to)?"
        r"|i (?:want|need)(?: to)?|help me(?: to)?|tell me about)\s+"
    )
    # Words a cut-short title should not end on: articles, determiners, numbers, prepositions,
    # conjunctions, pronouns and helper verbs.
    dangling = set(
        """a an the this that these those my your his her its our their some any many few each
        every all no one two three four five six seven eight nine ten of to in on at for from
        with about by into onto over under between through as than and or but so if because
        while which who whom whose what when where how i me you we they he she it can could
        would will should shall may might must do does did is are was were be been am has have
        had""".split()
    )
    text = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    first = re.sub(r"[*`#]+", " ", text.split("Assistant:")[0].replace("User:", ""))
    # (and Chinese and Japanese sentences and clauses, whose words have no blanks between)
    sentences = [s for s in re.split(r"[.!?\n\u3002\uff01\uff1f]+", first) if s.strip()]
    while len(sentences) > 1 and re.fullmatch(greeting, sentences[0].strip(" ,"), re.IGNORECASE):
        sentences.pop(0)
    sentence = " ".join(sentences[0].split()) if sentences else ""
    request = re.sub(rf"^{greeting}\s*[,!.]?\s+", "", sentence, flags=re.IGNORECASE)
    if len(request.split()) >= 4:  # a request after the greeting, not small talk
        sentence = request
    clauses = re.split(r"[,;:()\u3001\uff0c\uff1b\uff1a\uff08\uff09]", sentence)
    words = next((c for c in clauses if c.strip()), "").split()
    rest = re.sub(preamble, "", " ".join(words), flags=re.IGNORECASE).split()
    if len(rest) >= 2:  # "Can you help" stays as it is
        words = rest
    title_words = words[:6]
    while (
        len(words) > len(title_words) > 1  # cut short: end on a word that ends a phrase
        and title_words[-1].lower().strip(",'\"") in dangling
    ):
        title_words.pop()
    title = " ".join(title_words).strip(" .,:;!?-\"'")
    if title[:1].islower() and title.split()[0].islower():  # "iOS" keeps its small i
        title = title[0].upper() + title[1:]
    return title or "Demo conversation"


class DemoTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Serves `POST /chat/completions` (streaming) and `GET /models` for the demo model."""

    def __init__(self, tokens_per_second: tuple[float, float] = (30.0, 60.0)) -> None:
        self._tps = tokens_per_second

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.rstrip("/").endswith("/models"):
            body = {"object": "list", "data": [{"id": DEMO_MODEL, "object": "model"}]}
            return httpx.Response(200, json=body, request=request)
        return httpx.Response(404, json={"error": {"message": "Not found"}}, request=request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/models"):
            return self.handle_request(request)
        if request.method == "POST" and path.endswith("/chat/completions"):
            payload = json.loads(await request.aread() or b"{}")
            messages = payload.get("messages") or []
            asks_for_title = (
                any(
                    m.get("role") == "system" and "title" in str(m.get("content")).lower()
                    for m in messages
                )
                and (payload.get("max_tokens") or 999) <= 64
            )
            text = demo_title_for(messages) if asks_for_title else demo_reply_for(messages)
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=DemoStream(text, payload.get("model") or DEMO_MODEL, self._tps),
                request=request,
            )
        return httpx.Response(404, json={"error": {"message": "Not found"}}, request=request)
