"""A disk cache of prepared data, so `validate`, `train` and `eval` parse and tokenize a dataset once.

Parsing and tokenizing every row is the slow part of `prepare_data` (minutes on a large dataset), and the
same recipe is typically prepared several times: `validate`, then `train`, then `eval` re-creating the
held-out split. The result is a pure function of its inputs, so it is stored under a key that hashes every
one of them:

* the bytes of every data file (sha256, as `pipeline.hash_sources` records them for run.json);
* the tokenizer: its full serialised state (vocabulary, merges, added tokens, normalizer, pre- and
  post-processor), the chat template in force, the special tokens and BOS/EOS switches;
* the recipe's `data` block (format, template, train_on, split, max_rows, eval, on_bad_row, replay),
  `train.max_seq_len` (the cut) and `train.seed` (the eval split and the replay mix);
* the code that produces the result: the tunesmith version, a hash of the `tunesmith/data` sources (an
  editable install keeps its version number across edits), the transformers and tokenizers versions,
  and `CACHE_FORMAT`.

What cannot be fingerprinted is not cached: a hub dataset id names data that can change on the hub under
the same name, and a slow tokenizer has no serialised state to hash. A stale hit would silently train on the
wrong tokens; a miss only costs time. For the same reason every failure here (an unreadable or corrupt
file, a full disk, a read-only folder) degrades to a miss, never to an error.

Files live in `$TUNESMITH_CACHE/data/` (default `~/.cache/tunesmith/data/`, or under `$XDG_CACHE_HOME`),
one pickle per key; deleting the folder is always safe. Loading a pickle runs code it names, so the folder
must be as trusted as the user's own files: it is, by default, in their home.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import pickle
from importlib import metadata
from pathlib import Path
from typing import Any

import tunesmith
from tunesmith.recipe.spec import Recipe
from tunesmith.runs.atomic import atomic_file

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bump when the stored layout or the meaning of a key part changes, so old files stop matching."""
CACHE_ENV = "TUNESMITH_CACHE"
"""Environment variable naming tunesmith's cache folder (prepared data goes to its `data/` subfolder)."""
HUB = "hub"
"""The value `hash_sources` records for a source that is not a local file."""


def cache_dir() -> Path:
    """Where prepared data is stored: `$TUNESMITH_CACHE/data`, else `tunesmith/data` in $XDG_CACHE_HOME or ~/.cache."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "data"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tunesmith" / "data"


def cache_key(recipe: Recipe, tokenizer: Any, sources: dict[str, str]) -> str | None:
    """The key of `recipe`'s prepared data, or None when an input cannot be fingerprinted (then: no cache).

    `sources` is `hash_sources` of every data file the recipe reads (train, eval file, replay); call this
    after the chat template is applied to `tokenizer`, so the template in force is what gets hashed.
    """
    if not sources or HUB in sources.values():
        return None
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    if tokenizer_hash is None:
        return None
    parts = {
        "format": CACHE_FORMAT,
        "code": _code_fingerprint(),
        "sources": sources,
        "tokenizer": tokenizer_hash,
        "data": recipe.data.model_dump(mode="json", exclude={"cache"}),
        "max_seq_len": recipe.train.max_seq_len,
        "seed": recipe.train.seed,
    }
    return _sha256_text(json.dumps(parts, sort_keys=True))


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """sha256 of everything about `tokenizer` that can change token ids; None for a slow tokenizer.

    The backend's padding and truncation settings are left out: they are call-time state that the fast
    tokenizer keeps from its last call, and `prepare_data` sets neither.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    try:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        facts = {
            "class": type(tokenizer).__name__,
            "backend": state,
            "chat_template": tokenizer.chat_template,
            "special_tokens": tokenizer.special_tokens_map,
            "add_bos_token": getattr(tokenizer, "add_bos_token", None),
            "add_eos_token": getattr(tokenizer, "add_eos_token", None),
        }
        return _sha256_text(json.dumps(facts, sort_keys=True))
    except (TypeError, ValueError, AttributeError) as err:  # an exotic tokenizer: run without the cache
        logger.debug("tokenizer cannot be fingerprinted (%s); data cache off", err)
        return None


def load_cached(key: str) -> Any | None:
    """The object stored under `key`, or None when there is none or the file cannot be read back whole."""
    path = cache_dir() / f"{key}.pkl"
    try:
        with path.open("rb") as handle:
            payload = pickle.load(handle)
    except FileNotFoundError:
        return None
    except Exception as err:  # truncated, corrupt or foreign pickles raise many kinds; all are a miss
        logger.debug("data cache file %s unreadable (%s); preparing the data again", path, err)
        return None
    if not isinstance(payload, dict) or payload.get("key") != key or payload.get("format") != CACHE_FORMAT:
        return None
    return payload.get("data")


def store_cached(key: str, data: Any) -> Path | None:
    """Write `data` under `key` atomically (a temporary file, then a rename); the path, or None on failure.

    A crash mid-write leaves at most a stray temporary file, never a truncated `<key>.pkl`, and readers
    racing a writer see the old file or the new one.
    """
    folder = cache_dir()
    path = folder / f"{key}.pkl"
    payload = {"format": CACHE_FORMAT, "key": key, "data": data}
    try:
        with atomic_file(path, "wb", durable=True) as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path
    except Exception as err:  # the cache only saves time: a failed write must not stop a run
        logger.warning("could not write the data cache %s (%s); set %s to a writable folder, or data.cache: false",
                       path, err, CACHE_ENV)
        return None


@functools.cache
def _code_fingerprint() -> dict[str, str]:
    """Versions of the code that turns files into samples, and a hash of tunesmith's own data sources."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return {
        "tunesmith": tunesmith.__version__,
        "tunesmith.data": digest.hexdigest(),
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
