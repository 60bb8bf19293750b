"""HTML pages from the Jinja2 templates beside this file (`*.html.j2`), every printed value escaped.

Run and eval folders are untrusted input: a folder handed over by someone else, a run name, a model's answer
or a benchmark item can hold `<script>`. So the environment escapes every value a template prints
(autoescape), and a name a template uses but the caller did not give is an error (StrictUndefined), not a
silently empty cell. Pages stay self-contained (inline CSS, images as base64 data URIs, no external file,
script or font) so a report can be mailed or archived alone.
"""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

import jinja2


@cache
def environment() -> jinja2.Environment:
    """The one environment the pages render with (templates are read once, from the installed package)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("tunesmith", "pages"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_page(template: str, **values: Any) -> str:
    """`template` (a file name in this folder) rendered with `values`, each escaped where it is printed."""
    return environment().get_template(template).render(**values)


def png_image(png: Path) -> dict[str, str]:
    """A PNG file as the `alt` and `src` (a base64 data URI) of an <img>: embedded, so the page needs no file."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return {"alt": Path(png).name, "src": f"data:image/png;base64,{data}"}
