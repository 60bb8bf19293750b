"""Pictures in chat data: the one placeholder every format maps to, and opening an image reference safely.

A multimodal `Conversation` keeps its images as references (a local path or a `data:` URI) and marks where
each sits with `IMAGE_PLACEHOLDER` in the message text. Opening is the boundary: a reference comes from a
data file or a request someone else wrote, so remote URLs are refused (no network is reached because a row
says so), and Pillow's decompression-bomb guard stays on.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_PLACEHOLDER = "<image>"
"""Where an image sits in a message's text (LLaMA-Factory's and LLaVA's spelling)."""
MAX_IMAGE_BYTES = 32 * 1024 * 1024
"""The largest encoded image read (32 MiB; a 24-megapixel JPEG is about 10 MiB): a reference to a huge file
fails at once instead of filling memory."""


class ImageError(ValueError):
    """An image reference that cannot be opened; the message says why, the caller adds file:line."""


def count_placeholders(texts: list[str] | tuple[str, ...]) -> int:
    """How many image placeholders the texts hold, to check them against the row's image list."""
    return sum(text.count(IMAGE_PLACEHOLDER) for text in texts)


def _data_uri_bytes(ref: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ImageError("a data: URI image must be base64 (data:image/png;base64,...)")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ImageError(f"the data: URI image is over {MAX_IMAGE_BYTES // 2**20} MiB")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error as exc:
        raise ImageError(f"the data: URI's base64 is corrupt ({exc})") from None


def is_remote(ref: str) -> bool:
    """An http(s) URL: never fetched, for a data row or a request naming one must not make tunesmith reach
    the network (every reader of image references asks this one predicate)."""
    return ref[:8].lower().startswith(("http://", "https://"))


def remote_refusal(ref: str) -> str:
    """Why a data file's remote image is refused, and what to do instead."""
    return (f"remote image {ref[:80]!r} refused: images are read from local files or data: URIs only "
            "(download it and give its path)")


def image_bytes(ref: str) -> bytes:
    """The encoded bytes behind a reference: a `data:` URI or a local file; a remote URL is refused."""
    if is_remote(ref):
        raise ImageError(remote_refusal(ref))
    if ref[:5].lower() == "data:":
        return _data_uri_bytes(ref)
    path = Path(ref)
    if not path.is_file():
        raise ImageError(f"{'not a regular file' if path.exists() else 'image file not found'}: {ref}")
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageError(f"image file over {MAX_IMAGE_BYTES // 2**20} MiB: {ref}")
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"image file unreadable: {ref} ({exc.strerror})") from None


def open_image(ref: str) -> Image:
    """The picture behind a reference, decoded whole and in RGB (what every VLM processor expects)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    data = image_bytes(ref)
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            _check_pixels(image.size, ref)
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError) as exc:
        raise ImageError(f"not a readable image: {shown(ref)} ({_reason(exc)})") from None


def image_size(ref: str) -> tuple[int, int]:
    """(width, height) from the image's header alone, without decoding its pixels (for the data report)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(image_bytes(ref))) as image:
            return image.size
    except (UnidentifiedImageError, OSError, PILImage.DecompressionBombError) as exc:
        raise ImageError(f"not a readable image: {shown(ref)} ({_reason(exc)})") from None


def _check_pixels(size: tuple[int, int], ref: str) -> None:
    """Refuse a picture over Pillow's pixel bound (`Image.MAX_IMAGE_PIXELS`) where Pillow itself only warns
    (it raises only past twice the bound): a small file can declare a huge canvas, a decompression bomb."""
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise ImageError(f"image {shown(ref)} is {size[0]}x{size[1]} pixels, over the bound of {limit:,} pixels")


def shown(ref: str) -> str:
    """A reference as an error message names it: a path as given, an inline image by its size (its base64
    would only be noise)."""
    if ref[:5].lower() == "data:":
        return f"inline data: URI of {len(ref):,} characters"
    return ref if len(ref) <= 200 else ref[:200] + "..."


def _reason(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):  # Pillow's own text names an in-memory buffer object
        return "no image format Pillow reads"
    return str(exc)
