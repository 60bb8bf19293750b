"""The key of prepared data, and its store on disk, so `validate`, `train` and `eval` parse and tokenize once.

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

Picture files are not data files: a row names them, so they are known only after parsing. The store keeps
the paths of every picture its examples name and a hash of their sizes and modification times, and a store
whose pictures changed since (replaced, touched, gone) is a miss, so they are read and checked again.

What cannot be fingerprinted is not cached: a hub dataset id names data that can change on the hub under
the same name, and a slow tokenizer has no serialised state to hash. A stale hit would silently train on the
wrong tokens; a miss only costs time. For the same reason every failure here (an unreadable or corrupt
file, a full disk, a read-only folder) degrades to a miss, never to an error.

Stores live in `$TUNESMITH_CACHE/data/` (default `~/.cache/tunesmith/data/`, or under `$XDG_CACHE_HOME`),
one folder per key in the memory-mapped layout of `data/store.py`; deleting any of them is always safe.
A store holds arrays and JSON only, so reading one never runs code (the pickle files of earlier versions
did; they are ignored).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import tunesmith
from tunesmith.data.leftovers import build_store
from tunesmith.data.mixing import ReplayReport
from tunesmith.data.prepared import PreparedData
from tunesmith.data.store import ExampleWriter, SampleArrays, SampleWriter, finish, open_split, read_meta, token_dtype
from tunesmith.data.types import Example
from tunesmith.recipe.spec import Recipe

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2
"""Bump when the stored layout or the meaning of a key part changes, so old stores stop matching."""
CHUNK = 4096
"""Samples (or examples) converted and written at a time."""
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
        "data": recipe.data.model_dump(mode="json", exclude={"cache", "num_proc"}),  # neither changes the result
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


def load_prepared(key: str) -> PreparedData | None:
    """The prepared data stored under `key`, mapped from disk; None when there is no complete, matching store."""
    folder = cache_dir() / key
    meta = read_meta(folder, key)
    if meta is None:
        return None
    try:
        train, train_examples = open_split(folder, "train", meta)
        eval_, eval_examples = open_split(folder, "eval", meta)
        facts = meta["facts"]
        pictures = facts.pop("images", None)
        if pictures is not None and _pictures_digest(pictures["paths"]) != pictures["digest"]:
            logger.info("pictures of the data changed since it was prepared; preparing it again")
            return None
        replay = facts.pop("replay")
        return PreparedData(train=train, eval=eval_, train_examples=train_examples, eval_examples=eval_examples,
                            replay=ReplayReport(**replay) if replay else None, from_cache=True, **facts)
    except (OSError, ValueError, KeyError, TypeError) as err:  # files that do not match their meta: a miss
        logger.debug("data store %s unreadable (%s); preparing the data again", folder, err)
        return None


def store_prepared(key: str, data: PreparedData, splits: dict[str, Iterable[SampleArrays]],
                   vocab_size: int) -> PreparedData | None:
    """Write `data`'s facts and examples, and the samples of `splits` as they arrive, as the store of `key`;
    return it read back from there, or None when it cannot be written.

    The folder is filled under a temporary name and renamed into place (`build_folder`), with the COMPLETE
    marker written last, so a crash mid-write leaves at most a hidden `.tmp-*` folder, never a store.
    """
    def fill(folder: Path) -> None:
        dtype = token_dtype(vocab_size)
        sizes = {"train": write_split(folder, "train", dtype, splits["train"], data.train_examples),
                 "eval": write_split(folder, "eval", dtype, splits["eval"], data.eval_examples)}
        finish(folder, key, {"dtype": dtype.name, "splits": sizes, "facts": _facts(data)})

    target = cache_dir() / key
    try:
        build_store(target, fill)
    except (TypeError, ValueError) as err:  # an example field JSON cannot hold, an id beyond the vocabulary
        logger.info("prepared data not stored (%s); the next run prepares it again", err)
        return None
    except OSError as err:  # the store only saves time: a failed write must not stop a run
        logger.warning("could not write the data store %s (%s); set %s to a writable folder, or data.cache: false",
                       target, err, CACHE_ENV)
        return None
    stored = load_prepared(key)
    if stored is not None:
        stored.from_cache = False
    return stored


def write_split(folder: Path, split: str, dtype: np.dtype, pieces: Iterable[SampleArrays],
                examples: Sequence[Example]) -> dict[str, int]:
    """Write one split's samples as they come and its examples a chunk at a time; their sizes for meta.json."""
    writer, example_writer = SampleWriter(folder, split, dtype), ExampleWriter(folder, split)
    for piece in pieces:
        writer.add(piece)
    for start in range(0, len(examples), CHUNK):
        example_writer.add(examples[start:start + CHUNK])
    return {**writer.close(), "examples": example_writer.close()}


def _facts(data: PreparedData) -> dict[str, Any]:
    fields = ("format", "detected", "rows", "bad_rows", "sources", "duplicates", "overlap", "notes", "unusable")
    replay = dataclasses.asdict(data.replay) if data.replay else None
    paths = sorted(set(data.pictures))  # those of rows skipped as bad too: fixing a picture must be seen
    pictures = {"paths": paths, "digest": _pictures_digest(paths)} if paths else None
    return {**{name: getattr(data, name) for name in fields}, "replay": replay, "images": pictures}


def _pictures_digest(paths: list[str]) -> str:
    """sha256 of each picture file's size and modification time (nanoseconds); a missing one counts as such."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


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
