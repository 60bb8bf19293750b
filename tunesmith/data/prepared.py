"""`PreparedData`: what `prepare_data` hands to validate, train, eval, plan and compare.

Its samples and examples are sequences: plain lists when prepared in memory (`data.cache: false`, or a hub
dataset), or views of the memory-mapped store (`data/store.py`) that read a sample only when it is asked
for. The counts the report and run.json need are taken with numpy from the store's arrays, so a summary of
a large corpus never builds a Python object per token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunesmith.data.mixing import ReplayReport
from tunesmith.data.store import StoredSamples
from tunesmith.data.types import Example, Sample


@dataclass
class PreparedData:
    format: str
    detected: bool
    train: Sequence[Sample]
    eval: Sequence[Sample]
    train_examples: Sequence[Example]
    eval_examples: Sequence[Example]
    rows: int
    bad_rows: list[str]
    sources: dict[str, str]
    duplicates: int = 0
    overlap: int = 0
    replay: ReplayReport | None = None
    notes: list[str] = field(default_factory=list)
    from_cache: bool = False  # read back from the data store instead of parsed and tokenized now
    unusable: int = 0  # preference/KTO examples dropped: an answer with no token to score after truncation
    pictures: list[str] = field(default_factory=list)  # picture files the rows name (the store watches them)
    stream: Any = None  # data.streaming: the training rows' StreamSource (data/stream.py); `train` then holds
    # only the samples of its first window (a preview for the report), and the counts describe that window

    def summary(self) -> dict[str, Any]:
        """The JSON-able facts recorded in run.json."""
        return {
            "format": self.format, "detected": self.detected, "rows": self.rows, "bad_rows": len(self.bad_rows),
            "train_examples": len(self.train_examples), "eval_examples": len(self.eval_examples),
            "train_samples": len(self.train), "eval_samples": len(self.eval),
            "train_tokens": int(sample_lengths(self.train).sum()),
            "trained_tokens": int(trained_counts(self.train).sum()),
            "truncated": truncated_count(self.train), "duplicates": self.duplicates,
            "train_eval_overlap": self.overlap, "unusable": self.unusable, "sources": self.sources,
            "replay": self.replay.as_dict() if self.replay else None,
            **({"streamed_shards": len(self.stream.shards), "counts_cover": "the first window of the stream"}
               if self.stream is not None else {}),
        }


def sample_lengths(samples: Sequence[Sample]) -> np.ndarray:
    """Tokens per sample (int64), from the store's offsets when the samples are stored."""
    if isinstance(samples, StoredSamples):
        return samples.lengths()
    return np.array([len(s) for s in samples], np.int64)


def trained_counts(samples: Sequence[Sample]) -> np.ndarray:
    """Trained (loss-carrying) tokens per sample (int64)."""
    if isinstance(samples, StoredSamples):
        return samples.trained_per_sample()
    return np.array([s.trained_tokens for s in samples], np.int64)


def truncated_count(samples: Sequence[Sample]) -> int:
    """Samples whose end was cut to fit."""
    if isinstance(samples, StoredSamples):
        return int(samples.truncated.sum())
    return sum(s.truncated for s in samples)
