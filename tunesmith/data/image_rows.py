"""The pictures of one chat or preference row, in the three shapes users have, checked and made into the
example's `images` (`Conversation.images`, `Preference.images`).

* LLaMA-Factory: `<image>` in the text of `messages` or `conversations`, the files in an `images` list;
* OpenAI: a content part `{"type": "image_url", "image_url": {"url": REF}}` at the image's place;
* TRL: a content part `{"type": "image"}` at the image's place, the pictures in an `images` column.

Every shape ends as the same form: `<image>` where each picture sits (`data/fields.py` turns image parts into
it) and the references in that order. A row is checked whole here, so a bad one names its file:line: as many
placeholders as images, no remote URL, each image present and decodable (decoded once, fully: a truncated
file fails here, not in the middle of training).

A preference row (TRL's vision DPO format: `prompt` messages with image parts, `chosen`, `rejected`, `images`;
or the text shapes with `<image>` in the prompt and an `images` list) keeps its pictures with its prompt, which
both answers share; a placeholder in an answer is refused. A KTO row with pictures is refused: its judged
answers have no image path in training.

Paths. A relative path resolves against the folder of the data file (`Row.folder`), so a dataset reads the
same from any working directory; an absolute path or `..` is allowed, since a data file names pictures on
its user's own machine, read into that user's own model, and nothing is fetched from the network (a remote
URL is refused). A `file://` URL is read as its path. A row without a folder (a hub dataset) needs absolute
paths or `data:` URIs. The server's request side confines paths; see `serve/images.py`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from tunesmith.data.fields import BadRow, kind_name
from tunesmith.data.images import ImageError, count_placeholders, is_remote, open_image, remote_refusal
from tunesmith.data.parallel import forked_map
from tunesmith.data.types import Conversation, Example, Message, Preference, Unpaired, example_images

PICTURES_PER_TASK = 64
"""Pictures one worker task decodes (a few hundred milliseconds of work)."""
_REFS: list[str] = []
"""The pictures being checked, set before the workers fork so they inherit them."""
MESSAGE_FIELDS: tuple[str, ...] = ("messages", "conversations", "prompt", "completion")
"""Fields that may hold message lists, in the order the formats read them (placeholders follow this order)."""
ANSWER_FIELDS: tuple[str, ...] = ("chosen", "rejected")
"""A preference row's answers: an image part there is seen (and refused: a pair's pictures are its prompt's)."""
UNPAIRED_REFUSAL = ("images are read for chat rows (method: sft) and preference pairs (method: dpo), not for KTO's "
                    "judged answers; give the pairs as preference rows (prompt, chosen, rejected, images)")


def attach_images(example: Example, row: dict[str, Any], folder: Path | None, decode: bool = True) -> Example:
    """`example` with the row's pictures, checked; a row that names no picture comes back unchanged.

    Raises `BadRow` naming the image (by its number and reference) when one is remote, or, with `decode`,
    missing or corrupt (`broken_pictures` checks those for many rows at once), or when the placeholders and
    the pictures do not pair up."""
    if not isinstance(example, (Conversation, Preference, Unpaired)):
        return example  # raw text, or a prompt whose other columns (an `images` one too) go to reward functions
    refs = row_image_refs(row)
    if refs is None:
        return example
    if isinstance(example, Unpaired):
        if refs:  # an answer whose pictures were dropped would be judged against a question it no longer shows
            raise BadRow(UNPAIRED_REFUSAL)
        return example
    if isinstance(example, Preference) and (answers := count_placeholders(_texts(example.chosen + example.rejected))):
        raise BadRow(f"{answers} image placeholder(s) in 'chosen' or 'rejected'; a pair's pictures belong to its "
                     "prompt, which both answers share")
    placeholders = count_placeholders(placeholder_texts(example))
    if placeholders != len(refs):
        raise BadRow(f"{placeholders} image placeholder(s) (<image> or image parts) but {len(refs)} image(s); "
                     "each image needs exactly one placeholder where it sits")
    resolved = tuple(resolve_ref(ref, folder, n) for n, ref in enumerate(refs, 1))
    for n, ref in enumerate(resolved, 1):
        problem = _problem(ref) if decode else None
        if problem is not None:
            raise BadRow(f"image {n}: {problem}")
    return replace(example, images=resolved)


def placeholder_texts(example: Conversation | Preference) -> list[str]:
    """The texts whose `<image>` placeholders stand for the example's pictures: a chat's messages, a pair's
    prompt."""
    return _texts(example.messages if isinstance(example, Conversation) else example.prompt)


def _texts(messages: tuple[Message, ...]) -> list[str]:
    return [m.content for m in messages]


