"""GRPO's loss types, sequence-level ratios, clip-higher and reward scales against TRL 1.16's own code.

The reference is TRL's `GRPOTrainer._compute_loss`, run as it is on fixed tensors: a GRPOTrainer made with
`object.__new__`, holding a real `GRPOConfig`, a real `Accelerator` and the attributes `__init__` derives
from the config, whose `_get_per_token_logps_and_entropies` returns our fixed log-probabilities (the only
model call `_compute_loss` makes). Each optimizer step is two micro-batches with different token counts, in
TRL's train mode with 2 accumulation steps, so grpo, bnpo, dr_grpo and dapo normalise differently.
"""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from tunesmith.errors import UserError
from tunesmith.methods.grpo.losses import (
    LOSS_TYPES,
    StepCounts,
    flat_groups,
    group_advantages,
    grpo_token_loss,
    truncated,
)
from tunesmith.recipe.spec import recipe_from_dict

N, C, MAX_NEW = 8, 6, 7  # completions per micro-batch, completion width, max_new_tokens


def fixed_tensors(seed: int) -> dict[str, torch.Tensor]:
    """One micro-batch: log-probs now, at sampling time and of the reference, advantages and a ragged mask
    (one row fully masked, as a truncated completion is), in float64."""
    g = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(N, C, generator=g, dtype=torch.float64) * 3).requires_grad_()
    old = logps.detach() + 0.4 * torch.randn(N, C, generator=g, dtype=torch.float64)  # ratios well past 1 +- 0.2
    ref = logps.detach() + 0.3 * torch.randn(N, C, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, C + 1, (N,), generator=g)
    lengths[seed % N] = 0
    mask = (torch.arange(C) < lengths.unsqueeze(1)).long()
    return {"logps": logps, "old": old, "ref": ref, "advantages": torch.randn(N, generator=g, dtype=torch.float64), "mask": mask}


def trl_step_loss(micro: list[dict[str, torch.Tensor]], **config: object) -> torch.Tensor:
    """TRL's loss of one optimizer step over `micro`: its _compute_loss per micro-batch, summed as its trainer
    accumulates them (each micro-batch's loss is already scaled for accumulation)."""
    from accelerate import Accelerator
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir="unused", report_to="none", bf16=False, num_generations=4, per_device_train_batch_size=N,
                      gradient_accumulation_steps=len(micro), max_completion_length=MAX_NEW, **config)
    trainer = object.__new__(GRPOTrainer)
    trainer.args = args
    for name in ("loss_type", "beta", "importance_sampling_level", "off_policy_mask_threshold", "top_entropy_quantile",
                 "use_vllm", "vllm_importance_sampling_correction", "max_completion_length"):
        setattr(trainer, name, getattr(args, name))
    trainer.epsilon_low = args.epsilon
    trainer.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    trainer._entropy_bonus_enabled = trainer.aux_loss_enabled = False
    trainer.accelerator = Accelerator(cpu=True)
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer.model = torch.nn.Linear(1, 1).train()
    trainer.current_gradient_accumulation_steps = len(micro)
    num_items = sum(t["mask"].sum() for t in micro)  # the generation batch's loss tokens
    loss = torch.zeros((), dtype=torch.float64)
    for t in micro:
        trainer._get_per_token_logps_and_entropies = lambda *a, t=t, **k: (t["logps"], torch.zeros_like(t["logps"]), None)
        inputs = {"prompt_ids": torch.zeros(N, 2, dtype=torch.long), "prompt_mask": torch.ones(N, 2, dtype=torch.long),
                  "completion_ids": torch.zeros(N, C, dtype=torch.long), "completion_mask": t["mask"],
                  "advantages": t["advantages"], "old_per_token_logps": t["old"], "ref_per_token_logps": t["ref"],
                  "num_items_in_batch": num_items}
        loss = loss + trainer._compute_loss(trainer.model, inputs)
    return loss


def our_step_loss(micro: list[dict[str, torch.Tensor]], *, loss_type: str, beta: float, epsilon: float,
                  epsilon_high: float | None, sequence: bool) -> tuple[torch.Tensor, float]:
    """Our loss of the same step as the loop forms it: micro-batch loss sums over the step's completions;
    and the share of tokens where the clip was active."""
    units, tokens = float(N * len(micro)), float(sum(t["mask"].sum() for t in micro))
    total, clip_share = torch.zeros((), dtype=torch.float64), 0.0
    for t in micro:
        per_token, clipped, _ = grpo_token_loss(
            t["logps"], t["old"], t["ref"] if beta else None, t["advantages"], t["mask"], clip_low=epsilon,
            clip_high=epsilon if epsilon_high is None else epsilon_high, beta=beta, sequence_level=sequence)
        counts = StepCounts(units=float(N), step_units=units, step_tokens=tokens, max_new_tokens=MAX_NEW)
        total = total + LOSS_TYPES[loss_type](per_token, t["mask"], counts)
        clip_share += float((clipped * t["mask"]).sum()) / tokens
    return total / units, clip_share


