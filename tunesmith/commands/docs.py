"""`tunesmith docs`: the recipe reference, generated from the schema (recipe_docs.py)."""

from __future__ import annotations

import typer


def docs() -> None:
    """Print the recipe reference (every key, type, default, meaning), generated from the schema."""
    from tunesmith.recipe_docs import render_recipe_docs

    typer.echo(render_recipe_docs(), nl=False)
