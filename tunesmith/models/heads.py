"""Scalar heads on a causal LM: the reward model's score and PPO's value estimate.

A head is a `Linear(hidden, 1)` registered on the transformers model under a fixed name. It is not part of
any PEFT adapter, so when the run saves its weights the heads are set aside and written to their own file
(`scalar_heads.safetensors`) beside the adapter or model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file

from tunesmith.methods.shared.reference import unwrap_ddp

HEADS_FILE = "scalar_heads.safetensors"
REWARD_HEAD = "reward_head"
VALUE_HEAD = "value_head"
_HEADS = (REWARD_HEAD, VALUE_HEAD)


def attach_head(model: torch.nn.Module, name: str) -> torch.nn.Linear:
    """A fresh fp32 `Linear(hidden, 1)`, zero-initialised (scores start at 0), registered on the model."""
    hidden = unwrap_ddp(model).get_input_embeddings().embedding_dim
    head = torch.nn.Linear(hidden, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    unwrap_ddp(model).add_module(name, head)
    return head


def head_scores(head: torch.nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """Scalar per position: (..., H) -> (...), in the head's dtype."""
    return head(states.to(head.weight.dtype)).squeeze(-1)


def last_token_scores(head: torch.nn.Linear, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The head at each right-padded sequence's last real token: (B,) from (B, T, H), (B, T)."""
    last = attention_mask.sum(-1) - 1  # (B,)
    return head_scores(head, states[torch.arange(states.shape[0], device=states.device), last])


@contextlib.contextmanager
def heads_set_aside(model: torch.nn.Module, out_dir: Path) -> Iterator[None]:
    """Detach the scalar heads while the model saves itself, then write them to `out_dir/scalar_heads.safetensors`."""
    inner = unwrap_ddp(model)
    heads = {name: inner._modules.pop(name) for name in _HEADS if name in inner._modules}
    try:
        yield
    finally:
        inner._modules.update(heads)
    if heads:
        save_file({f"{name}.{key}": value.detach().cpu().contiguous()
                   for name, head in heads.items() for key, value in head.state_dict().items()}, Path(out_dir) / HEADS_FILE)
