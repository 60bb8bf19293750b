"""Where the judge is and which key it gets: from the person running `tunesmith eval`, never from a run folder.

A run folder is often someone else's (run.json is untrusted input, runs/run_file.py). Its recipe may carry an
`eval.judge` block; if eval took the endpoint and the name of the key variable from there, a handed-over
run.json naming `url: https://collector.example` and `key_env: AWS_SECRET_ACCESS_KEY` would make
`tunesmith eval RUN` send `Authorization: Bearer <that secret>` to that host (and every answer with it). So:

- the URL comes from `--judge URL` (alias `--judge-url`), else the environment variable TUNESMITH_JUDGE_URL;
- the key from the environment variable `--judge-key-env NAME` names on the command line, else
  TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY;
- a run's `eval.judge.url` and `eval.judge.key_env` are ignored, with a warning saying so and what to pass.
The judge model's name and the questions file may still come from the run: they carry no secret, and they
go only to the endpoint the user chose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

URL_ENV = "TUNESMITH_JUDGE_URL"
KEY_ENV = "TUNESMITH_JUDGE_KEY"
FALLBACK_KEY_ENV = "OPENAI_API_KEY"
_DEFAULT_KEY_ENV = "OPENAI_API_KEY"  # the recipe schema's default for eval.judge.key_env: not a choice the run made


@dataclass(frozen=True)
class JudgeEndpoint:
    """The judge URL and the name of the variable holding its key, both chosen by the user running eval."""

    url: str | None
    key_env: str | None
    warnings: tuple[str, ...] = ()


def judge_endpoint(url: str | None, key_env: str | None, run_judge: Mapping[str, Any] | None,
                   source: str = "run.json", env: Mapping[str, str] | None = None) -> JudgeEndpoint:
    """The endpoint from the command line (`url`, `key_env`) or the user's environment; `run_judge` is the
    run's `eval.judge` block, whose URL and key variable are never used (each one set gives a warning)."""
    env = os.environ if env is None else env
    chosen = url or env.get(URL_ENV) or None
    warnings = []
    named = (run_judge or {}).get("url")
    if named and named != chosen:
        how = f"pass --judge URL or set {URL_ENV}" if chosen is None else f"using {chosen} from the command line"
        warnings.append(f"{source} names eval.judge.url {named!r}; ignored: a run folder never chooses where eval "
                        f"sends answers and keys ({how})")
    named_key = (run_judge or {}).get("key_env")
    if named_key and named_key not in (_DEFAULT_KEY_ENV, key_env):
        warnings.append(f"{source} names eval.judge.key_env {named_key!r}; ignored: a run folder never chooses which "
                        f"secret is sent (pass --judge-key-env NAME, or set {KEY_ENV})")
    return JudgeEndpoint(chosen, key_env, tuple(warnings))


def judge_key(key_env: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """The API key: the variable `--judge-key-env` names, else TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY."""
    env = os.environ if env is None else env
    if key_env:
        return env.get(key_env) or None
    return env.get(KEY_ENV) or env.get(FALLBACK_KEY_ENV) or None
