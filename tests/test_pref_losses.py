"""Preference losses: pure-function properties, and parity with TRL 1.16 on identical inputs (fp32, tiny model).

TRL is the reference here only (never imported by tunesmith/). Its DPO and KTO trainers are built on the
same tiny model with the same LoRA weights, and their `_compute_loss` is called on our own batch tensors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.pipeline import prepare_data
from tunesmith.data.types import IGNORE_INDEX
from tunesmith.methods.dpo.losses import dpo_loss
from tunesmith.methods.dpo.objective import Dpo
from tunesmith.methods.kto.losses import kto_kl, kto_loss
from tunesmith.methods.kto.objective import Kto
from tunesmith.methods.orpo.losses import orpo_loss
from tunesmith.methods.orpo.objective import Orpo
from tunesmith.methods.reward.losses import pairwise_reward_loss
from tunesmith.methods.shared.logprobs import scored_tokens, token_logps
from tunesmith.models.load import load_tokenizer
from tunesmith.recipe.spec import recipe_from_dict
from tunesmith.testing.tiny import save_tiny

WORDS = ["cat", "dog", "sun", "tree"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny("llama", tmp_path_factory.mktemp("pref") / "base", vocab_size=300)


def setup(tiny: Path, tmp_path: Path, method: str, rows: list[dict], **blocks: dict):
    """Recipe, prepared data and tokenizer for `rows` on the tiny model (fp32, no autocast)."""
    data_file = tmp_path / "rows.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = recipe_from_dict({
        "name": "p", "model": str(tiny), "method": method, "output": str(tmp_path),
        "data": {"train": str(data_file), "eval": 0.0, "template": "plain"},
        "train": {"batch_size": len(rows), "max_seq_len": 64, "mixed_precision": "no", "max_steps": 1},
        "model_options": {"dtype": "fp32"}, **blocks,
    })
    tokenizer = load_tokenizer(str(tiny))
    return recipe, prepare_data(recipe, tokenizer), tokenizer


def lora_config():
    from peft import LoraConfig

    # init_lora_weights=False: random B, so the policy differs from the adapter-disabled reference.
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", init_lora_weights=False)


def base_model(tiny: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)


def raise_likelihood(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, steps: int = 5) -> None:
    """A few SFT steps on the adapter, so the policy prefers these sequences to the reference."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, IGNORE_INDEX)).loss.backward()
        optimizer.step()


PAIRS = [{"prompt": f"Say {w}", "chosen": f"{w} is good{'!' * i}", "rejected": f"No {w} here at all"[: 6 + 3 * i]}
         for i, w in enumerate(WORDS)]


# ---- pure functions ---------------------------------------------------------------------------------


def test_token_logps_gathers_log_softmax_at_scored_positions_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[IGNORE_INDEX, 3, 4, IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX, 1, 2, 7]])
    got = token_logps(logits, labels)
    expected = torch.zeros(2, 4)
    for b, t in [(0, 1), (0, 2), (1, 2), (1, 3), (1, 4)]:
        expected[b, t - 1] = logits[b, t - 1].log_softmax(-1)[labels[b, t]]
    assert torch.allclose(got, expected, atol=1e-6)
    assert scored_tokens(labels).tolist() == [2.0, 3.0]


def test_dpo_label_smoothing_is_conservative_dpo() -> None:
    chosen, rejected, tokens = torch.tensor([0.5, -1.0]), torch.tensor([0.1, 0.3]), torch.tensor([3.0, 4.0])
    losses, rc, rr = dpo_loss(chosen, rejected, tokens, tokens, loss="sigmoid", beta=0.2, label_smoothing=0.1)
    z = 0.2 * (chosen - rejected)
    assert torch.allclose(losses, -0.9 * F.logsigmoid(z) - 0.1 * F.logsigmoid(-z))
    assert torch.allclose(rc, 0.2 * chosen) and torch.allclose(rr, 0.2 * rejected)
    even, _, _ = dpo_loss(chosen, chosen, tokens, tokens, loss="sigmoid", beta=0.2)
    assert torch.allclose(even, torch.full((2,), math.log(2)))


def test_kto_baseline_never_goes_below_zero_and_carries_no_gradient() -> None:
    logps = torch.tensor([-3.0, -2.0], requires_grad=True)
    assert kto_kl(logps, torch.tensor([-1.0, -1.0])).item() == 0.0
    kl = kto_kl(logps, torch.tensor([-4.0, -4.0]))
    assert kl.item() == pytest.approx(1.5) and not kl.requires_grad
    losses, _ = kto_loss(torch.tensor([1.0, 1.0]), torch.tensor([True, False]), torch.tensor(0.0), beta=1.0,
                         desirable_weight=2.0, undesirable_weight=0.5)
    assert losses.tolist() == pytest.approx([2 * (1 - torch.sigmoid(torch.tensor(1.0)).item()),
                                             0.5 * (1 - torch.sigmoid(torch.tensor(-1.0)).item())])


