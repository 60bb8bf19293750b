"""The one training loop every method shares.  Run it with:  tunesmith train RECIPE.yaml [key=value ...]

Reads top to bottom: build the run (tokenizer, data, model + adapter, batch plan, optimizer), then for each
optimizer step: accumulate micro-batches with the loss normalised by the trained tokens of the whole step,
clip, step, log, evaluate and checkpoint on schedule. A non-finite loss stops before the update touches the
weights; Ctrl-C saves a checkpoint first. Outputs land in the self-describing run folder (runs/folder.py);
every metrics record also goes to the trackers in train.report_to (train/trackers.py).
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

from tunesmith.adapters.build import apply_adapter
from tunesmith.data.pipeline import PreparedData, prepare_data
from tunesmith.errors import UserError
from tunesmith.methods import build_objective
from tunesmith.models.load import count_parameters, load_dtype_name, load_model, load_tokenizer, resolve_dtype
from tunesmith.plan.checkpointing import decide_checkpointing
from tunesmith.recipe.spec import Recipe
from tunesmith.runs.disk import checkpoint_bytes, final_bytes, require_free_disk, tokenizer_bytes
from tunesmith.runs.failures import RecordedStop, recording_failures
from tunesmith.runs.folder import RunFolder
from tunesmith.runs.metrics import MetricsLog
from tunesmith.speedups.kernels import apply_kernels, attention_dtype
from tunesmith.train import distributed, fsdp2, preflight, resume_guard, stop_request, stream_plan
from tunesmith.train.accelerator import fresh_accelerator, resolve_mixed_precision
from tunesmith.train.checkpoint import list_checkpoints, load_checkpoint, rng_states, save_checkpoint
from tunesmith.train.divergence import divergence_advice, set_aside_bad_checkpoint
from tunesmith.train.monitor import detect_overfitting, plot_losses
from tunesmith.train.objective import Objective
from tunesmith.train.optim import build_optimizer, build_scheduler
from tunesmith.train.plan_check import measure_run
from tunesmith.train.profile import StepProfiler
from tunesmith.train.progress import BASE_EVAL, TrainProgress
from tunesmith.train.schedule_change import apply_schedule_change, schedule_settings
from tunesmith.train.speedups import apply_speedups
from tunesmith.train.state import TrainState
from tunesmith.train.trackers import accelerator_kwargs, end_trackers, log_to_trackers, start_trackers

console = Console(stderr=True)


class TrainingDiverged(RecordedStop):
    """The loss became NaN/inf; the weights were not updated with it."""


@dataclass
class Trainer:
    """The pieces of a run once built; `trainer_run()` executes the loop."""

    recipe: Recipe
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: Any
    data: PreparedData
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    folder: RunFolder
    metrics: MetricsLog
    profiler: StepProfiler = field(default_factory=lambda: StepProfiler(enabled=False))
    state: TrainState = field(default_factory=TrainState)


def train(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, profile: bool = False,
          advice: bool = True) -> RunFolder:
    """Run `recipe` end to end, return its run folder; `profile` prints where step time went; `advice=False` omits
    the recipe's advice (for a caller that explains its deviation itself, as the demo does)."""
    trainer = build_trainer(recipe, resume=resume, overwrite=overwrite, advice=advice)
    try:
        trainer.profiler = StepProfiler(enabled=profile)
        trainer_run(trainer)
        trainer.profiler.print(console)
    finally:
        trainer.folder.release()
    return trainer.folder


def build_trainer(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, advice: bool = True) -> Trainer:
    """Build every piece of the run; the run folder is locked first, and an old run it holds is replaced
    (--overwrite) only once recipe, model and data have loaded."""
    accelerator = fresh_accelerator(resolve_mixed_precision(recipe.train.mixed_precision),
                                    **distributed.accelerator_options(recipe), **accelerator_kwargs(recipe))
    preflight.check_before_loading(recipe, accelerator.num_processes)  # before any weights load
    console.quiet = not accelerator.is_main_process  # one process speaks for all
    folder = RunFolder(recipe.run_dir, main=accelerator.is_main_process)
    folder.prepare(resume=resume, overwrite=overwrite)
    try:
        return _build(recipe, accelerator, folder, resume, advice)
    except BaseException:
        folder.release()
        raise


