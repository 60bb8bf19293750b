"""Bounds that keep one oversized request from stalling the server for everyone.

* `BodyLimit`: a request body over `max_bytes` is refused 413 before any of it is parsed: when its
  Content-Length says so (the bytes are read and dropped, unparsed, so the client gets the answer), else as
  soon as the bytes read pass the bound (a chunked upload).
* `check_prompt_chars`: a prompt whose character count alone proves it longer than the model's context is
  refused 400 before it is tokenized (tokenizing megabytes takes seconds to minutes of CPU), as vLLM's
  `--max-model-len` and llama.cpp's server refuse it. The proof: one token stands for at most as many
  characters as the longest entry of the vocabulary (byte-level entries spell one byte per character, and a
  character is at least one byte), so a prompt needs at least `chars / longest` tokens. `NORMALIZER_SLACK`
  covers tokenizers whose normalizer composes characters first (NFC/NFKC join at most a few into one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from tunesmith.serve.errors import ApiError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
"""4 MiB: over a million tokens of text for any model's tokenizer, far beyond the contexts served here."""
NORMALIZER_SLACK = 4
DRAIN_BYTES = 256 * 1024 * 1024
"""A refused body up to this size is read (and dropped) before the 413, so the client receives the answer;
a larger one gets the 413 and the connection closed at once."""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"The request body is larger than this server's limit of {max_bytes} bytes; send a "
                    "shorter prompt, or start the server with a larger --max-body-bytes",
                    code="request_too_large")


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, before the app reads it whole."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            if declared.isdigit() and int(declared) <= DRAIN_BYTES:
                await _drain(receive)
            await _send_error(send, too_large(self.max_bytes))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI re-raises it from reading the body; the app answers 413
                raise HTTPException(413, too_large(self.max_bytes).message)
            return message

        await self.app(scope, limited, send)


async def _drain(receive: Receive) -> None:
    """Read the refused body and drop it, unparsed: a client still sending when the server closes the
    connection sees a reset instead of the 413."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def max_token_chars(tokenizer: Any) -> int:
    """The most characters one token of `tokenizer` can stand for: its longest vocabulary entry."""
    return max((len(token) for token in tokenizer.get_vocab()), default=1) or 1


def check_prompt_chars(chars: int, context: int, token_chars: int, param: str) -> None:
    """400 when `chars` characters surely make more than `context` tokens (see the module docstring)."""
    per_token = token_chars * NORMALIZER_SLACK
    if chars > context * per_token:
        at_least = math.ceil(chars / per_token)
        raise ApiError(400, f"This model's maximum context length is {context} tokens. However, your prompt has "
                       f"{chars} characters, at least {at_least} tokens. Please reduce the length of the prompt.",
                       code="context_length_exceeded", param=param)
