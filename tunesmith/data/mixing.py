"""Data replay: mix general-domain samples into full fine-tuning against catastrophic forgetting.

The ratio is a share of *trained tokens*, not of rows: a replay ratio of 0.2 means one trained token in
five comes from the general data, whatever the length skew between the two sets.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from tunesmith.data.types import IGNORE_INDEX, Sample
from tunesmith.errors import UserError


@dataclass(frozen=True)
class ReplayReport:
    ratio: float
    task_tokens: int
    replay_tokens: int
    replay_samples: int

    @property
    def share(self) -> float:
        """The achieved share of trained tokens that came from replay data."""
        return self.replay_tokens / max(self.task_tokens + self.replay_tokens, 1)

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "share": self.share}


def mix_replay(task: list[Sample], replay: list[Sample], ratio: float, seed: int) -> tuple[list[Sample], ReplayReport]:
    """Add replay samples (seeded order) until they make `ratio` of the trained tokens.

    Replay data is cycled when it is too small; the last sample is cut so the share lands on the ratio
    (to within one token); the report states the exact share.
    """
    if not replay:
        raise UserError("data.replay.train: no usable samples in the replay data")
    task_tokens = sum(s.trained_tokens for s in task)
    target = int(round(ratio / (1.0 - ratio) * task_tokens))
    rng = random.Random(seed + 7919)
    chosen: list[Sample] = []
    replay_tokens = 0
    while replay_tokens < target:
        order = list(replay)
        rng.shuffle(order)
        for sample in order:
            if replay_tokens >= target:
                break
            if sample.trained_tokens == 0:
                continue
            sample = _cut_to_trained(sample, target - replay_tokens)
            chosen.append(sample)
            replay_tokens += sample.trained_tokens
        if not any(s.trained_tokens for s in replay):
            raise UserError("data.replay.train: the replay data has no trained tokens")
    mixed = task + chosen
    rng.shuffle(mixed)
    return mixed, ReplayReport(ratio, task_tokens, replay_tokens, len(chosen))


def _cut_to_trained(sample: Sample, budget: int) -> Sample:
    """The shortest prefix of `sample` holding `budget` trained tokens (the whole sample if it has fewer)."""
    if sample.trained_tokens <= budget:
        return sample
    seen = 0
    for end, label in enumerate(sample.labels):
        seen += label != IGNORE_INDEX
        if seen == budget:
            return Sample(sample.input_ids[: end + 1], sample.labels[: end + 1], truncated=True)
    return sample
