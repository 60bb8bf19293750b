"""Reading a benchmark's rows from a local file (JSON Lines, JSON, CSV) or, failing that, a hub dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.data.loading import load_rows
from tunesmith.errors import UserError


def json_rows(name: str, source: str, hub: tuple[str | None, str]) -> list[tuple[dict[str, Any], str]]:
    """(row, where) pairs: `where` names the file and line for error messages."""
    path = Path(source).expanduser()
    if path.exists():
        return [(row.data, row.where) for row in load_rows(str(path))]
    return [(row, f"{source}:row {i}") for i, row in enumerate(hub_rows(name, source, hub), start=1)]


def hub_rows(name: str, source: str, hub: tuple[str | None, str]) -> list[dict[str, Any]]:
    """Rows of hub dataset `source` (config, split = `hub`); a missing local path fails here, clearly."""
    if source.startswith(("/", "./", "../", "~")) or source.endswith((".csv", ".jsonl", ".json")):
        raise UserError(f"{name}: file not found: {source}")
    import datasets

    config, split = hub
    try:
        return list(datasets.load_dataset(source, config, split=split))
    except Exception as e:  # datasets raises many types (connection, missing config, offline); all mean the same
        raise UserError(f"{name}: could not load hub dataset '{source}' ({type(e).__name__}: {e}); "
                        "give the path of a local file instead") from None
