"""`tunesmith advise`: RAG, fine-tune or both from six criteria; the paradigm; a recipe that fits (advise/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tunesmith.commands.common import friendly


@friendly
def advise(
    answers: Optional[Path] = typer.Option(None, "--answers", help="YAML file of criterion: answer"),
    freshness: Optional[str] = typer.Option(None, "--freshness", help="static | monthly | daily"),
    citations: Optional[str] = typer.Option(None, "--citations", help="yes | no"),
    pairs: Optional[str] = typer.Option(None, "--pairs", help="labelled pairs: none | hundreds | thousands"),
    format: Optional[str] = typer.Option(None, "--format", help="format criticality: low | medium | high"),
    vocabulary: Optional[str] = typer.Option(None, "--vocabulary", help="general | some | dense"),
    latency: Optional[str] = typer.Option(None, "--latency", help="latency budget: relaxed | moderate | tight"),
    preference: Optional[str] = typer.Option(None, "--preference", help="preference pairs too: yes | no"),
    domain_text: Optional[str] = typer.Option(None, "--domain-text", help="raw domain text: none | some | plentiful"),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="ask for the answers still missing"),
    model: Optional[str] = typer.Option(None, "--model", help="model folder, hub id, GGUF file, or a size such as 7B"),
    data: Optional[str] = typer.Option(None, "--data", help="training data file for the written recipe"),
    replay: Optional[str] = typer.Option(None, "--replay", help="general data to replay if full fine-tuning wins"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="the GPU to fit, e.g. h100-80g"),
    memory: Optional[str] = typer.Option(None, "--memory", help="device memory to fit, e.g. 24GiB"),
    seq_len: int = typer.Option(1024, "--max-seq-len"),
    out: Optional[Path] = typer.Option(None, "--out", help="where to write the recipe"),
) -> None:
    """RAG, fine-tune or both from six criteria; the paradigm; and a recipe that fits."""
    from tunesmith.advise import advise as run_advise
    from tunesmith.advise import pick_device, read_answers
    from tunesmith.advise.report import print_advice

    flags = dict(freshness=freshness, citations=citations, pairs=pairs, format=format, vocabulary=vocabulary,
                 latency=latency, preference=preference, domain_text=domain_text)
    ask = (lambda name, question, choices: typer.prompt(f"{question} ({'/'.join(choices)})")) if interactive else None
    given = read_answers(answers, flags, ask)
    result = run_advise(given, model=model, data=data, device=pick_device(gpu, memory), out=out, seq_len=seq_len,
                        replay=replay)
    print_advice(result, given, Console())
