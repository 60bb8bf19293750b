"""Start, watch, stop and resume training from the page, as detached `python -m tunesmith train` processes.

A launch validates the recipe exactly as the CLI does (`recipe_from_dict`, same UserError text), forces
its output into the runs folder, writes it to `RUNS/.launches/<name>/recipe.yaml` and starts
`python -m tunesmith train that.yaml` with an argument list (never a shell) in a new session, so the run
survives closing the page and restarting the UI. Its console output goes to `train.log` and its pid to
`process.json` beside the recipe. These live outside `RUNS/<name>/` because `train` refuses to start a
fresh run in a folder that already holds files. Stop sends SIGINT: the loop saves a checkpoint and marks
the run interrupted; resume starts the same recipe with --resume. Neither runs a recipe that would run code
(trust_remote_code, a reward that is not built in) unless the dashboard was started with --allow-code
(code_guard.py). A launch with `nproc` > 1 runs
`tunesmith train ... --nproc N` (torchrun on this machine, train/launch.py); its stop goes to the whole
process group, so every rank sees the Ctrl-C, and resume uses the same number of processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tunesmith.errors import UserError
from tunesmith.recipe.spec import Recipe, recipe_from_dict
from tunesmith.ui.code_guard import refuse_code
from tunesmith.ui.guard import run_path

LAUNCH_DIR = ".launches"
RECIPE_FILE, LOG_FILE, PROCESS_FILE = "recipe.yaml", "train.log", "process.json"
MAX_NPROC = 8
"""The most training processes the page starts on this machine; more belong on torchrun's own command line."""


def parse_nproc(value: Any) -> int:
    """The page's --nproc field as a whole number from 1 to MAX_NPROC, else a UserError saying so."""
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not text.isdigit() or not 1 <= int(text) <= MAX_NPROC:
        raise UserError(f"--nproc: give a whole number of training processes from 1 to {MAX_NPROC}, got {value!r} "
                        "(more processes: run torchrun or accelerate launch on the command line)")
    return int(text)


