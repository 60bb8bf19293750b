"""Token-level cross-entropy for causal language models, as a sum plus a count.

Labels are aligned with `input_ids` (not shifted): `labels[:, t]` is the token at position t, predicted
from position t-1, so the loss at t uses `logits[:, t-1]`. Positions labelled `IGNORE_INDEX` carry no loss
(prompt, padding, template glue, and the first token of each sample in a packed row).

Why a sum and a count instead of a mean: under gradient accumulation a per-micro-batch mean weights every
micro-batch equally, so a token in a short micro-batch counts more than one in a long one and the
gradient no longer equals the big-batch gradient. The loop therefore does, for one optimizer step over
micro-batches m = 1..M whose labels are known before the step:

    total = sum(count_trained_tokens(labels_m) for m in micro_batches)   # summed over ranks under DDP
    for m in micro_batches:
        nll_sum, _ = token_nll_sum(logits_m, labels_m)                    # or fused_linear_nll_sum(...)
        (nll_sum / total).backward()

which gives exactly the gradient of the mean NLL over all trained tokens of the step.
(Under DDP, which averages gradients over ranks, multiply each loss by the number of processes.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tunesmith.data.types import IGNORE_INDEX


def count_trained_tokens(labels: Tensor) -> int:
    """Number of positions that carry loss: shifted targets `labels[:, 1:]` that are not IGNORE_INDEX.

    labels: (B, T). The first column is never a target (nothing precedes it).
    """
    return int((labels[:, 1:] != IGNORE_INDEX).sum().item())


def token_nll_sum(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed NLL over trained tokens (fp32, with grad) and the number of trained tokens (int64).

    logits: (B, T, V) any float dtype; labels: (B, T) aligned with input_ids.
    The log-softmax runs in fp32: bf16 log-probabilities over a large vocabulary lose digits.
    """
    _check_shapes(logits, labels)
    targets = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()  # (B*(T-1), V)
    nll_sum = F.cross_entropy(shifted, targets, ignore_index=IGNORE_INDEX, reduction="sum")  # ()
    return nll_sum, (targets != IGNORE_INDEX).sum()


def predicting_positions(labels: Tensor) -> Tensor:
    """Bool (B, T): True at position t when `labels[:, t+1]` is trained, i.e. where a logit is needed.

    Passed to a transformers causal LM as `logits_to_keep`, the head projects only these positions and
    returns logits of shape (N, V) in row-major order, so full-vocabulary logits are never made for the
    prompt, template glue or padding (typically 30-60% of an SFT batch).
    """
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def trained_targets(labels: Tensor) -> Tensor:
    """The trained next-token ids of `labels`, (N,), in the row-major order of `predicting_positions`."""
    shifted = labels[:, 1:]
    return shifted[shifted != IGNORE_INDEX]


def kept_nll_sum(kept_logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """`token_nll_sum` for logits computed only at `predicting_positions(labels)`.

    kept_logits: (N, V) (or (1, N, V)) in the row-major order of those positions; labels: (B, T).
    Same fp32 log-softmax and sum as `token_nll_sum`, so the two agree to rounding.
    """
    targets = trained_targets(labels)
    logits = kept_logits.reshape(-1, kept_logits.shape[-1])
    if logits.shape[0] != targets.shape[0]:
        raise ValueError(f"{logits.shape[0]} kept logits for {targets.shape[0]} trained tokens")
    return F.cross_entropy(logits.float(), targets, reduction="sum"), torch.tensor(targets.shape[0])


def fused_linear_nll_sum(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None = None,
    logit_softcap: float | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Summed NLL of `targets` under `hidden @ weight.T (+ bias)`, never holding more than one chunk of logits.

    hidden: (N, H) final hidden states at trained positions only; weight: (V, H); targets: (N,).
    The gradients are computed during the forward pass, one chunk at a time, and only they are kept
    ((N, H) for the hidden states, (V, H) for a trainable head): autograd would otherwise save the (N, V)
    logits, their fp32 copy and the log-softmax for the backward, several times the whole head's weights
    at a 100k+ vocabulary. No matmul is recomputed, unlike activation checkpointing of the head.
    Under autocast the matmuls run in the autocast dtype, as the model's own head would; the softmax is fp32.
    The default chunk holds about 4M logits (16 MiB in fp32): 512 positions at an 8k vocabulary, 64 at 128k.
    """
    if chunk_size is None:
        chunk_size = min(4096, max(64, (1 << 22) // weight.shape[0]))
    return _FusedLinearNLL.apply(hidden, weight, bias, targets, logit_softcap, chunk_size)


class _FusedLinearNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, softcap, chunk_size):  # type: ignore[override]
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if weight.requires_grad else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if bias is not None and bias.requires_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h, y = hidden[start:start + chunk_size], targets[start:start + chunk_size]
            logits = F.linear(h, weight, bias).float()  # (c, V)
            capped = None
            if softcap is not None:
                capped = torch.tanh(logits / softcap)
                logits = softcap * capped
            rows = torch.arange(y.shape[0], device=y.device)
            log_norm = torch.logsumexp(logits, dim=-1)  # (c,)
            total += (log_norm - logits[rows, y]).sum()
            grad = logits.sub_(log_norm[:, None]).exp_()  # softmax, in place: d(sum nll)/d logits = softmax - one-hot
            grad[rows, y] -= 1.0
            if capped is not None:
                grad *= 1.0 - capped * capped
            if grad_hidden is not None:
                grad_hidden[start:start + chunk_size] = (grad.to(h.dtype) @ weight.to(h.dtype)).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += (grad.to(h.dtype).T @ h).float()
            if grad_bias is not None:
                grad_bias += grad.sum(dim=0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        scale = grad_output.float()
        return (
            None if grad_hidden is None else grad_hidden * scale.to(grad_hidden.dtype),
            None if grad_weight is None else (grad_weight * scale).to(weight_dtype),
            None if grad_bias is None else (grad_bias * scale).to(bias_dtype),
            None, None, None,
        )


def _check_shapes(scores: Tensor, labels: Tensor) -> None:
    """Fail with a readable message instead of an indexing error deep in the loss."""
    if scores.dim() != 3 or labels.dim() != 2 or scores.shape[:2] != labels.shape:
        raise ValueError(
            f"expected scores (batch, seq, dim) and labels (batch, seq) of the same batch and length, "
            f"got {tuple(scores.shape)} and {tuple(labels.shape)}"
        )
