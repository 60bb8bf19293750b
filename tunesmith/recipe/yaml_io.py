"""Reading a recipe file: YAML text in UTF-8, each key once, or one UserError saying what is wrong.

PyYAML alone let three things through: a binary or UTF-16 file raised a UnicodeDecodeError traceback, a
deeply nested document a RecursionError, and a key written twice silently kept the last value (so a
`lr:` lower in the file overrode the one the user was editing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import UserError

_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key written twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key}' appears twice (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                        "keep one", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: SafeLoader's own message follows
                break
        return super().construct_mapping(node, deep=deep)


def read_yaml_text(path: Path) -> str:
    """The file's text; a UserError for a file that is not UTF-8 text."""
    data = path.read_bytes()
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise UserError(f"{path}: the file is {name} text; re-save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (bad byte at offset {err.start}); is it a recipe? Re-save it "
                        "as UTF-8 YAML") from None


def load_yaml(path: Path) -> Any:
    """Parse the recipe file at `path`; every failure is a UserError naming the file."""
    text = read_yaml_text(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise UserError(f"{path}: the YAML is nested too deeply to be a recipe") from None