def parse_recipe_text(text: str) -> dict[str, Any]:
    """YAML text from the page as a mapping, with the CLI's messages for what is not one."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise UserError(f"recipe: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"recipe: a recipe is a mapping of keys (name, model, method, ...), got {type(raw).__name__}")
    return raw


def validate(raw: dict[str, Any], runs_dir: Path, nproc: int = 1, allow_code: bool = False) -> Recipe:
    """The recipe as `tunesmith train --nproc N` would see it, its output forced into the runs folder; refused
    when it would run code and `allow_code` (tunesmith ui --allow-code) is off."""
    refuse_code(raw, allow_code)  # before validation: the keys as the user wrote them
    recipe = recipe_from_dict({**raw, "output": str(runs_dir)}, source="recipe")
    refuse_code(recipe.model_dump(mode="json"), allow_code)  # and as training will read them
    run_path(runs_dir, recipe.name)
    if nproc > 1:
        from tunesmith.train.distributed import check_layout

        check_layout(recipe.train.grad_accum, nproc)  # what each rank would refuse at its start, said once here
    return recipe


class Launcher:
    """Training processes started from the page; their state lives on disk, so a restarted UI finds them."""

    def __init__(self, runs_dir: Path, workdir: Path | None = None, allow_code: bool = False) -> None:
        self.runs_dir = runs_dir.resolve()
        self.workdir = (workdir or Path.cwd()).resolve()  # relative model/data paths resolve as on the CLI
        self.allow_code = allow_code
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, raw: dict[str, Any], overwrite: bool = False, nproc: int = 1) -> dict[str, Any]:
        """Validate `raw` and start training it in `nproc` processes; refuses while the same run is still going."""
        recipe = validate(raw, self.runs_dir, nproc, self.allow_code)
        if self.status(recipe.name) == "running":
            raise UserError(f"run {recipe.name} is already training; stop it first")
        existing = self.runs_dir / recipe.name
        if existing.is_dir() and any(existing.iterdir()) and not overwrite:
            raise UserError(f"run folder {existing} already holds a run; tick overwrite to replace it, resume it from "
                            "its page, or choose another name")
        folder = self.launch_dir(recipe.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECIPE_FILE).write_text(yaml.safe_dump({**raw, "output": str(self.runs_dir)}, sort_keys=False))
        return self._spawn(recipe.name, ["--overwrite"] if overwrite else [], nproc)

    def resume(self, name: str) -> dict[str, Any]:
        """Continue a stopped run from its newest checkpoint (train --resume with the launched recipe)."""
        if self.status(name) == "running":
            raise UserError(f"run {name} is already training")
        stored = self.launch_dir(name) / RECIPE_FILE
        if not stored.is_file():
            raise UserError(f"run {name} was not launched from this page; resume it with tunesmith train RECIPE --resume")
        refuse_code(parse_recipe_text(stored.read_text()), self.allow_code)  # a runs folder may be handed over
        return self._spawn(name, ["--resume"], (self._process(name) or {}).get("nproc", 1))

    def stop(self, name: str) -> dict[str, Any]:
        """SIGINT, as Ctrl-C: the loop saves a checkpoint, marks the run interrupted and exits."""
        info = self._process(name)
        if info is None or self.status(name) != "running":
            raise UserError(f"run {name} is not training")
        if info.get("nproc", 1) > 1:
            os.killpg(info["pid"], signal.SIGINT)  # its own session's group: launcher and every rank
        else:
            os.kill(info["pid"], signal.SIGINT)
        return {"name": name, "signal": "SIGINT", "pid": info["pid"]}

    def status(self, name: str) -> str | None:
        """"running", "exited" (a clean or failed end), "gone" (pid dead without our seeing it), None if never launched."""
        info = self._process(name)
        if info is None:
            return None
        child = self.children.get(info["pid"])
        if child is not None:
            return "running" if child.poll() is None else "exited"
        return "running" if _alive(info["pid"]) else "gone"

    def statuses(self) -> dict[str, str]:
        folder = self.runs_dir / LAUNCH_DIR
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        return {name: s for name in names if (s := self.status(name)) is not None}

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.launch_dir(name) / LOG_FILE
        if not path.is_file():
            return ""
        text = path.read_bytes()[-chars:].decode("utf-8", "replace")
        return text.replace("\r", "\n")

    def launch_dir(self, name: str) -> Path:
        run_path(self.runs_dir, name)  # the name check
        return self.runs_dir / LAUNCH_DIR / name

    def _spawn(self, name: str, flags: list[str], nproc: int) -> dict[str, Any]:
        folder = self.launch_dir(name)
        command = train_command(folder / RECIPE_FILE, flags, nproc)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(folder / LOG_FILE, "ab") as log:
            child = subprocess.Popen(command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.children[child.pid] = child
        (folder / PROCESS_FILE).write_text(json.dumps({"pid": child.pid, "command": command, "nproc": nproc}))
        return {"name": name, "pid": child.pid, "command": command, "nproc": nproc}

    def nproc(self, name: str) -> int | None:
        """How many training processes the last launch or resume of `name` asked for (None: never launched)."""
        info = self._process(name)
        return info.get("nproc", 1) if info else None

    def _process(self, name: str) -> dict[str, Any] | None:
        path = self.launch_dir(name) / PROCESS_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def train_command(recipe_file: Path, flags: list[str], nproc: int) -> list[str]:
    """The argument list (no shell) of a launch: `python -m tunesmith train RECIPE [flags] [--nproc N]`."""
    command = [sys.executable, "-m", "tunesmith", "train", str(recipe_file), *flags]
    return command + (["--nproc", str(nproc)] if nproc > 1 else [])


def _alive(pid: int) -> bool:
    """A live (not zombie) process whose command line is a tunesmith train (not a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"tunesmith" in cmdline and b"train" in cmdline