def broken_pictures(examples: Sequence[Example], workers: int = 1) -> dict[int, str]:
    """{position of an example: what is wrong with its first bad picture} after decoding every distinct picture
    once, over `workers` forked processes (about 3 ms a 224x224 JPEG on one core: minutes for a large set).

    In a dataset with pictures, `<image>` is a placeholder in every row: a row that holds one but names no
    picture (its `images` forgotten) is broken too, as a processor would fail on it mid-training."""
    global _REFS
    refs = sorted({ref for ex in examples for ref in example_images(ex)})
    tasks = [(start, min(start + PICTURES_PER_TASK, len(refs))) for start in range(0, len(refs), PICTURES_PER_TASK)]
    _REFS = refs
    try:
        found = dict(pair for chunk in forked_map(_check_range, tasks, min(workers, len(tasks))) for pair in chunk)
    finally:
        _REFS = []
    broken = {}
    for k, ex in enumerate(examples):
        if not isinstance(ex, (Conversation, Preference)):
            continue
        first = next(((n, found[ref]) for n, ref in enumerate(ex.images, 1) if ref in found), None)
        if first is not None:
            broken[k] = f"image {first[0]}: {first[1]}"
        elif refs and not ex.images and (stray := count_placeholders(placeholder_texts(ex))):
            broken[k] = (f"{stray} image placeholder(s) (<image>) but no images, in a dataset whose other rows have "
                         "pictures; add the row's 'images'")
    return broken


def _check_range(task: tuple[int, int]) -> list[tuple[str, str]]:
    """What a worker runs: the problems of pictures `_REFS[start:end]` (inherited through the fork)."""
    pairs = ((ref, _problem(ref)) for ref in _REFS[task[0]:task[1]])
    return [(ref, problem) for ref, problem in pairs if problem is not None]


def _problem(ref: str) -> str | None:
    """Why the picture cannot be used, or None once it decoded whole."""
    try:
        open_image(ref).close()
    except ImageError as exc:
        return str(exc)
    return None


def row_image_refs(row: dict[str, Any]) -> list[str] | None:
    """The references a row gives, as written and in placeholder order; None for a row with no picture at all
    (no `images` column, no image part), which is read exactly as a text row."""
    url_refs = [url for name in MESSAGE_FIELDS for url in _image_url_parts(row.get(name), name)]
    parts = any(_has_image_parts(row.get(name)) for name in MESSAGE_FIELDS + ANSWER_FIELDS)
    column = row.get("images")
    if column is None:
        return url_refs if url_refs or parts else None
    if url_refs and column:
        raise BadRow("the row gives images both as image_url parts and in an 'images' column; use one")
    if url_refs:
        return url_refs
    if not isinstance(column, list):
        raise BadRow(f"field 'images' should be a list of image paths, got {kind_name(column)}")
    return [_column_ref(item, n) for n, item in enumerate(column, 1)]


def resolve_ref(ref: str, folder: Path | None, n: int) -> str:
    """A reference as the contract holds it: a `data:` URI as is, a path made absolute against `folder`."""
    if is_remote(ref):
        raise BadRow(f"image {n}: {remote_refusal(ref)}")
    lowered = ref[:16].lower()
    if lowered.startswith("data:"):
        return ref
    if lowered.startswith("file:"):
        parsed = urlparse(ref)
        if parsed.netloc not in ("", "localhost"):
            raise BadRow(f"image {n}: file URL {ref[:80]!r} names another host; give a local path")
        ref = unquote(parsed.path)
    if not ref.strip():
        raise BadRow(f"image {n}: the image path is empty")
    path = Path(ref)
    if not path.is_absolute():
        if folder is None:
            raise BadRow(f"image {n}: relative path {ref!r} in a row with no data file to resolve it against; "
                         "give an absolute path or a data: URI")
        path = folder / path
    return str(path)


def _image_url_parts(value: Any, name: str) -> list[str]:
    """The references of OpenAI `image_url` parts in a message list, in order."""
    urls = []
    for turn, part in _parts(value):
        if part.get("type") != "image_url":
            continue
        inner = part.get("image_url")
        url = inner.get("url") if isinstance(inner, dict) else inner
        if not isinstance(url, str) or not url:
            raise BadRow(f"'{name}' turn {turn}: an image_url part needs \"image_url\": {{\"url\": PATH or data: "
                         "URI}")
        urls.append(url)
    return urls


def _has_image_parts(value: Any) -> bool:
    return any(part.get("type") == "image" for _, part in _parts(value))


def _parts(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """(1-based turn number, part) for every dict content part of a message list; anything else yields none
    (the message reader reports malformed messages)."""
    if not isinstance(value, list):
        return []
    found = []
    for turn, message in enumerate(value, 1):
        content = message.get("content", message.get("value")) if isinstance(message, dict) else None
        if isinstance(content, list):
            found += [(turn, part) for part in content if isinstance(part, dict)]
    return found


def _column_ref(item: Any, n: int) -> str:
    """One entry of an `images` column: a path or URI, `{"path": ...}`, or `{"bytes": ...}` as a parquet file
    written by `datasets` stores a picture (made a `data:` URI, so the contract keeps one form)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("bytes"), (bytes, bytearray)) and item["bytes"]:
        return "data:image;base64," + base64.b64encode(item["bytes"]).decode("ascii")
    if isinstance(item, dict) and isinstance(item.get("path"), str):
        return item["path"]
    raise BadRow(f"image {n}: an 'images' entry should be a path or data: URI, got {kind_name(item)}")
