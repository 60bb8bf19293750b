"""Every adapter kind tunesmith trains is served, concurrently with the others, and answers exactly as the
adapter does alone through PEFT (or our bottleneck loader): DoRA, IA3, prefix, prompt and bottleneck beside
LoRA adapters on one base."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import pytest
import torch

from tunesmith.adapters.build import load_adapter
from tunesmith.data.templates import apply_template
from tunesmith.data.tokenize import tokenize_prompt
from tunesmith.data.types import Message
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.serve.local import local_server
from tunesmith.serve.server import ServeOptions
from tunesmith.serve.styles import PROMPT, make_style_runs

openai = pytest.importorskip("openai")
KINDS = ("dora", "ia3", "prefix", "prompt", "bottleneck")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_style_runs(tmp_path_factory.mktemp("kinds"), adapters=KINDS, steps=8)


def reference(runs: dict[str, Path], name: str) -> str:
    """Greedy answer of the base with the adapter loaded on its own, outside the server, token by token through
    the forward pass that training used (not `generate`: see adapters/unit.py Serving.STEPWISE)."""
    folder = runs[name] / "adapter"
    tokenizer = load_tokenizer(str(folder))
    apply_template(tokenizer, "plain")
    model = load_model(str(runs["base"]), dtype="fp32")
    if name != "base":
        model = load_adapter(model, folder)
    prompt = tokenize_prompt(tokenizer, [Message("user", PROMPT)])
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(10):
            token = model(input_ids=ids).logits[0, -1].argmax()
            if token == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, token.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, len(prompt):], skip_special_tokens=True)


def test_every_kind_serves_as_it_runs_alone(runs: dict[str, Path]) -> None:
    names = ["cats", "dogs", *KINDS]
    options = ServeOptions([str(runs[n]) for n in names], max_adapters=len(names))
    with local_server(options) as running:
        client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0)
        kinds = {m.id: m.model_extra["kind"] for m in client.models.list().data}
        assert kinds == {"base": "model", "cats": "lora", "dogs": "lora", **{k: k for k in KINDS}}

        def ask(model: str) -> str:
            response = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}],
                                                      max_tokens=10, temperature=0)
            return response.choices[0].message.content

        with futures.ThreadPoolExecutor(8) as pool:
            answers = dict(zip(names * 2, pool.map(ask, names * 2)))
        answers["base"] = ask("base")
        for name in names:
            assert answers[name] == reference(runs, name), name
            assert answers[name] != answers["base"], name  # the adapter changes the answer: it really ran
        base = running.engine.store.bases
        assert len(base) == 1  # one base in memory for all of them
        peft = next(iter(base.values())).peft
        assert set(peft.peft_config) == {"cats", "dogs", "dora"}  # LoRA and DoRA share the base's modules
