"""`tunesmith serve` end to end: the real server (uvicorn on loopback) and the official `openai` client.

Two LoRA adapters trained by tunesmith on one tiny base answer in their own style (cats: "meow", dogs:
"woof"); requests for base and both adapters share batches (PEFT's adapter_names) and must answer exactly as
each model does alone.
"""

from __future__ import annotations

import shutil
import time
from concurrent import futures
from pathlib import Path

import httpx
import pytest
import torch

from tunesmith.adapters.build import load_adapter
from tunesmith.data.templates import apply_template
from tunesmith.data.tokenize import tokenize_conversation, tokenize_prompt
from tunesmith.data.types import Conversation, Message
from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.serve.local import local_server
from tunesmith.serve.server import ServeOptions
from tunesmith.serve.styles import PROMPT, make_style_runs

openai = pytest.importorskip("openai")
KEY = "test-key"
CHAT = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_style_runs(tmp_path_factory.mktemp("styles"))


@pytest.fixture(scope="module")
def server(runs: dict[str, Path]):
    options = ServeOptions([str(runs["cats"]), str(runs["dogs"])], api_key=KEY, adapter_root=runs["cats"].parent,
                           max_adapters=4)
    with local_server(options) as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0)


def ask(client, model: str, **kw) -> str:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    return client.chat.completions.create(model=model, messages=CHAT, **kw).choices[0].message.content


def test_models_lists_base_and_adapters(client) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"base", "cats", "dogs"}
    assert cards["cats"].model_extra["parent"] == "base" and cards["base"].model_extra["parent"] is None


def test_each_adapter_answers_in_its_own_style(client) -> None:
    cats, dogs, base = ask(client, "cats"), ask(client, "dogs"), ask(client, "base")
    assert "meow" in cats and "woof" not in cats
    assert "woof" in dogs and "meow" not in dogs
    assert "meow" not in base and "woof" not in base


def test_chat_answer_equals_peft_generate_with_the_training_template(client, runs) -> None:
    """Served greedy answer = PEFT's own generate on the prompt rendered as in training."""
    tokenizer = load_tokenizer(str(runs["cats"] / "adapter"))
    apply_template(tokenizer, "plain")
    ids = tokenize_prompt(tokenizer, [Message("user", PROMPT)])
    sample = tokenize_conversation(tokenizer, Conversation((Message("user", PROMPT), Message("assistant", "x"))), 512)
    first_label = next(i for i, label in enumerate(sample.labels) if label != -100)
    assert ids == sample.input_ids[:first_label]  # the generation prompt is the training prompt, token for token
    model = load_adapter(load_model(str(runs["base"]), dtype="fp32"), runs["cats"] / "adapter")
    out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    expected = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
    response = client.chat.completions.create(model="cats", messages=CHAT, max_tokens=12, temperature=0)
    assert response.choices[0].message.content == expected
    assert response.usage.prompt_tokens == len(ids)


def test_mixed_adapter_batches_answer_as_each_model_alone(client, server) -> None:
    models = ["base", "cats", "dogs"] * 4
    alone = {m: ask(client, m) for m in set(models)}
    start = len(server.engine.history)
    with futures.ThreadPoolExecutor(len(models)) as pool:
        answers = list(pool.map(lambda m: ask(client, m), models))
    assert answers == [alone[m] for m in models]
    batches = list(server.engine.history)[start:]
    assert any(len(set(rows)) == 3 for rows in batches), batches  # base, cats and dogs in one batch


def test_completions_n_seed_and_stop(client) -> None:
    kw = {"model": "cats", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 1.0, "n": 3, "seed": 7}
    first, again = client.completions.create(**kw), client.completions.create(**kw)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in again.choices] and len(set(texts)) > 1  # seeded, yet each choice its own
    assert first.usage.completion_tokens == 24 and all(c.finish_reason == "length" for c in first.choices)
    full = ask(client, "dogs")
    cut = ask(client, "dogs", stop=["of"])
    assert full.startswith(cut) and "of" not in cut and len(cut) < len(full)


def test_streaming_chunks_add_up_to_the_answer_with_usage(client) -> None:
    stream = client.chat.completions.create(model="dogs", messages=CHAT, max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ask(client, "dogs")
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].object == "chat.completion.chunk"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    completion = list(client.completions.create(model="base", prompt="Once", max_tokens=5, stream=True))
    assert len(completion) >= 2 and completion[0].object == "text_completion"


