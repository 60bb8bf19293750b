"""`tunesmith docs`: the recipe reference (recipe/docs.py) or, with --compare, the comparison spec's
(compare/docs.py), generated from the schema."""

from __future__ import annotations

import typer


def docs(
    compare: bool = typer.Option(False, "--compare", help="the comparison spec's keys (docs/compare.md) instead"),
) -> None:
    """Print the recipe reference (every key, type, default, meaning), generated from the schema."""
    if compare:
        from tunesmith.compare.docs import render_compare_docs

        typer.echo(render_compare_docs(), nl=False)
        return
    from tunesmith.recipe.docs import render_recipe_docs

    typer.echo(render_recipe_docs(), nl=False)
