"""Print an Advice: each criterion's answer and vote, the outcome with its rule, the paradigm, the recipe."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunesmith.advise import Advice


def print_advice(advice: Advice, answers: dict[str, str], console: Console) -> None:
    table = Table(title="RAG or fine-tune")
    for column in ("criterion", "answer", "vote", "why"):
        table.add_column(column)
    for name, vote in advice.decision.votes.items():
        side = {"rag": "RAG", "finetune": "fine-tune", None: "-"}[vote.side]
        table.add_row(name, answers[name], f"{side} {'+' * vote.weight}".strip(), vote.reason)
    console.print(table)
    scores = advice.decision.scores
    console.print(f"[bold]outcome: {advice.decision.summary}[/] (RAG {scores['rag']}, fine-tune {scores['finetune']}; "
                  f"{advice.decision.reasons[0]})")
    if advice.paradigm is not None:
        console.print(f"paradigm: {' -> '.join(s.upper() for s in advice.paradigm.steps)} with {advice.paradigm.adapter}")
        for reason in advice.paradigm.reasons:
            console.print(f"  - {reason}")
    if advice.recipe is not None:
        console.print(f"recipe written to {advice.recipe} (check it: tunesmith validate {advice.recipe}; then "
                      f"tunesmith plan {advice.recipe})")
    for note in advice.notes:
        console.print(f"note: {note}")
