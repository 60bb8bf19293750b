"""The one training loop every method shares.  Run it with:  tunesmith train RECIPE.yaml [key=value ...]

Reads top to bottom: build the run (tokenizer, data, model + adapter, batch plan, optimizer), then for each
optimizer step: accumulate micro-batches with the loss normalised by the trained tokens of the whole step,
clip, step, log, evaluate and checkpoint on schedule. A non-finite loss stops before the update touches the
weights; Ctrl-C saves a checkpoint first. Outputs land in the self-describing run folder (run_folder.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from rich.console import Console

from tunesmith.adapters import apply_adapter
from tunesmith.data.pipeline import PreparedData, prepare_data
from tunesmith.errors import UserError
from tunesmith.models import count_parameters, load_model, load_tokenizer
from tunesmith.recipe import Recipe
from tunesmith.train.batches import BatchPlan, plan_batches
from tunesmith.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from tunesmith.train.evaluation import evaluate_loss
from tunesmith.train.losses import count_trained_tokens, token_nll_sum
from tunesmith.train.monitor import MetricsLog, detect_overfitting
from tunesmith.train.optim import build_optimizer, build_scheduler
from tunesmith.train.precision import resolve_mixed_precision
from tunesmith.train.progress import TrainProgress
from tunesmith.train.run_folder import RunFolder

console = Console(stderr=True)


class TrainingDiverged(UserError):
    """The loss became NaN/inf; the weights were not updated with it."""


@dataclass
class Trainer:
    """The pieces of a run once built; `run()` executes the loop."""

    recipe: Recipe
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: Any
    data: PreparedData
    plan: BatchPlan
    eval_plan: BatchPlan | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    folder: RunFolder
    metrics: MetricsLog
    state: dict[str, Any] = field(default_factory=lambda: {"step": 0, "tokens": 0, "best_eval_loss": None})


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> RunFolder:
    """Run `recipe` end to end and return its run folder."""
    trainer = build_trainer(recipe, resume=resume, overwrite=overwrite)
    trainer_run(trainer)
    return trainer.folder


def build_trainer(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> Trainer:
    folder = RunFolder(recipe.run_dir)
    folder.prepare(resume=resume, overwrite=overwrite)
    set_seed(recipe.train.seed)
    accelerator = Accelerator(mixed_precision=resolve_mixed_precision(recipe.train.mixed_precision))
    tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    data = prepare_data(recipe, tokenizer)
    model = load_model(
        recipe.model,
        dtype=recipe.model_options.dtype if recipe.adapter != "full" else "fp32",
        attn_implementation=recipe.model_options.attn_implementation,
        trust_remote_code=recipe.model_options.trust_remote_code,
    )
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = apply_adapter(model, recipe.adapter, recipe.adapter_args)
    t = recipe.train
    plan = plan_batches(
        data.train, batch_size=t.batch_size, accum=t.grad_accum, epochs=t.epochs, max_steps=t.max_steps,
        max_seq_len=t.max_seq_len, packing=t.packing, pad_id=tokenizer.pad_token_id, seed=t.seed,
    )
    if plan.steps == 0:
        raise UserError(
            f"only {len(plan.micro_batches)} micro-batches for train.grad_accum={t.grad_accum}: lower "
            "train.batch_size or train.grad_accum, or add data"
        )
    eval_plan = None
    if data.eval:
        eval_plan = plan_batches(
            data.eval, batch_size=t.batch_size, accum=1, epochs=1, max_steps=None, max_seq_len=t.max_seq_len,
            packing=t.packing, pad_id=tokenizer.pad_token_id, seed=0,
        )
    optimizer = build_optimizer(model, recipe.lr, t.weight_decay)
    scheduler = build_scheduler(optimizer, t.scheduler, plan.steps, t.warmup_ratio)
    model, optimizer = accelerator.prepare(model, optimizer)
    trainer = Trainer(recipe, accelerator, model, tokenizer, data, plan, eval_plan, optimizer, scheduler,
                      folder, MetricsLog(folder.path))
    trainable, total = count_parameters(model)
    trainer.state.update(trainable_params=trainable, total_params=total)
    console.print(
        f"[bold]{recipe.name}[/]: {recipe.method} / {recipe.adapter} on {recipe.model} — "
        f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%), "
        f"{plan.steps} steps, lr {recipe.lr:g}"
    )
    for note in recipe.advice():
        console.print(f"[yellow]warning:[/] {note}")
    if resume:
        _resume(trainer)
    return trainer


def _resume(trainer: Trainer) -> None:
    checkpoint = latest_checkpoint(trainer.folder.path)
    if checkpoint is None:
        raise UserError(f"--resume: no complete checkpoint in {trainer.folder.path / 'checkpoints'}")
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainer.state.update(load_checkpoint(checkpoint, model, trainer.optimizer, trainer.scheduler))
    trainer.metrics.truncate_after(trainer.state["step"])
    console.print(f"resumed from {checkpoint} at step {trainer.state['step']}")


def trainer_run(trainer: Trainer) -> None:
    recipe, state = trainer.recipe, trainer.state
    trainer.folder.write_run_json(recipe, trainer.data, state, status="running")
    if state["step"] == 0:
        _evaluate(trainer, step=0)
    progress = TrainProgress(total=trainer.plan.steps, start=state["step"])
    try:
        with progress:
            for step in range(state["step"], trainer.plan.steps):
                record = _train_step(trainer, step)
                progress.update(step + 1, record)
                _after_step(trainer, step + 1)
    except KeyboardInterrupt:
        path = _save(trainer)
        console.print(f"[yellow]interrupted[/]: saved {path}; continue with --resume")
        trainer.folder.write_run_json(recipe, trainer.data, state, status="interrupted")
        raise SystemExit(130) from None
    _finish(trainer)


def _train_step(trainer: Trainer, step: int) -> dict[str, Any]:
    """One optimizer step over `accum` micro-batches; the loss is a token mean over all of them."""
    model, accelerator, state = trainer.model, trainer.accelerator, trainer.state
    model.train()
    started = time.perf_counter()
    batches = trainer.plan.step_batches(step)
    local_tokens = sum(count_trained_tokens(b["labels"]) for b in batches)
    total_tokens = int(accelerator.reduce(torch.tensor(local_tokens, device=accelerator.device), "sum").item())
    real_tokens = trainer.plan.real_tokens(step)
    nll_total = 0.0
    for batch in batches:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits
        nll_sum, _ = token_nll_sum(logits, labels)
        accelerator.backward(nll_sum / max(total_tokens, 1) * accelerator.num_processes)
        nll_total += nll_sum.item()
    loss = nll_total / max(local_tokens, 1)
    if not math.isfinite(loss):
        trainer.optimizer.zero_grad(set_to_none=True)
        last = latest_checkpoint(trainer.folder.path)
        trainer.folder.write_run_json(trainer.recipe, trainer.data, state, status="diverged")
        raise TrainingDiverged(
            f"loss became {loss} at step {step + 1}; the weights were not updated with it"
            + (f" and the last good checkpoint is {last}" if last else "")
            + ". Lower train.lr, enable train.max_grad_norm, or check the data for broken rows."
        )
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), trainer.recipe.train.max_grad_norm)
    lr = trainer.scheduler.get_last_lr()[0]
    trainer.optimizer.step()
    trainer.scheduler.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - started
    state["step"] = step + 1
    state["tokens"] += real_tokens
    record = {
        "step": step + 1, "loss": loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": state["tokens"],
        "trained_tokens": local_tokens, "tokens_per_s": real_tokens / max(elapsed, 1e-9),
    }
    if (step + 1) % trainer.recipe.train.log_every == 0 or step + 1 == trainer.plan.steps:
        trainer.metrics.log(record)
    return record


def _after_step(trainer: Trainer, step: int) -> None:
    t = trainer.recipe.train
    last = step == trainer.plan.steps
    if t.eval_every and step % t.eval_every == 0 and not last:
        _evaluate(trainer, step)
    if t.save_every and step % t.save_every == 0 and not last:
        _save(trainer)


def _evaluate(trainer: Trainer, step: int) -> float | None:
    if trainer.eval_plan is None:
        return None
    loss = evaluate_loss(trainer.model, trainer.eval_plan, trainer.accelerator)
    trainer.metrics.log({"step": step, "eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))})
    state = trainer.state
    if state["best_eval_loss"] is None or loss < state["best_eval_loss"]:
        state["best_eval_loss"], state["best_step"] = loss, step
    if trainer.recipe.train.patience:
        warning = detect_overfitting(trainer.metrics.evals, trainer.metrics.trains, trainer.recipe.train.patience)
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
            state["overfitting"] = warning
    return loss


def _save(trainer: Trainer) -> Path:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return save_checkpoint(
        trainer.folder.path, trainer.state["step"], model, trainer.optimizer, trainer.scheduler,
        dict(trainer.state), keep=trainer.recipe.train.keep_checkpoints,
    )


def _finish(trainer: Trainer) -> None:
    """Final evaluation, weights/adapter, plot and run.json."""
    state = trainer.state
    final_eval = _evaluate(trainer, state["step"])
    model = trainer.accelerator.unwrap_model(trainer.model)
    output = trainer.folder.save_weights(model, trainer.tokenizer, trainer.recipe.adapter)
    plot = trainer.folder.plot(trainer.metrics)
    evals = trainer.metrics.evals
    state["final"] = {
        "train_loss": trainer.metrics.trains[-1][1] if trainer.metrics.trains else None,
        "eval_loss_before": evals[0][1] if evals and evals[0][0] == 0 else None,
        "eval_loss": final_eval,
    }
    trainer.folder.write_run_json(trainer.recipe, trainer.data, state, status="done")
    before, after = state["final"]["eval_loss_before"], final_eval
    if before is not None and after is not None:
        console.print(f"held-out loss: {before:.4f} -> {after:.4f} ({after - before:+.4f})")
    console.print(f"run folder: {trainer.folder.path}\n  weights: {output}\n  plot: {plot}")