def test_reward_and_orpo_losses_at_a_tie() -> None:
    assert pairwise_reward_loss(torch.zeros(3), torch.zeros(3)).tolist() == pytest.approx([math.log(2)] * 3)
    mean = torch.tensor([-0.7, -2.0])
    losses, log_odds = orpo_loss(mean, mean, -mean, beta=0.5)
    assert log_odds.tolist() == [0.0, 0.0]
    assert losses.tolist() == pytest.approx((-mean + 0.5 * math.log(2)).tolist())


# ---- parity with TRL ---------------------------------------------------------------------------------


def test_dpo_sigmoid_ipo_hinge_equal_trl(tiny: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    recipe, data, tokenizer = setup(tiny, tmp_path, "dpo", PAIRS)
    torch.manual_seed(0)
    trainer = DPOTrainer(
        model=base_model(tiny), processing_class=tokenizer, train_dataset=Dataset.from_list(PAIRS),
        args=DPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", bf16=False, max_length=64),
        peft_config=lora_config(),
    )
    model = trainer.model  # the PEFT model TRL built; the reference is the same with the adapter disabled
    ours = Dpo(recipe, data, tokenizer, model)
    batch = ours.step_batches(0, model)[0]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
              "completion_mask": (batch["labels"] != IGNORE_INDEX).long()}
    for loss, beta in [("sigmoid", 0.1), ("ipo", 0.5), ("hinge", 2.0)]:
        ours.spec = ours.spec.model_copy(update={"loss": loss, "beta": beta})
        trainer.loss_types, trainer.beta = [loss], beta
        loss_sum, metrics = ours.loss_sum(model, batch)
        theirs = trainer._compute_loss(model, inputs, False)
        logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        pairs = len(PAIRS)
        assert loss_sum.item() / pairs == pytest.approx(theirs.item(), abs=1e-5), loss
        assert metrics["rewards/chosen"] / pairs == pytest.approx(logged["rewards/chosen"], abs=1e-5)
        assert metrics["rewards/rejected"] / pairs == pytest.approx(logged["rewards/rejected"], abs=1e-5)
        assert metrics["margin"] / pairs == pytest.approx(logged["rewards/margins"], abs=1e-5)
        assert metrics["accuracy"] / pairs == pytest.approx(logged["rewards/accuracies"], abs=1e-6)
    assert abs(metrics["margin"]) > 1e-3, "the random adapter should move the policy away from the reference"


def test_simpo_and_smoothed_losses_equal_trl_cpo() -> None:
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    torch.manual_seed(1)
    chosen, rejected = torch.randn(6) * 5 - 20, torch.randn(6) * 5 - 20
    chosen_tokens, rejected_tokens = torch.randint(3, 9, (6,)).float(), torch.randint(3, 9, (6,)).float()
    for loss, smoothing in [("simpo", 0.0), ("simpo", 0.2), ("sigmoid", 0.2)]:
        cpo = SimpleNamespace(alpha=0.0, loss_type=loss, beta=2.0, simpo_gamma=0.7, label_smoothing=smoothing,
                              accelerator=SimpleNamespace(device="cpu"))
        scale = (chosen_tokens, rejected_tokens) if loss == "simpo" else (1.0, 1.0)  # CPO averages for simpo
        theirs, their_c, their_r = CPOTrainer.cpo_loss(cpo, chosen / scale[0], rejected / scale[1])
        ours, our_c, our_r = dpo_loss(chosen, rejected, chosen_tokens, rejected_tokens, loss=loss, beta=2.0,
                                      label_smoothing=smoothing, simpo_gamma=0.7)
        assert torch.allclose(ours, theirs, atol=1e-5), (loss, smoothing)
        assert torch.allclose(our_c, their_c, atol=1e-5) and torch.allclose(our_r, their_r, atol=1e-5)


