"""`method: reward`: a reward model trained on preference pairs, and loading one back for PPO.

Design: a scalar head of ours, `Linear(hidden, 1)`, on the causal LM's last hidden state at the last token
of the answer (the end-of-turn token: pairs.py ends every scored sequence there), rather than
AutoModelForSequenceClassification: the loop, the adapters and the chat template stay those of every other
method, and the backbone is an ordinary causal LM that any adapter trains. Loss: -log sigma(r_c - r_r).

The head is attached to the model as a submodule (`reward_head`; PPO's value head is `value_head`), so the
optimizer and checkpoints see it like any trainable weight. When the run saves its weights, heads are set
aside (`heads.heads_set_aside`) and written to `scalar_heads.safetensors` beside the adapter or model, so that
folder stays a plain PEFT/HF folder. `RewardModel.load(run_dir)` rebuilds base + adapter (merged) + head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from tunesmith.data.packing import collate_padded
from tunesmith.data.pairs import tokenize_answer
from tunesmith.data.pipeline import PreparedData
from tunesmith.data.types import Message, Prompt
from tunesmith.errors import UserError
from tunesmith.methods.reward.losses import pairwise_reward_loss
from tunesmith.methods.shared.preference import PlannedObjective, accelerator_device, pair_metrics, plan_pairs
from tunesmith.methods.shared.reference import forward
from tunesmith.models.heads import HEADS_FILE, REWARD_HEAD, attach_head, last_token_scores
from tunesmith.recipe.spec import Recipe
from tunesmith.runs.load import load_target
from tunesmith.runs.targets import resolve_target
from tunesmith.train.objective import Batch


class RewardTraining(PlannedObjective):
    """The objective of `method: reward`: pairs as in DPO, scored by the reward head; units are pairs."""

    def __init__(self, recipe: Recipe, data: PreparedData, tokenizer: Any, model: torch.nn.Module) -> None:
        self.planned = plan_pairs(recipe, data, tokenizer)
        self.head = attach_head(model, REWARD_HEAD)

    def loss_sum(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        _, states = forward(model, batch, hidden=True)
        chosen, rejected = last_token_scores(self.head, states, batch["attention_mask"]).chunk(2)
        return pairwise_reward_loss(chosen, rejected).sum(), pair_metrics(chosen.detach(), rejected.detach())


class RewardModel:
    """A finished `method: reward` run, frozen, scoring (prompt, completion) as it was trained to."""

    def __init__(self, model: torch.nn.Module, head: torch.nn.Linear, tokenizer: Any, max_len: int) -> None:
        self.model, self.head, self.tokenizer, self.max_len = model, head, tokenizer, max_len

    @classmethod
    def load(cls, run_dir: str | Path) -> RewardModel:
        target = resolve_target(str(run_dir))
        if target.run is None or target.run.method != "reward":
            raise UserError(f"ppo.reward_model: {run_dir} is not the run folder of a method: reward run")
        loaded = load_target(target, dtype="fp32")
        heads_file = (target.adapter or Path(target.model)) / HEADS_FILE
        if not heads_file.is_file():
            raise UserError(f"ppo.reward_model: {heads_file} is missing; was the reward run finished?")
        weights = load_file(heads_file)
        head = torch.nn.Linear(weights[f"{REWARD_HEAD}.weight"].shape[1], 1)
        head.load_state_dict({k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(REWARD_HEAD + ".")})
        device = accelerator_device()
        model = loaded.model.to(device).requires_grad_(False)
        return cls(model, head.to(device).requires_grad_(False), loaded.tokenizer, target.recipe().train.max_seq_len)

    @torch.no_grad()
    def score(self, rows: list[Prompt], completions: list[str]) -> list[float]:
        """The reward of each completion as the answer to its row's prompt."""
        samples = [tokenize_answer(self.tokenizer, row.prompt, (Message("assistant", text or " "),), self.max_len)
                   for row, text in zip(rows, completions)]
        batch = {k: v.to(self.head.weight.device) for k, v in collate_padded(samples, self.tokenizer.pad_token_id).items()}
        _, states = forward(self.model, batch, hidden=True)
        return last_token_scores(self.head, states, batch["attention_mask"]).tolist()
