"""`/v1/chat/completions` and `/v1/completions`: render the prompt, bound it by the context, queue the job,
then answer with one JSON object or a stream of server-sent events in OpenAI's chunk format.

Chat prompts are rendered by `data.tokenize.tokenize_prompt` with the served id's chat template, the function
and template the run trained with, so the model reads the same tokens it learned from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.serve import schemas, vision
from tunesmith.serve.engine import Engine, Event, Job, Params
from tunesmith.serve.errors import ApiError
from tunesmith.serve.images import chat_input, has_images
from tunesmith.serve.limits import check_prompt_chars
from tunesmith.serve.schemas import ChatRequest, CompletionRequest
from tunesmith.serve.store import Entry, ModelStore

DEFAULT_CHAT_TOKENS = 256
"""max_tokens when a chat request gives none (bounded by what the context leaves)."""
DEFAULT_COMPLETION_TOKENS = 16
"""OpenAI's default for /v1/completions."""


@dataclass(frozen=True)
class Prompt:
    """What a request asks the engine to continue: ids, and a chat's pictures with its rendered text."""

    ids: list[int]
    images: tuple[Any, ...] = ()
    """The chat's pictures, decoded once by serve/images.py."""
    text: str = ""


class EventQueue:
    """Events from the worker thread into this request's event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def put(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: the server is shutting down, nobody is listening
            pass


def chat_prompt(entry: Entry, request: ChatRequest, image_root: Path | None = None) -> Prompt:
    """Prompt ids through the training renderer, with the generation prompt; developer counts as system. And
    the request's pictures (serve/images.py), each at an `<image>` of the messages: a 400 when the model takes
    no images, or a picture is remote, outside `image_root`, too large or corrupt. A vision-language model's
    chats are rendered by its processor, as its training batches were (serve/vision.py).
    A chat template renders every message's text, so their characters bound the prompt's tokens from below:
    a prompt that cannot fit is refused before it is tokenized (serve/limits.py)."""
    if has_images(request.messages) and not entry.takes_images:
        reason = (entry.image_refusal()
                  or f"'{entry.name}' is a text model; send text only, or ask a vision-language model")
        raise ApiError(400, f"this model does not take images: {reason}", code="images_not_supported", param="messages")
    given = chat_input(request.messages, image_root)
    check_prompt_chars(sum(len(m.content) for m in given.messages), entry.base.context, entry.token_chars,
                       "messages")
    processor = entry.base.processor
    if processor is None:
        return Prompt(tokenize_prompt(entry.tokenizer, list(given.messages)))
    text = vision.render(processor, given.messages, given.images)
    return Prompt(vision.prompt_ids(processor, text, given.pictures), given.pictures, text if given.images else "")


def text_prompt(entry: Entry, request: CompletionRequest, image_root: Path | None = None) -> Prompt:
    """Prompt ids of a raw completion (text or token ids); it has no pictures."""
    if isinstance(request.prompt, list):
        vocab = len(entry.tokenizer)
        if any(not 0 <= t < vocab for t in request.prompt):
            raise ApiError(400, f"prompt token ids must lie in [0, {vocab})", param="prompt")
        return Prompt(list(request.prompt))
    check_prompt_chars(len(request.prompt), entry.base.context, entry.token_chars, "prompt")
    return Prompt(list(entry.tokenizer(request.prompt, add_special_tokens=True)["input_ids"]))


def params_for(request: ChatRequest | CompletionRequest, prompt_len: int, context: int, chat: bool) -> Params:
    """Sampling settings; a 400 when the prompt plus max_tokens do not fit the context window."""
    asked = (request.max_completion_tokens or request.max_tokens) if chat else request.max_tokens
    room = context - prompt_len
    if room < 1 or (asked is not None and asked > room):
        wanted = prompt_len + (asked or 1)
        raise ApiError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                       f"{wanted} tokens ({prompt_len} in the prompt, {asked or 1} for the completion). "
                       "Please reduce the length of the prompt or max_tokens.",
                       code="context_length_exceeded", param="messages" if chat else "prompt")
    default = DEFAULT_CHAT_TOKENS if chat else DEFAULT_COMPLETION_TOKENS
    return Params(max_tokens=asked or min(default, room), temperature=request.temperature, top_p=request.top_p,
                  stop=tuple(request.stop or ()), seed=request.seed, n=request.n)


async def complete(store: ModelStore, engine: Engine, request: ChatRequest | CompletionRequest,
                   chat: bool, log: Callable[..., None] = lambda **fields: None,
                   image_root: Path | None = None) -> JSONResponse | StreamingResponse:
    """Admit the request (404 unknown model, 400 too long or unusable images, 503 queue full) and answer it;
    `log` takes the request log's fields (model, token counts). Tokenizing and reading pictures run off the
    event loop: /health stays quick. Local picture files are read only from inside `image_root`."""
    log(model=request.model[:64])
    entry = store.acquire(request.model)
    try:
        build = chat_prompt if chat else text_prompt
        prompt = await run_in_threadpool(build, entry, request, image_root)
        params = params_for(request, len(prompt.ids), entry.base.context, chat)
        events = EventQueue()
        engine.submit(Job(entry, prompt.ids, params, events.put, chat=chat, images=prompt.images, text=prompt.text))
    except BaseException:
        store.release(entry)
        raise
    rid = schemas.new_id("chatcmpl" if chat else "cmpl")
    if request.stream:
        return StreamingResponse(_stream(events, rid, request, chat, log), media_type="text/event-stream")
    return JSONResponse(await _collect(events, rid, request, chat, log))


async def _collect(events: EventQueue, rid: str, request: Any, chat: bool,
                   log: Callable[..., None]) -> dict[str, Any]:
    texts, reasons = [""] * request.n, ["length"] * request.n
    while True:
        event = await events.queue.get()
        if event[0] == "text":
            texts[event[1]] += event[2]
        elif event[0] == "end":
            reasons[event[1]] = event[2]
        elif event[0] == "error":
            raise event[1]
        else:
            use = schemas.usage(event[1], event[2])
            log(prompt_tokens=event[1], completion_tokens=event[2])
            build = schemas.chat_response if chat else schemas.completion_response
            return build(rid, request.model, texts, reasons, use)


async def _stream(events: EventQueue, rid: str, request: Any, chat: bool,
                  log: Callable[..., None]) -> AsyncIterator[str]:
    """SSE: one chunk per piece of text, one with each choice's finish_reason, usage if asked, [DONE]."""
    started: set[int] = set()

    def sse(choices: list[dict[str, Any]], use: dict[str, int] | None = None) -> str:
        return f"data: {json.dumps(schemas.chunk(rid, request.model, chat, choices, use))}\n\n"

    while True:
        event = await events.queue.get()
        if event[0] in ("text", "end"):
            index, first = event[1], event[1] not in started
            started.add(index)
            text, finish = (event[2], None) if event[0] == "text" else (None, event[2])
            yield sse([schemas.chunk_choice(chat, index, text, finish, first)])
        elif event[0] == "error":
            yield f"data: {json.dumps(event[1].body())}\n\n"
            return
        else:
            log(prompt_tokens=event[1], completion_tokens=event[2])
            if request.include_usage:
                yield sse([], schemas.usage(event[1], event[2]))
            yield "data: [DONE]\n\n"
            return
