"""The generation engine: a bounded request queue and one worker thread that runs requests in batches.

`submit` admits a job or refuses it at once when the queue is full (the server answers 503 with Retry-After):
full by the engine's measured throughput (serve/admission.py), or at `queue_size` jobs when that is given.
The worker takes the oldest job, waits `batch_wait_s` for company, and runs it together with every waiting
job of the same group (store.Entry.group: a base with its LoRA adapters, mixed through PEFT's
`adapter_names=`; any other adapter alone), up to `max_batch` rows. Each request's `n` choices are rows of
the batch. Events go to the job's `sink` from the worker thread: ("text", choice, str),
("end", choice, finish_reason, tokens), then ("done", prompt_tokens, completion_tokens) or ("error", ApiError).
The model lock is held for the whole batch, so adapters load and unload between batches, never during one.
Jobs with pictures (a vision-language model's chats) batch among themselves: their inputs, pixels included,
come from the model's processor in one call (serve/vision.py).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from tunesmith.adapters.unit import Serving
from tunesmith.models.padding import left_pad
from tunesmith.serve.admission import Admission
from tunesmith.serve.errors import ApiError, queue_full
from tunesmith.serve.sampling import RowSampler, RowState, RowStopper
from tunesmith.serve.store import Entry, ModelStore
from tunesmith.serve.vision import batch_inputs

Event = tuple[Any, ...]
SEED_SPACE = 2**64
"""torch generators take seeds in [0, 2^64): a request's seed (any int64) plus its choice index wraps into it."""
MEASURE_TOKENS = 16
"""New tokens per row of the batch timed at start (OpenAI's default max_tokens for completions)."""
MEASURE_TIMEOUT_S = 300.0
"""torch generators take seeds in [0, 2^64): a request's seed (any int64) plus its choice index wraps into it."""