def _build(recipe: Recipe, accelerator: Accelerator, folder: RunFolder, resume: bool, advice: bool) -> Trainer:
    set_seed(recipe.train.seed)
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    tokenizer = load_tokenizer(recipe.model, trust_remote_code=recipe.model_options.trust_remote_code)
    data = prepare_data(recipe, tokenizer)
    dtype = load_dtype_name(recipe.adapter, recipe.model_options.dtype)
    model = load_model(
        recipe.model,
        dtype=dtype,
        attn_implementation=recipe.model_options.attn_implementation,
        trust_remote_code=recipe.model_options.trust_remote_code,
        quantization=recipe.adapter_kind.base_quantization,  # apply_adapter prepares it for k-bit training
        compute_dtype=attention_dtype(resolve_dtype(dtype), accelerator.mixed_precision),
    )
    kernels = apply_kernels(model, recipe.model_options.kernels)  # on the bare model, before the adapter wraps it
    speed: dict[str, Any] = {"attn_implementation": model.config._attn_implementation, "kernels": kernels.used}
    checkpointing, checkpoint_note = decide_checkpointing(
        recipe.train.gradient_checkpointing, model.config, tokens=recipe.train.batch_size * recipe.train.max_seq_len,
        half_precision=accelerator.mixed_precision != "no" or resolve_dtype(dtype) != torch.float32,
        device=accelerator.device)
    speed["gradient_checkpointing"] = checkpointing
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = apply_adapter(model, recipe.adapter, recipe.adapter_args, recipe.vision)
    speed.update(apply_speedups(model, recipe, accelerator.device))
    objective = build_objective(recipe, data, tokenizer, model)
    if objective.steps == 0:
        raise UserError(
            f"not enough data for one optimizer step of train.batch_size={recipe.train.batch_size} x "
            f"train.grad_accum={recipe.train.grad_accum}: lower them, or add data"
        )
    model, optimizer, scheduler = _optimize(recipe, accelerator, model, objective.steps)
    _check_disk(recipe, folder, model)
    folder.start()  # validated: only now may --overwrite remove the old run
    trainer = Trainer(recipe, accelerator, model, tokenizer, data, objective, optimizer, scheduler,
                      folder, MetricsLog(folder.path, write=folder.main))
    trainable, total = count_parameters(model)
    trainer.state.trainable_params, trainer.state.total_params, trainer.state.schedule = trainable, total, _schedule(trainer)
    console.print(
        f"[bold]{recipe.name}[/]: {recipe.method} / {recipe.adapter} on {recipe.model} — "
        f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / total:.3f}%), "
        f"{objective.steps} steps, lr {recipe.lr:g}, attention {speed['attn_implementation']}, "
        f"kernels {speed['kernels']}, {speed['fused_lora_layers']} LoRA layers fused")
    for note in [*(recipe.advice() if advice else []), *filter(None, [kernels.note]), *preflight.batch_notes(recipe, data)]:
        console.print(f"[yellow]warning:[/] {note}")
    if checkpoint_note and checkpointing:
        console.print(checkpoint_note)
    if resume:
        _resume(trainer)
    trainer.state.recorded.update(speed)  # after resume: what this machine runs, not what the checkpoint's did
    folder.write_record(recipe, data.summary(), trainer.state.to_json(), status="running")  # a refused resume left it as it was
    return trainer


def _optimize(recipe: Recipe, accelerator: Accelerator, model: torch.nn.Module, steps: int) -> tuple[Any, Any, Any]:
    """Model (DDP-wrapped, sharded for fsdp2, a DeepSpeed engine for zero2/3), optimizer and schedule."""
    t = recipe.train
    sharded = recipe.distributed.strategy == "fsdp2" and accelerator.num_processes > 1
    if sharded:  # before the optimizer: it must hold the sharded parameters
        fsdp2.check_supported(recipe)
        model = fsdp2.shard_model(model, accelerator.num_processes)
    optimizer = build_optimizer(model, recipe.lr, t.weight_decay)
    scheduler = build_scheduler(optimizer, t.scheduler, steps, t.warmup_ratio)
    if sharded:
        return model, accelerator.prepare(optimizer), scheduler
    model, optimizer = accelerator.prepare(model, optimizer)
    distributed.check_sharded(accelerator, model, recipe.distributed.strategy)
    return model, optimizer, scheduler


