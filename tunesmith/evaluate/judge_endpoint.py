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

The requests go through the `openai` client (`judge_api`), which on its own reads OPENAI_API_KEY,
OPENAI_ORG_ID, OPENAI_PROJECT_ID and, in newer releases, OPENAI_CUSTOM_HEADERS (whose Authorization line
replaces the key it was given): settings meant for api.openai.com. `judge_headers` overrides each of them on
every request, so the judge gets the key `judge_key` chose, or no Authorization header at all, and no other
header from those variables. The client follows no redirect: a judge's redirect is an HTTP error, and the
answers are never re-sent to the place it names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

URL_ENV = "TUNESMITH_JUDGE_URL"
KEY_ENV = "TUNESMITH_JUDGE_KEY"
FALLBACK_KEY_ENV = "OPENAI_API_KEY"
_DEFAULT_KEY_ENV = "OPENAI_API_KEY"  # the recipe schema's default for eval.judge.key_env: not a choice the run made
CLIENT_HEADERS_ENV = "OPENAI_CUSTOM_HEADERS"
NO_KEY = "no-key"
"""What the openai client is built with when the user has no key (it refuses none); `judge_headers` keeps it
from being sent."""


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


def judge_api(base_url: str, api_key: str | None, timeout_s: float, retries: int) -> openai.OpenAI:
    """An `openai.OpenAI` for the judge at `base_url` (the part before /chat/completions): `retries` retries of
    connection errors, timeouts, 408, 409, 429 and 5xx with exponential backoff, `timeout_s` per request.
    Send every request with `extra_headers=judge_headers(api_key)`."""
    return openai.OpenAI(base_url=base_url, api_key=api_key or NO_KEY, max_retries=retries, timeout=timeout_s,
                         http_client=openai.DefaultHttpxClient(follow_redirects=False))


def judge_headers(api_key: str | None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The headers a judge request carries over the openai client's own: `api_key` as the bearer token (else no
    Authorization), and none of the headers the client takes from OPENAI_ORG_ID, OPENAI_PROJECT_ID or
    OPENAI_CUSTOM_HEADERS."""
    env = os.environ if env is None else env
    names = [line.partition(":")[0].strip() for line in env.get(CLIENT_HEADERS_ENV, "").splitlines() if ":" in line]
    headers: dict[str, Any] = {name: openai.Omit() for name in names if name}
    headers.update({"OpenAI-Organization": openai.Omit(), "OpenAI-Project": openai.Omit(),
                    "Authorization": f"Bearer {api_key}" if api_key else openai.Omit()})
    return headers