@dataclass(frozen=True)
class Params:
    """Sampling settings of one request, already validated against the model's context."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1


@dataclass
class Job:
    """One request: a model id (referenced in the store), prompt ids, settings and where events go."""

    entry: Entry
    prompt: list[int]
    params: Params
    sink: Callable[[Event], None]
    chat: bool = False
    rows: list[RowState] = field(default_factory=list)
    images: tuple[Any, ...] = ()
    """A chat's pictures (decoded RGB images, checked and decoded once by serve/images.py), one per `<image>` of
    its messages, in order; only a model whose entry `takes_images` receives any, and its generation reads them
    with its processor."""
    text: str = ""
    """A chat with pictures: its rendering by the processor's template (serve/vision.py), which the batch's
    processor call expands again into `prompt` with the pixel inputs."""


class Engine:
    """Queue + batching worker over a ModelStore; `start` it once, `stop` it on shutdown."""

    def __init__(self, store: ModelStore, queue_size: int | None = None, max_batch: int = 16,
                 batch_wait_s: float = 0.005, max_wait_s: float = 30.0) -> None:
        self.store, self.max_batch, self.batch_wait_s = store, max_batch, batch_wait_s
        self.admission = Admission(floor=max_batch, max_wait_s=max_wait_s, max_batch=max_batch, cap=queue_size)
        self._queue: list[Job] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._measured = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-serve-worker", daemon=True)
        self.history: deque[tuple[str, ...]] = deque(maxlen=1000)
        """The model ids of each recent batch, row by row: what tests and the load benchmark inspect."""

    def start(self) -> None:
        """Start the worker; it first measures the throughput (so the first burst meets a queue sized for
        this model), and this returns once it has. The measurement runs on the worker's own thread: torch's
        thread pool behaves differently on the main thread, and timing there was up to 6x off (busy CPUs).

        One small parallel op runs here first: when the worker thread is the first to enter torch's OpenMP
        pool, its batches ran 4-10x slower on a busy 2-core machine (stories260K, a 16 x 16 batch: 1.2 s,
        against 0.12-0.3 s after a 64x64 matmul on the starting thread; bench/serve_overload.py went from
        117 to 800 budgeted tokens/s)."""
        torch.ones(64, 64) @ torch.ones(64, 64)
        self._thread.start()
        self._measured.wait(timeout=MEASURE_TIMEOUT_S)

    def measure(self, tokens: int = MEASURE_TOKENS) -> None:
        """Time one full batch (`max_batch` rows, `tokens` new tokens each; after a short one that pays the
        first call's costs) on the first served base model and record it in the admission rule. A model that
        fails here is left to fail on its first request."""
        entry = next((e for e in self.store.entries.values() if not e.is_adapter), None)
        if entry is None:
            return
        prompt = list(entry.tokenizer("Once upon a time", add_special_tokens=True)["input_ids"]) or [0]
        try:
            self._run([Job(entry, prompt, Params(max_tokens=2, n=1), lambda event: None)])  # first-call costs
            start = time.monotonic()
            self._run([Job(entry, prompt, Params(max_tokens=tokens, n=self.max_batch), lambda event: None)])
        except Exception:  # noqa: BLE001 -- a measurement only; requests will report the failure
            return
        finally:
            self.history.clear()
        self.admission.record(self.max_batch * tokens, time.monotonic() - start)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def waiting(self) -> int:
        """Requests queued, not yet in a batch."""
        return len(self._queue)

    def submit(self, job: Job) -> None:
        """Queue `job`, or raise the 503 ApiError when the queue is full (the caller releases its entry)."""
        with self._cond:
            work = sum(_work(waiting) for waiting in self._queue)
            if not self.admission.admits(len(self._queue), work):
                raise queue_full(len(self._queue), self.admission.retry_after_s(len(self._queue), work))
            self._queue.append(job)
            self._cond.notify()

    def _loop(self) -> None:
        self.measure()
        self._measured.set()
        while True:
            batch = self._take()
            if batch is None:
                return
            start = time.monotonic()
            try:
                self._run(batch)
                self.admission.record(sum(_work(job) for job in batch), time.monotonic() - start)
            except Exception as e:  # noqa: BLE001 -- one bad batch must not stop the server
                error = ApiError(500, f"generation failed: {type(e).__name__}: {e}", type_="server_error")
                for job in batch:
                    job.sink(("error", error))
            finally:
                for job in batch:
                    self.store.release(job.entry)

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest job and the waiting jobs of its group; None once stopped."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._stopped)
            if self._stopped:
                return None
            if len(self._queue) < self.max_batch:
                self._cond.wait(timeout=self.batch_wait_s)  # let concurrent requests arrive
            group = _batch_key(self._queue[0])
            batch, rows = [], 0
            for job in list(self._queue):
                if _batch_key(job) == group and (not batch or rows + job.params.n <= self.max_batch):
                    batch.append(job)
                    rows += job.params.n
                    self._queue.remove(job)
            return batch

    def _run(self, batch: list[Job]) -> None:
        with self.store.lock:
            self.store.ensure_resident({job.entry.name for job in batch})
            model, extra = _model_for(batch)
            base = batch[0].entry.base
            pad = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else base.tokenizer.eos_token_id
            rows = [row for job in batch for row in _rows(job, base)]
            self.history.append(tuple(job.entry.name for job in batch for _ in range(job.params.n)))
            ids, mask, pixels = _inputs(batch, base, pad)
            extra.update(pixels)
            config = GenerationConfig(do_sample=False, max_new_tokens=max(r.max_tokens for r in rows),
                                      pad_token_id=pad, eos_token_id=None)
            with torch.inference_mode():
                if batch[0].entry.spec.serving is Serving.STEPWISE:
                    _decode_stepwise(model, ids, mask, RowSampler(rows, pad), RowStopper(rows), config.max_new_tokens)
                else:
                    model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                   logits_processor=LogitsProcessorList([RowSampler(rows, pad)]),
                                   stopping_criteria=StoppingCriteriaList([RowStopper(rows)]), **extra)
        for job in batch:
            completion = 0
            for index, row in enumerate(job.rows):
                job.sink(("end", index, row.finish_reason or "length", row.generated))
                completion += row.generated
            job.sink(("done", len(job.prompt), completion))


def _inputs(batch: list[Job], base: Any, pad: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Left-padded ids and mask of the batch's rows (each job `n` times), and a picture batch's pixel inputs:
    jobs with pictures batch only together (`_batch_key`) and go through the processor in one call."""
    if not batch[0].images:
        ids, mask = left_pad([job.prompt for job in batch for _ in range(job.params.n)], pad)
        return ids, mask, {}
    inputs = batch_inputs(base.processor, [job.text for job in batch for _ in range(job.params.n)],
                          [job.images for job in batch for _ in range(job.params.n)])
    ids, mask = inputs.pop("input_ids"), inputs.pop("attention_mask")
    return ids, mask, {key: value.to(base.model.dtype) if value.is_floating_point() else value
                       for key, value in inputs.items()}


def _decode_stepwise(model: Any, ids: torch.Tensor, mask: torch.Tensor, sampler: RowSampler, stopper: RowStopper,
                     max_new: int) -> None:
    """Token by token through the model's own forward, re-reading the whole sequence each step (no KV cache)."""
    for _ in range(max_new):
        scores = sampler(ids, model(input_ids=ids, attention_mask=mask).logits[:, -1, :])
        ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        if bool(stopper(ids, scores).all()):
            return


def _work(job: Job) -> int:
    """A job's work in the admission rule's unit: budgeted tokens, every choice its max_tokens."""
    return job.params.n * job.params.max_tokens


def _batch_key(job: Job) -> tuple[str, int, bool]:
    """Jobs with equal keys share a batch. PEFT ignores position ids under prefix and prompt tuning, so a
    left-padded row would read shifted positions: those batch only prompts of one length. Jobs with pictures
    batch among themselves (their inputs come from the processor)."""
    same_length = job.entry.spec.serving is Serving.STEPWISE
    return job.entry.group, len(job.prompt) if same_length else 0, bool(job.images)


def _model_for(batch: list[Job]) -> tuple[Any, dict[str, Any]]:
    """The module that runs `batch` and the extra generate() arguments (PEFT's per-row adapter names)."""
    entry = batch[0].entry
    base = entry.base
    if entry.group.startswith("mix:"):
        if base.peft is None:
            return base.model, {}
        names = [job.entry.name if job.entry.is_adapter else "__base__" for job in batch for _ in range(job.params.n)]
        return base.peft, {"adapter_names": names}
    if entry.spec.serving is Serving.PEFT_ALONE and not entry.own_copy:
        base.peft.set_adapter(entry.name)
        return base.peft, {}
    return entry.module, {}


def _rows(job: Job, base: Any) -> list[RowState]:
    params, entry = job.params, job.entry
    seed = params.seed if params.seed is not None else random.SystemRandom().getrandbits(62)
    eos = {entry.tokenizer.eos_token_id, base.tokenizer.eos_token_id}
    generation_eos = getattr(getattr(base.model, "generation_config", None), "eos_token_id", None)
    eos.update(generation_eos if isinstance(generation_eos, list) else [generation_eos])
    stops = tuple(s for s in (*params.stop, entry.stop_text if job.chat else "") if s)
    job.rows = [
        RowState(params.temperature, params.top_p, params.max_tokens, stops, frozenset(e for e in eos if e is not None),
                 entry.tokenizer, torch.Generator().manual_seed((seed + i) % SEED_SPACE),
                 on_text=partial(_emit_text, job.sink, i))
        for i in range(params.n)
    ]
    return job.rows


def _emit_text(sink: Callable[[Event], None], index: int, text: str) -> None:
    sink(("text", index, text))


