"""`POST /v1/adapters` with folders a client hands over: every bad folder is a 4xx that names the reason
(never a 500), the base an adapter names is confined to the server's own bases and the adapter root, and
`GET /v1/adapters` lists what is loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from peft import LoraConfig, get_peft_model

from tunesmith.models.load import load_model, load_tokenizer
from tunesmith.serve.server import ServeOptions, build
from tunesmith.testing.tiny import save_tiny


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter root holding a good LoRA adapter over `base`, and a base model outside the root."""
    top = tmp_path_factory.mktemp("adapters")
    base = save_tiny("llama", top / "base", vocab_size=300)
    root = top / "root"
    model = get_peft_model(load_model(str(base), dtype="fp32"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(root / "good")
    load_tokenizer(str(base)).save_pretrained(root / "good")
    return root


@pytest.fixture(scope="module")
def served(root: Path):
    app, engine = build(ServeOptions([str(root.parent / "base")], adapter_root=root))
    with TestClient(app) as test_client:
        yield test_client, engine.store


@pytest.fixture
def client(served) -> TestClient:
    return served[0]


def variant(root: Path, name: str, config: object = None, drop: tuple[str, ...] = (), weights: bytes | None = None) -> str:
    """A copy of the good adapter under `root/name`: its config replaced by `config` (bytes written as is),
    the files in `drop` removed, its weights file replaced by `weights`."""
    folder = root / name
    if not folder.exists():
        shutil.copytree(root / "good", folder)
        if config is not None:
            data = config if isinstance(config, bytes) else json.dumps(config).encode()
            (folder / "adapter_config.json").write_bytes(data)
        for file in drop:
            (folder / file).unlink()
        if weights is not None:
            (folder / "adapter_model.safetensors").write_bytes(weights)
    return name


def good_config(root: Path, **changes: object) -> dict:
    config = json.loads((root / "good" / "adapter_config.json").read_text())
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def cases(root: Path) -> dict[str, tuple[str, int, str]]:
    """name -> (path, status, words the error must contain)."""
    outside = save_tiny("llama", root.parent / "other-base", vocab_size=300) if not (
        root.parent / "other-base").exists() else root.parent / "other-base"
    (root / "junk-base").mkdir(exist_ok=True)
    (root / "empty").mkdir(exist_ok=True)
    if not (root / "model").exists():
        shutil.copytree(root.parent / "base", root / "model")
    return {
        "not utf-8": (variant(root, "bytes", b"\xff\xfe{"), 400, "cannot read"),
        "not json": (variant(root, "notjson", b"{not json"), 400, "cannot read"),
        "a list": (variant(root, "list", [1, 2]), 400, "JSON list"),
        "no base": (variant(root, "nobase", good_config(root, base_model_name_or_path=None)), 400, "base model"),
        "missing base": (variant(root, "missing", good_config(root, base_model_name_or_path="/no/such/model")),
                         400, "neither a base this server holds"),
        "hub base": (variant(root, "hub", good_config(root, base_model_name_or_path="org/some-model")),
                     400, "neither a base this server holds"),
        "base outside": (variant(root, "outside", good_config(root, base_model_name_or_path=str(outside))),
                         400, "outside the adapter root"),
        "invalid base": (variant(root, "junk", good_config(root, base_model_name_or_path=str(root / "junk-base"))),
                         400, "cannot load adapter"),
        "unknown type": (variant(root, "loha", good_config(root, peft_type="LOHA")), 400, "LOHA"),
        "no tokenizer": (variant(root, "notok", drop=("tokenizer.json", "tokenizer_config.json")), 400, "no tokenizer"),
        "no weights": (variant(root, "noweights", drop=("adapter_model.safetensors",)), 400, "no adapter weights"),
        "bad weights": (variant(root, "corrupt", weights=b"not safetensors"), 400, "cannot load adapter"),
        "nul": ("good\x00x", 400, "NUL"),
        "empty folder": ("empty", 400, "neither a run folder"),
        "full weights": ("model", 400, "full weights"),
        "missing folder": ("nope", 404, "no adapter folder"),
    }


def test_every_bad_adapter_folder_is_a_4xx_with_the_reason(served, root: Path) -> None:
    client, store = served
    for index, (case, (path, status, words)) in enumerate(cases(root).items()):
        response = client.post("/v1/adapters", json={"name": f"bad{index}", "path": path})
        assert response.status_code == status, (case, response.text)
        assert words in response.json()["error"]["message"], (case, response.text)
    names = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert names == ["base"]  # nothing half-registered, no adapter layers left in the shared base
    (base,) = store.bases.values()
    assert base.peft is None and getattr(base.model, "peft_config", None) is None
    assert client.post("/v1/adapters", json={"name": "a\x00b", "path": "good"}).status_code == 400


def test_a_good_adapter_loads_lists_and_answers(client: TestClient, root: Path) -> None:
    assert client.get("/v1/adapters").json() == {"object": "list", "data": []}
    response = client.post("/v1/adapters", json={"name": "good", "path": "good"})
    assert response.status_code == 200, response.text
    (card,) = client.get("/v1/adapters").json()["data"]
    assert card["id"] == "good" and card["parent"] == "base" and card["kind"] == "lora" and card["folder"] == "good"
    answer = client.post("/v1/chat/completions", json={"model": "good", "max_tokens": 3,
                                                        "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3
    assert client.delete("/v1/adapters/good").status_code == 200
    assert client.get("/v1/adapters").json()["data"] == []
