"""Served answers of a vision-language run: `tunesmith serve`'s app on loopback, asked through the official
`openai` client with each picture as an `image_url` part (a data: URI of the file), as a user would ask it."""

from __future__ import annotations

import base64
import json
from pathlib import Path


def served_answers(run: Path, heldout: Path, count: int, max_tokens: int) -> tuple[list[str], list[str]]:
    """(the served run's answers, the references) for the first `count` rows of the held-out chat file."""
    import openai

    from tunesmith.serve.local import local_server
    from tunesmith.serve.server import ServeOptions

    rows = [json.loads(line) for line in heldout.read_text().splitlines()][:count]
    answers = []
    with local_server(ServeOptions([f"shapes={run}"], api_key="shapes-key")) as running:
        client = openai.OpenAI(base_url=running.url, api_key="shapes-key", max_retries=0)
        for row in rows:
            *prompt, _ = row["messages"]
            uri = "data:image/png;base64," + base64.b64encode(Path(row["images"][0]).read_bytes()).decode()
            messages = [{"role": m["role"], "content": m["content"]} for m in prompt if "<image>" not in m["content"]]
            question = next(m["content"] for m in prompt if "<image>" in m["content"]).replace("<image>", "")
            messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                                         {"type": "text", "text": question}]})
            reply = client.chat.completions.create(model="shapes", messages=messages, max_tokens=max_tokens,
                                                   temperature=0)
            answers.append((reply.choices[0].message.content or "").strip())
    return answers, [row["messages"][-1]["content"] for row in rows]