def test_kto_equals_trl(tiny: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    rows = [{"prompt": f"Say {w}", "completion": f"{w} is good{'!' * i}", "label": i % 2 == 0} for i, w in enumerate(WORDS)]
    weights = {"beta": 0.3, "desirable_weight": 1.5, "undesirable_weight": 0.7}
    recipe, data, tokenizer = setup(tiny, tmp_path, "kto", rows, kto=weights)
    torch.manual_seed(3)
    trainer = KTOTrainer(
        model=base_model(tiny), processing_class=tokenizer, train_dataset=Dataset.from_list(rows),
        args=KTOConfig(output_dir=str(tmp_path / "trl"), report_to="none", bf16=False, max_length=64,
                       per_device_train_batch_size=len(rows), **weights),
        peft_config=lora_config(),
    )
    model = trainer.model
    ours = Kto(recipe, data, tokenizer, model)
    batch = ours.step_batches(0, model)[0]
    raise_likelihood(model, batch["kl_input_ids"], batch["kl_attention_mask"])  # so the KL baseline is > 0
    inputs = {
        "input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
        "completion_mask": (batch["labels"] != IGNORE_INDEX).long(), "label": batch["desirable"].bool(),
        "KL_input_ids": batch["kl_input_ids"], "KL_attention_mask": batch["kl_attention_mask"],
        "KL_completion_mask": (batch["kl_labels"] != IGNORE_INDEX).long(),
    }
    loss_sum, metrics = ours.loss_sum(model, batch)
    theirs = trainer._compute_loss(model, inputs, False)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    n = len(rows)
    assert loss_sum.item() / n == pytest.approx(theirs.item(), abs=1e-5)
    assert metrics["kl"] / n == pytest.approx(logged["kl"], abs=1e-5) and logged["kl"] > 0.01
    assert metrics["rewards/chosen"] / n == pytest.approx(logged["rewards/chosen"], abs=1e-5)
    assert metrics["rewards/rejected"] / n == pytest.approx(logged["rewards/rejected"], abs=1e-5)


def test_orpo_odds_ratio_and_mean_logps_equal_trl(tiny: Path, tmp_path: Path) -> None:
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    recipe, data, tokenizer = setup(tiny, tmp_path, "orpo", PAIRS, orpo={"beta": 0.25})
    torch.manual_seed(0)
    model = base_model(tiny)
    ours = Orpo(recipe, data, tokenizer, model)
    batch = ours.step_batches(0, model)[0]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    means = ORPOTrainer.get_batch_logps(logits, batch["labels"], average_log_prob=True)
    chosen, rejected = means.chunk(2)
    orpo = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device="cpu"))
    their_terms, their_c, their_r, _, their_log_odds = ORPOTrainer.odds_ratio_loss(orpo, chosen, rejected)
    loss_sum, metrics = ours.loss_sum(model, batch)
    pairs = len(PAIRS)
    # Our loss per pair: NLL of the chosen answer (its mean log-prob, negated) minus TRL's odds-ratio term.
    assert loss_sum.item() / pairs == pytest.approx((-chosen - their_terms).mean().item(), abs=1e-5)
    assert metrics["log_odds"] / pairs == pytest.approx(their_log_odds.item(), abs=1e-5)
    assert metrics["rewards/chosen"] / pairs == pytest.approx(their_c.mean().item(), abs=1e-5)
    assert metrics["rewards/rejected"] / pairs == pytest.approx(their_r.mean().item(), abs=1e-5)


def test_orpo_total_loss_equals_trl_when_both_count_the_same_tokens(tiny: Path, tmp_path: Path) -> None:
    """TRL's ORPO NLL is a token mean over prompt and answer; with a one-token prompt (BOS, never a target)
    and chosen answers of equal length, it is exactly our per-pair mean answer NLL, so the totals must agree."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    recipe, data, tokenizer = setup(tiny, tmp_path, "orpo", PAIRS, orpo={"beta": 0.25})
    torch.manual_seed(0)
    model = base_model(tiny)
    ours = Orpo(recipe, data, tokenizer, model)
    ids = torch.randint(4, 300, (6, 9))
    ids[:, 0] = 1
    mask = torch.ones_like(ids)
    mask[4, 6:], mask[5, 4:] = 0, 0  # two rejected answers are shorter (right padding)
    labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
    labels[:, 0] = IGNORE_INDEX
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    loss_sum, _ = ours.loss_sum(model, batch)
    trl = SimpleNamespace(is_encoder_decoder=False, padding_value=0, aux_loss_enabled=False, beta=0.25,
                          accelerator=SimpleNamespace(device="cpu", gather_for_metrics=lambda x: x))
    trl.concatenated_inputs = ORPOTrainer.concatenated_inputs
    trl.get_batch_logps = ORPOTrainer.get_batch_logps
    trl.odds_ratio_loss = lambda c, r: ORPOTrainer.odds_ratio_loss(trl, c, r)
    trl.concatenated_forward = lambda m, b: ORPOTrainer.concatenated_forward(trl, m, b)
    halves = {name: value.chunk(2) for name, value in batch.items()}
    trl_batch = {f"{side}_{name}": halves[name][k] for k, side in enumerate(("chosen", "rejected"))
                 for name in ("input_ids", "attention_mask", "labels")}
    theirs, _ = ORPOTrainer.get_batch_loss_metrics(trl, model, trl_batch)
    assert loss_sum.item() / 3 == pytest.approx(theirs.item(), abs=1e-5)
