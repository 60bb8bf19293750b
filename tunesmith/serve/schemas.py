"""Request bodies of the OpenAI API this server speaks (pydantic, validated once at the boundary) and the
response objects it returns, shaped as the official `openai` client parses them.

Fields the server does not implement (logprobs, penalties, tools, response_format...) are ignored, as vLLM
does, but every numeric field is still checked against OpenAI's documented range, so a value no model could
use (a seed beyond 64 bits, a NaN temperature) is a 400 for its own request, never a 500 for the batch it
would have joined. Out-of-range values are a 400 in the OpenAI error format.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 16
MAX_STOPS = 4
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""`seed` bounds, as vLLM takes them (torch generators take 64-bit seeds)."""
MAX_TOKENS_LIMIT = 2**31 - 1
"""A bound on max_tokens no context reaches; beyond it the number is surely a mistake."""
MAX_TOKEN_ID = 2**31 - 1
MAX_NAME_CHARS = 64
MAX_PATH_CHARS = 4096


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOPS or any(not s for s in stops):
            raise ValueError(f"stop takes up to {MAX_STOPS} non-empty strings")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit() or int(token) > MAX_TOKEN_ID or not -100 <= bias <= 100:
                raise ValueError("logit_bias maps token ids to numbers in [-100, 100]")
        return value

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(BaseModel):
    """OpenAI's picture part; serve/images.py checks and reads the URL (data: URI, or a file under --image-root)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["image_url"]
    image_url: ImageUrl


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]] | None = None


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


class CompletionRequest(_Sampling):
    prompt: str | list[int]
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    best_of: int | None = Field(None, ge=1, le=MAX_N)

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: str | list[int]) -> str | list[int]:
        if len(value) == 0:
            raise ValueError("prompt is empty")
        if isinstance(value, list) and any(not 0 <= t <= MAX_TOKEN_ID for t in value):
            raise ValueError(f"prompt token ids must lie in [0, {MAX_TOKEN_ID}]")
        return value


class AdapterRequest(BaseModel):
    """`POST /v1/adapters`: `path` is an adapter folder or a run folder, relative to the adapter root."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    path: str = Field(min_length=1, max_length=MAX_PATH_CHARS)

    @field_validator("name", "path")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_response(rid: str, model: str, texts: list[str], reasons: list[str], use: dict[str, int]) -> dict[str, Any]:
    choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r, "logprobs": None}
               for i, (t, r) in enumerate(zip(texts, reasons))]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use}


def completion_response(rid: str, model: str, texts: list[str], reasons: list[str],
                        use: dict[str, int]) -> dict[str, Any]:
    choices = [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
               for i, (t, r) in enumerate(zip(texts, reasons))]
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": use}


def chunk(rid: str, model: str, chat: bool, choices: list[dict[str, Any]],
          use: dict[str, int] | None = None) -> dict[str, Any]:
    """One server-sent event's object: chat.completion.chunk or text_completion."""
    body: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": int(time.time()), "model": model, "choices": choices}
    if use is not None:
        body["usage"] = use
    return body


def chunk_choice(chat: bool, index: int, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
    if not chat:
        return {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if text:
        delta["content"] = text
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
