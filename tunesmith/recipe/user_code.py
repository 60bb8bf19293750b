"""The only code a recipe may name besides tunesmith's own registry: Python files given on the command line.

A recipe is data: it is handed over, launched from the dashboard, copied from an issue. If a name in it could
import any module (`os:getcwd`) or any file (`/tmp/x.py:f`), reading a recipe would run code. So a recipe
names a user's function as `function` or `file_stem:function`, and only from a file that the person running
the command passed with `--rewards-file FILE`. The file's names are read without running it (its syntax
tree); it runs only when training loads its rewards (methods/shared/rewards.py).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import UserError, suggestion

OPTION = "--rewards-file"
"""The command-line option that names a user's reward file (train, validate)."""


@dataclass(frozen=True)
class UserCode:
    """The files named with --rewards-file, and the top-level functions each defines.

    `recorded`: names read back from a run's run.json; they are accepted as they are (the run was started with
    its files) but never resolve, so nothing from a run folder can run code.
    """

    files: tuple[Path, ...] = ()
    recorded: bool = False
    names: dict[Path, tuple[str, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_files(cls, files: Iterable[str | Path]) -> UserCode:
        """Check each file exists and parses, and list its functions; a clear error otherwise."""
        paths = tuple(Path(f).resolve() for f in files)
        stems: dict[str, Path] = {}
        for path in paths:
            if path.stem in stems and stems[path.stem] != path:
                raise UserError(f"{OPTION}: {stems[path.stem]} and {path} share the name '{path.stem}', which the "
                                f"recipe uses as '{path.stem}:function'; rename one of them")
            stems[path.stem] = path
        return cls(files=tuple(stems.values()), names={p: _functions(p) for p in stems.values()})

    def resolve(self, key: str, name: str, builtins: Sequence[str]) -> tuple[Path, str] | None:
        """(file, function) that `name` refers to; None for a recorded name; a ValueError naming `key` when
        `name` is neither a built-in nor a function of a file given on the command line."""
        if self.recorded:
            return None
        stem, sep, function = name.rpartition(":")
        found = [(p, function) for p, names in self.names.items()
                 if function in names and (not sep or p.stem == stem)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"{key}: '{name}' is defined in several {OPTION} files "
                             f"({', '.join(str(p) for p, _ in found)}); write it as file_stem:{function}")
        raise ValueError(self._unknown(key, name, builtins))

    def _unknown(self, key: str, name: str, builtins: Sequence[str]) -> str:
        ours = [f"{p.stem}:{n}" for p, names in self.names.items() for n in names]
        choices = [*builtins, *ours, *(n for names in self.names.values() for n in names)]
        given = (f"the {OPTION} files define: {', '.join(ours) or 'no function'}" if self.files
                 else f"no {OPTION} was given")
        return (f"{key}: unknown reward '{name}'{suggestion(name, choices)}; built-in rewards: {', '.join(builtins)}; "
                f"{given}. A recipe cannot import modules or files itself: put your function in a file and pass it "
                f"on the command line, e.g. tunesmith train RECIPE {OPTION} my_rewards.py, then name it in the "
                f"recipe as my_rewards:function (or function)")


def _functions(path: Path) -> tuple[str, ...]:
    """Names bound at the top level of `path` (functions, and names assigned there), read without running it."""
    if path.suffix != ".py" or not path.is_file():
        raise UserError(f"{OPTION}: {path} is not a Python file (.py); give the file that defines your reward "
                        "functions")
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as err:
        raise UserError(f"{OPTION}: {path} cannot be read as Python: {err}") from None
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return tuple(n for n in dict.fromkeys(names) if not n.startswith("_"))


NO_USER_CODE = UserCode()
"""What a recipe may name when no file was given: the built-in registry alone."""
RECORDED = UserCode(recorded=True)
"""For a recipe read back from run.json: names kept, never resolved to code."""