def _schedule(trainer: Trainer) -> dict[str, Any]:
    t = trainer.recipe.train
    return schedule_settings(trainer.recipe.lr, t.scheduler, t.warmup_ratio, trainer.objective.steps)


def _check_disk(recipe: Recipe, folder: RunFolder, model: torch.nn.Module) -> None:
    t = recipe.train
    saves = (t.keep_checkpoints + 1 + (1 if t.patience else 0)) if t.save_every else 0
    require_free_disk(folder.path, checkpoint=checkpoint_bytes(model), checkpoints=saves,
                      final=final_bytes(model, full=recipe.adapter_kind.trains_base) + tokenizer_bytes(recipe.model))


def _resume(trainer: Trainer) -> None:
    checkpoint = resume_guard.checkpoint_to_resume(trainer.recipe, trainer.folder.path, trainer.data.sources)
    if checkpoint is None:
        console.print(f"--resume: no checkpoint in {trainer.folder.path} yet (the run stopped before its first "
                      "one), so it starts over from step 0")
        trainer.metrics.truncate_after(-1)
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    sharded = fsdp2.is_sharded(model)
    if sharded:
        fsdp2.load_checkpoint_into(checkpoint, model, trainer.optimizer)
    trainer.state.restore(load_checkpoint(checkpoint, None if sharded else model, None if sharded else trainer.optimizer,
                                          trainer.scheduler, rank=distributed.rank_of(trainer.accelerator)))
    stream_plan.seek(trainer.objective, trainer.state.data_position, trainer.state.step)
    current = _schedule(trainer)
    changed = apply_schedule_change(trainer.optimizer, trainer.scheduler, trainer.state.schedule, current)
    trainer.state.schedule = current
    if changed:
        console.print(f"resuming with the recipe's new schedule ({'; '.join(changed)}), not the checkpoint's")
    trainer.metrics.truncate_after(trainer.state.step)
    console.print(f"resumed from {checkpoint} at step {trainer.state.step}")


def trainer_run(trainer: Trainer) -> None:
    """The loop; whatever stops it early is recorded in run.json (runs/failures.py)."""
    recipe, state = trainer.recipe, trainer.state

    def record(status: str, reason: str) -> None:
        trainer.folder.write_record(recipe, trainer.data.summary(), state.to_json(), status=status, reason=reason)

    with recording_failures(record, trainer.folder.path):
        _run_steps(trainer)


def _run_steps(trainer: Trainer) -> None:
    recipe, state = trainer.recipe, trainer.state
    written = trainer.folder.write_record(recipe, trainer.data.summary(), state.to_json(), status="running")
    start_trackers(trainer.accelerator, recipe, written.recipe)
    progress = TrainProgress(total=trainer.objective.steps, start=state.step)
    if state.step == 0:  # labelled on the bar; the display it starts goes on into the steps
        progress.during(BASE_EVAL, lambda: _evaluate(trainer, step=0))
    try:
        with progress, stop_request.agreed_stop(trainer.accelerator) as stop:
            for step in range(state.step, trainer.objective.steps):
                record = _train_step(trainer, step)
                progress.update(step + 1, record)
                stop.check()  # several processes: all stop after the same step, so the save below is collective
                if _after_step(trainer, step + 1):
                    break
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: saved {_save(trainer)}; continue with --resume")
        trainer.folder.write_record(recipe, trainer.data.summary(), state.to_json(), status="interrupted",
                                    reason=f"interrupted (Ctrl-C) during step {state.step + 1}")
        end_trackers(trainer.accelerator)
        raise SystemExit(130) from None
    _finish(trainer)


