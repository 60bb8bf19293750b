"""The chat pane answered by `tunesmith serve`'s own code: the same target resolution, model store, batching
engine and chat rendering as the server, in this process (one serve app per run, reached through
Starlette's in-process client: no port is opened). The dashboard uses it by default."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tunesmith.errors import UserError
from tunesmith.ui.chat import WHICH, check_messages


class ServeEngine:
    """One serve app per run (its adapter and its base), the last `keep` runs kept loaded."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.apps: OrderedDict[str, tuple[Any, dict[str, str], dict[str, str]]] = OrderedDict()
        self.lock = threading.Lock()

    def complete(self, run_dir: Path, which: str, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        if which not in WHICH:
            raise UserError(f"model: '{which}' is not one of {', '.join(WHICH)}")
        check_messages(messages)
        with self.lock:
            client, names, headers = self._client(Path(run_dir))
        reply = client.post("/v1/chat/completions", headers=headers, json={
            "model": names[which], "messages": messages, "max_tokens": max_tokens, "temperature": 0})
        body = reply.json()
        if reply.status_code != 200:
            raise UserError(str(body.get("error", {}).get("message", body)))
        for choice in body["choices"]:  # the pane shows the answer as a bubble: no leading or trailing blanks
            choice["message"]["content"] = choice["message"]["content"].strip()
        return body

    def _client(self, run_dir: Path) -> tuple[Any, dict[str, str], dict[str, str]]:
        key = str(run_dir.resolve())
        if key in self.apps:
            self.apps.move_to_end(key)
            return self.apps[key]
        from fastapi.testclient import TestClient

        from tunesmith.runs.targets import resolve_target
        from tunesmith.serve import targets
        from tunesmith.serve.server import ServeOptions, api_key, build

        specs = targets.resolve(key)
        sources, base = [key], specs[0].name
        if len(specs) == 1:  # full fine-tuning: the base is another model folder
            base_model = resolve_target(key).base_model
            if base_model is None:
                raise UserError(f"{run_dir} records no base model to answer as 'base'")
            sources.append(base_model)
            base = targets.resolve(base_model)[0].name
        options = ServeOptions(sources, max_batch=4, queue_size=8)
        app, _ = build(options)
        client = TestClient(app)
        client.__enter__()  # runs the app's lifespan: starts the batching engine
        secret = api_key(options)
        entry = (client, {"tuned": specs[-1].name, "base": base},
                 {"Authorization": f"Bearer {secret}"} if secret else {})
        if len(self.apps) >= self.keep:
            _, (old, _, _) = self.apps.popitem(last=False)
            old.__exit__(None, None, None)
        self.apps[key] = entry
        return entry