def test_auth(server, client) -> None:
    assert httpx.get(server.url.removesuffix("/v1") + "/health").status_code == 200  # open
    with pytest.raises(openai.AuthenticationError) as err:
        openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0).models.list()
    assert err.value.body["code"] == "invalid_api_key"
    for headers in ({}, {"Authorization": f"Basic {KEY}"}):
        response = httpx.post(server.url + "/chat/completions", json={"model": "cats", "messages": CHAT},
                              headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.delete(server.url + "/adapters/cats").status_code == 401


def test_bad_inputs_are_openai_errors(client) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        ask(client, "nope")
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "cats", max_tokens=600)  # the tiny Llama's context is 512
    assert err.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="cats", prompt="word " * 600, max_tokens=1)
    with pytest.raises(openai.BadRequestError) as err:
        ask(client, "cats", temperature=5)
    assert err.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="cats", messages=[], max_tokens=3)


def test_load_and_unload_while_serving(client, server, runs, tmp_path) -> None:
    def post(body: dict) -> httpx.Response:
        return client.post("/adapters", body=body, cast_to=httpx.Response)

    for path in ("../../etc", "/etc", "cats/../../x"):
        with pytest.raises(openai.BadRequestError, match="outside the adapter root"):
            post({"name": "evil", "path": path})
    outside = tmp_path / "outside"
    shutil.copytree(runs["dogs"] / "adapter", outside)
    (runs["cats"].parent / "link").symlink_to(outside)
    with pytest.raises(openai.BadRequestError, match="outside"):
        post({"name": "linked", "path": "link"})
    post({"name": "dogs2", "path": "dogs/adapter"})
    assert "woof" in ask(client, "dogs2") and "dogs2" in [m.id for m in client.models.list().data]
    with futures.ThreadPoolExecutor(2) as pool:  # a long request in flight while dogs2 is deleted
        seen = len(server.engine.history)
        long = pool.submit(ask, client, "dogs2", max_tokens=200, stop=["never"])
        while not any("dogs2" in rows for rows in list(server.engine.history)[seen:]):
            time.sleep(0.001)
        client.delete("/adapters/dogs2", cast_to=httpx.Response)
        assert "woof" in long.result()
    with pytest.raises(openai.NotFoundError):
        ask(client, "dogs2")
    with pytest.raises(openai.BadRequestError, match="base model"):
        client.delete("/adapters/base", cast_to=httpx.Response)


def test_a_run_folder_loads_as_an_adapter_and_is_listed(client, server) -> None:
    """POST /v1/adapters takes a run folder, as every CLI verb does; GET /v1/adapters lists what is loaded."""
    client.post("/adapters", body={"name": "cats-run", "path": "cats"}, cast_to=httpx.Response)
    assert "meow" in ask(client, "cats-run")
    listed = httpx.get(server.url + "/adapters", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert {a["id"]: a["folder"] for a in listed}["cats-run"] == "cats/adapter"
    client.delete("/adapters/cats-run", cast_to=httpx.Response)
    assert "cats-run" not in [m.id for m in client.models.list().data]


def test_lru_bound_reloads_evicted_adapters(runs) -> None:
    options = ServeOptions([str(runs["cats"]), str(runs["dogs"])], max_adapters=1)
    with local_server(options) as running:
        client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0)
        for _ in range(2):
            assert "meow" in ask(client, "cats") and "woof" in ask(client, "dogs")
        store = running.engine.store
        assert [e.name for e in store.entries.values() if e.is_adapter and e.resident] == ["dogs"]


def test_queue_full_is_503(runs) -> None:
    options = ServeOptions([str(runs["cats"])], queue_size=1, max_batch=1)
    with local_server(options) as running:
        client = openai.OpenAI(base_url=running.url, api_key="none", max_retries=0)

        def one(_: int) -> int:
            try:
                ask(client, "cats", max_tokens=100, stop=["never"])
                return 200
            except openai.APIStatusError as e:
                assert e.body["code"] == "queue_full"
                return e.status_code

        with futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(8)))
        assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