CASES = [  # loss_type, importance_sampling_level, epsilon_high, beta
    ("grpo", "token", None, 0.04),
    ("grpo", "token", 0.28, 0.0),
    ("bnpo", "token", 0.28, 0.04),
    ("dr_grpo", "token", None, 0.04),
    ("dr_grpo", "token", 0.28, 0.0),
    ("dapo", "token", 0.28, 0.04),
    ("dapo", "token", None, 0.0),
    ("grpo", "sequence", None, 0.04),  # GSPO
    ("grpo", "sequence", 0.28, 0.0),
]


@pytest.mark.parametrize(("loss_type", "level", "epsilon_high", "beta"), CASES)
def test_loss_and_gradient_equal_trls(loss_type: str, level: str, epsilon_high: float | None, beta: float) -> None:
    micro = [fixed_tensors(0), fixed_tensors(1)]
    assert micro[0]["mask"].sum() != micro[1]["mask"].sum(), "bnpo and dapo differ only when micro-batches do"
    theirs = trl_step_loss(micro, loss_type=loss_type, importance_sampling_level=level, epsilon=0.2,
                           epsilon_high=epsilon_high, beta=beta)
    grads_theirs = torch.autograd.grad(theirs, [t["logps"] for t in micro])
    ours, clip_share = our_step_loss(micro, loss_type=loss_type, beta=beta, epsilon=0.2, epsilon_high=epsilon_high,
                                     sequence=level == "sequence")
    grads_ours = torch.autograd.grad(ours, [t["logps"] for t in micro])
    assert 0 < clip_share < 1, "the check should exercise the clip"
    assert abs(ours.item() - theirs.item()) <= 1e-6, (ours.item(), theirs.item())
    for mine, trl in zip(grads_ours, grads_theirs):
        assert torch.allclose(mine, trl, atol=1e-6, rtol=0)


def test_the_loss_types_really_differ_on_these_tensors() -> None:
    """A parity test that a wrong loss type would also pass proves nothing: each one gives its own number."""
    micro = [fixed_tensors(0), fixed_tensors(1)]
    values = {kind: our_step_loss(micro, loss_type=kind, beta=0.04, epsilon=0.2, epsilon_high=0.28, sequence=False)[0].item()
              for kind in LOSS_TYPES}
    assert len({round(v, 6) for v in values.values()}) == len(LOSS_TYPES), values


def test_advantage_scales() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.5, 1.5, 2.5, 3.5])
    centred = rewards.view(3, 4) - rewards.view(3, 4).mean(dim=1, keepdim=True)
    assert torch.equal(group_advantages(rewards, 4, "none"), centred.view(-1)), "Dr. GRPO: centred, not divided"
    assert torch.allclose(group_advantages(rewards, 4, "batch"), centred.view(-1) / (rewards.std() + 1e-4))
    assert torch.allclose(group_advantages(rewards, 4, "group"), group_advantages(rewards, 4))
    assert flat_groups(rewards, 4).tolist() == [False, True, False]


def test_a_completion_without_eos_is_truncated() -> None:
    ids = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 0, 0, 0]])
    assert truncated(ids, eos=2).tolist() == [False, True, False]


def raw(grpo: dict) -> dict:
    return {"name": "g", "model": "m", "method": "grpo", "data": {"train": "t"}, "grpo": {"rewards": ["exact_match"], **grpo}}


def test_defaults_are_the_2024_formulation() -> None:
    spec = recipe_from_dict(raw({})).grpo
    assert spec is not None
    assert (spec.loss_type, spec.importance_sampling_level, spec.scale_rewards) == ("grpo", "token", "group")
    assert spec.clip_high == spec.clip_eps and not spec.mask_truncated_completions and not spec.dynamic_sampling


@pytest.mark.parametrize(("grpo", "message"), [
    ({"loss_type": "dapo", "importance_sampling_level": "sequence"}, "needs loss_type: grpo"),
    ({"loss_type": "drgrpo"}, "grpo.loss_type"),
    ({"scale_rewards": "groups"}, "grpo.scale_rewards"),
    ({"epsilon_high": 0}, "grpo.epsilon_high"),
    ({"dynamic_sampleing": True}, "did you mean 'grpo.dynamic_sampling'"),
])
def test_bad_combinations_are_recipe_errors(grpo: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        recipe_from_dict(raw(grpo))


def test_ppo_has_none_of_them() -> None:
    bad = {"name": "p", "model": "m", "method": "ppo", "data": {"train": "t"},
           "ppo": {"rewards": ["exact_match"], "loss_type": "dapo"}}
    with pytest.raises(UserError, match="ppo.loss_type"):
        recipe_from_dict(bad)


