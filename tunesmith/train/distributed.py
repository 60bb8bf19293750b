"""Several processes, one run: what the loop does differently when `accelerator.num_processes > 1`.

Started by `tunesmith train RECIPE --nproc N` (launch.py), `torchrun ... -m tunesmith train ...` or
`accelerate launch -m tunesmith train ...`; on CPU the processes talk over gloo.

- The batch plan stays the one plan of a single process (batches.py): optimizer step k still consumes
  the same `grad_accum` micro-batches, and rank r takes micro-batches r, r+N, ... of them. The global batch
  (batch_size x grad_accum rows) and the loss normalisation (trained units of the whole step, summed over
  ranks) are those of one process, so N processes compute the same update as one, up to float summation
  order. That needs grad_accum to be a multiple of N.
- Logged losses and metrics are sums over all ranks divided by the step's units: every rank sees the same
  numbers, so divergence and early-stopping decisions agree.
- Only the main process writes (run.json, metrics.jsonl, checkpoints, weights); every rank's RNG state is
  gathered into the checkpoint, and each rank restores its own on resume.
- The strategy (recipe `distributed.strategy`) decides how the model is held: ddp (accelerate's DDP),
  fsdp2 (fsdp2.py) or DeepSpeed ZeRO-2/3 (zero.py); backward, the optimizer step and the gathering of the
  weights before saving go through the helpers below, which pick the strategy's way.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object

from tunesmith.adapters.kinds import BY_NAME as ADAPTER_KINDS
from tunesmith.errors import UserError
from tunesmith.train import fsdp2, zero


def cpu_processes() -> bool:
    """Several processes and no GPU: accelerate only sets up gloo between CPU processes when told `cpu=True`
    (otherwise each rank silently trains alone, as if it were the only one)."""
    return world_size() > 1 and not torch.cuda.is_available()


def world_size() -> int:
    """Processes in this launch, as the launcher (torchrun, accelerate) tells every one of them."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator_options(recipe: Any) -> dict[str, Any]:
    """`Accelerator(...)` arguments for the recipe's strategy in this launch (one process: none of them)."""
    processes = world_size()
    if processes > 1 and zero.is_zero(recipe.distributed.strategy):
        return zero.accelerator_options(recipe, processes)
    return {"cpu": cpu_processes()}


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def check_sharded(accelerator: Accelerator, model: torch.nn.Module, strategy: str) -> None:
    """For ZeRO, prove the engine shards as the strategy says (zero.check_sharded) and say so once."""
    if uses_deepspeed(accelerator):
        report = zero.check_sharded(model, strategy, accelerator.num_processes)
        if accelerator.is_main_process:
            print(report, file=sys.stderr)


def backward(accelerator: Accelerator, model: torch.nn.Module, loss: torch.Tensor, last: bool) -> None:
    """Backward of one micro-batch of a step (`last`: the step's final one)."""
    if uses_deepspeed(accelerator):
        zero.backward(model, loss, last)
    else:
        accelerator.backward(loss)


def optimizer_step(accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, max_norm: float) -> float:
    """Clip the gradients at `max_norm`, update, zero the gradients; returns the norm before clipping."""
    if uses_deepspeed(accelerator):
        return zero.step(model)
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def gathered_weights(accelerator: Accelerator, model: torch.nn.Module, adapter: str) -> dict[str, Any] | None:
    """The full tensors to save when the model is sharded (a collective: every rank calls it); None when
    the model in memory already holds them."""
    inner = accelerator.unwrap_model(model)
    if fsdp2.is_sharded(inner):
        return fsdp2.full_state(inner, trainable_only=not ADAPTER_KINDS[adapter].trains_base)
    if uses_deepspeed(accelerator):
        return zero.full_state(accelerator, model)
    return None


def check_layout(grad_accum: int, num_processes: int) -> None:
    """Each rank takes whole micro-batches of every step: the step's count must divide evenly."""
    if num_processes > 1 and grad_accum % num_processes:
        raise UserError(
            f"train.grad_accum={grad_accum} cannot be split over {num_processes} processes: each optimizer step's "
            f"micro-batches are shared out between them, so set train.grad_accum to a multiple of {num_processes} "
            f"(the global batch stays train.batch_size x train.grad_accum rows)"
        )


def shard(batches: list[Any], accelerator: Accelerator) -> list[Any]:
    """This rank's micro-batches of one optimizer step."""
    if accelerator.num_processes == 1:
        return batches
    return batches[accelerator.process_index :: accelerator.num_processes]


def global_sums(accelerator: Accelerator, values: list[float]) -> list[float]:
    """The sums over all ranks of `values` (float64), identical on every rank."""
    if accelerator.num_processes == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, "sum").tolist()


def gather_rng(accelerator: Accelerator, local: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every rank's RNG states, in rank order (None for one process: the checkpoint keeps its old format)."""
    if accelerator.num_processes == 1:
        return None
    return gather_object([local])


def rank_of(accelerator: Accelerator) -> int:
    return accelerator.process_index
