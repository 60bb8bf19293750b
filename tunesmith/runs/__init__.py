"""The one owner of run folders: create, lock, write, read, and resolve what a verb's TARGET names.

    atomic.py   write a file or build a folder so a crash never leaves half of it (used everywhere)
    record.py   run.json as a typed RunRecord: read_run(path), is_run_folder(path)
    run_file.py run.json checked as untrusted input: its schema, RunFileError naming the bad field
    folder.py   RunFolder: create a run folder, write its record and final weights (training)
    derived.py  a run folder made from other runs (merge of several): parents recorded, written like a run
    metrics.py  metrics.jsonl: MetricsLog (append while training), read_metrics
    targets.py  resolve_target(spec): run folder, adapter folder, model folder, GGUF file or hub id
    load.py     load_target(target): model + adapter + tokenizer with the run's chat template

Verbs import from here, never parse run.json or metrics.jsonl themselves.
"""

from tunesmith.runs.record import RUN_FILE, RunRecord, is_run_folder, read_run
from tunesmith.runs.run_file import RunFileError
from tunesmith.runs.targets import Target, resolve_target

__all__ = ["RUN_FILE", "RunFileError", "RunRecord", "Target", "is_run_folder", "read_run", "resolve_target"]