def _train_step(trainer: Trainer, step: int) -> dict[str, Any]:
    """One optimizer step over `accum` micro-batches; the loss is a token mean over all of them."""
    model, accelerator, state = trainer.model, trainer.accelerator, trainer.state
    model.train()
    started = time.perf_counter()
    objective, profiler = trainer.objective, trainer.profiler
    with profiler.phase("data"):
        batches = distributed.shard(objective.step_batches(step, model), accelerator)
    local_units = sum(objective.units(b) for b in batches)
    total_units = int(accelerator.reduce(torch.tensor(local_units, device=accelerator.device), "sum").item())
    loss_total = 0.0
    extras: dict[str, float] = {}
    for index, batch in enumerate(batches):
        with profiler.phase("forward"):
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            loss_sum, metrics = objective.loss_sum(model, batch)
        with profiler.phase("backward"):
            distributed.backward(accelerator, model, loss_sum / max(total_units, 1) * accelerator.num_processes,
                                 last=index == len(batches) - 1)
        loss_total += loss_sum.item()
        for key, value in metrics.items():
            extras[key] = extras.get(key, 0.0) + value
    keys = sorted(extras)
    loss_total, *sums = distributed.global_sums(accelerator, [loss_total, *(extras[k] for k in keys)])
    extras = dict(zip(keys, sums))
    loss = loss_total / max(total_units, 1)
    if not math.isfinite(loss):
        _diverged(trainer, step, loss)
    lr = trainer.scheduler.get_last_lr()[0]
    with profiler.phase("optimizer"):
        grad_norm = distributed.optimizer_step(accelerator, model, trainer.optimizer, trainer.recipe.train.max_grad_norm)
        trainer.scheduler.step()
    elapsed = time.perf_counter() - started
    state.step, state.data_position = step + 1, stream_plan.data_position(objective, accelerator)
    real_tokens = objective.real_tokens(step)
    state.tokens += real_tokens
    record = {
        "step": step + 1, "loss": loss, "lr": lr, "grad_norm": float(grad_norm), "tokens": state.tokens,
        "units": total_units, "tokens_per_s": real_tokens / max(elapsed, 1e-9), "step_seconds": elapsed,
        **{key: value / max(total_units, 1) for key, value in extras.items()},
    }
    if (step + 1) % trainer.recipe.train.log_every == 0 or step + 1 == trainer.objective.steps:
        _log(trainer, record)
    return record


def _log(trainer: Trainer, record: dict[str, Any]) -> None:
    """One record to metrics.jsonl and the same record to the recipe's trackers (train.report_to)."""
    trainer.metrics.log(record)
    log_to_trackers(trainer.accelerator, record)


def _after_step(trainer: Trainer, step: int) -> bool:
    """Scheduled evaluation and checkpoint; True when early stopping ends the run at this step."""
    t, state = trainer.recipe.train, trainer.state
    last = step == trainer.objective.steps
    if t.eval_every and step % t.eval_every == 0 and not last:
        _evaluate(trainer, step)
    if state.stopped_early is not None:
        return True  # _finish saves the weights; a checkpoint saying "stopped" would stop a resumed run at once
    best_just_saved = bool(t.patience) and state.best_step == step  # _evaluate saved it
    if t.save_every and step % t.save_every == 0 and not last and not best_just_saved:
        _save(trainer)
    return False


def _evaluate(trainer: Trainer, step: int) -> float | None:
    metrics = trainer.objective.evaluate(trainer.model, trainer.accelerator)
    if not metrics:
        return None
    _log(trainer, {"step": step, **metrics})
    loss = metrics["eval_loss"]
    state, t = trainer.state, trainer.recipe.train
    if state.best_eval_loss is None or loss < state.best_eval_loss:
        state.best_eval_loss, state.best_step = loss, step
        if t.patience and t.save_every and 0 < step < trainer.objective.steps:
            _save(trainer)  # watching for overfitting: keep each new best (protected) until a better one comes
    if t.patience:
        warning = detect_overfitting(trainer.metrics.evals, trainer.metrics.trains, t.patience)
        if warning:
            console.print(f"[yellow]warning:[/] {warning}")
            state.overfitting = warning
            if t.early_stop and step < trainer.objective.steps:
                state.stopped_early = f"train.early_stop at step {step}: {warning}"
    return loss


def _diverged(trainer: Trainer, step: int, loss: float) -> None:
    """Stop on a non-finite loss; the checkpoint of the weights that produced it is set aside (divergence.py)."""
    trainer.optimizer.zero_grad(set_to_none=True)
    reason = f"loss became {loss} at step {step + 1}"
    good, aside = set_aside_bad_checkpoint(trainer.folder.path, step) if trainer.folder.main else (None, None)
    trainer.folder.write_record(trainer.recipe, trainer.data.summary(), trainer.state.to_json(), status="diverged",
                                reason=reason)
    raise TrainingDiverged(f"{reason}; the weights were not updated with it. "
                           + divergence_advice(good, aside, trainer.recipe.lr, trainer.recipe.train.max_grad_norm))


def _save(trainer: Trainer) -> Path:
    """Checkpoint now: every rank's RNG is gathered, the main process alone writes."""
    accelerator = trainer.accelerator
    rng = distributed.gather_rng(accelerator, rng_states())
    model = accelerator.unwrap_model(trainer.model)
    gathered = fsdp2.gather_checkpoint(model, trainer.optimizer) if fsdp2.is_sharded(model) else None
    best = trainer.state.best_step if trainer.recipe.train.patience else None
    path = trainer.folder.path / "checkpoints" / f"step-{trainer.state.step}"
    if trainer.folder.main:
        path = save_checkpoint(
            trainer.folder.path, trainer.state.step, model, trainer.optimizer, trainer.scheduler,
            trainer.state.to_json(), keep=trainer.recipe.train.keep_checkpoints,
            protect=[best] if best else [], rng=rng, gathered=gathered,
        )
    accelerator.wait_for_everyone()
    return path


def _finish(trainer: Trainer) -> None:
    """Final evaluation, weights/adapter, plot and run.json (with the best checkpoint and any early stop)."""
    state = trainer.state
    evals = trainer.metrics.evals
    already = evals and evals[-1][0] == state.step  # early stop right after an evaluation at this step
    final_eval = evals[-1][1] if already else _evaluate(trainer, state.step)
    model = trainer.accelerator.unwrap_model(trainer.model)
    full = distributed.gathered_weights(trainer.accelerator, trainer.model, trainer.recipe.adapter)
    saved_with = getattr(trainer.objective, "processor", trainer.tokenizer)  # a VLM's: tokenizer + image processor
    output = trainer.folder.save_weights(model, saved_with, trainer.recipe.adapter, state_dict=full)
    main = trainer.folder.main
    plot = plot_losses(trainer.metrics.records, trainer.folder.path / "loss.png", title=trainer.folder.path.name) if main else None
    evals = trainer.metrics.evals
    best_step = state.best_step
    saved = dict(list_checkpoints(trainer.folder.path))
    best_checkpoint = output if best_step == state.step else saved.get(best_step)
    state.recorded.update(measure_run(trainer, model.config))  # peak memory (all ranks; the largest) beside the plan's
    state.final = {
        "train_loss": trainer.metrics.trains[-1][1] if trainer.metrics.trains else None,
        "eval_loss_before": evals[0][1] if evals and evals[0][0] == 0 else None,
        "eval_loss": final_eval,
        "best_step": best_step, "best_eval_loss": state.best_eval_loss,
        "best_checkpoint": str(best_checkpoint) if best_checkpoint else None,
        "stopped_early": state.stopped_early,
    }
    if state.stopped_early:
        console.print(f"[yellow]stopped early[/]: {state.stopped_early}")
    if best_checkpoint:
        console.print(f"best eval loss {state.best_eval_loss:.4f} at step {best_step}: {best_checkpoint}")
    trainer.folder.write_record(trainer.recipe, trainer.data.summary(), state.to_json(), status="done")
    end_trackers(trainer.accelerator)
    before, after = state.final["eval_loss_before"], final_eval
    if before is not None and after is not None:
        if any("eval_reward" in r for r in trainer.metrics.records):  # GRPO/PPO: eval_loss is minus the reward
            console.print(f"held-out reward: {-before:.4f} -> {-after:.4f} ({before - after:+.4f})")
        else:
            console.print(f"held-out loss: {before:.4f} -> {after:.4f} ({after - before:+.4f})")
    console.print(f"run folder: {trainer.folder.path}\n  weights: {output}\n  plot: {plot}")
