"""The six criteria of the RAG-or-fine-tune decision, their answers, and each answer's vote.

A vote is (side, weight, reason): side "rag" (retrieval supplies *what* to answer with), "finetune" (training
shapes *how* to answer), or None (no pull either way). Weight 2 is a strong pull, 1 a lean. The table:

| criterion | answer -> vote |
| --- | --- |
| knowledge freshness | daily: RAG 2; monthly: RAG 1; static: fine-tune 1 |
| citations needed | yes: RAG 2; no: none |
| labelled pairs available | none: RAG 2 (nothing to train on); hundreds: fine-tune 1; thousands: fine-tune 2 |
| format criticality | high: fine-tune 2; medium: fine-tune 1; low: none |
| vocabulary density | dense: fine-tune 1 (and CPT if domain text is plentiful); some, general: none |
| latency budget | tight: fine-tune 2 (no retrieval hop, no long prompt); moderate, relaxed: none |
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.errors import UserError, suggestion


@dataclass(frozen=True)
class Vote:
    side: str | None
    weight: int
    reason: str


CRITERIA: dict[str, dict[str, Vote]] = {
    "freshness": {
        "daily": Vote("rag", 2, "knowledge changes daily: retraining cannot keep up, retrieval can"),
        "monthly": Vote("rag", 1, "knowledge changes monthly: retrieval avoids a retraining cycle"),
        "static": Vote("finetune", 1, "knowledge is static: it can be trained in once"),
    },
    "citations": {
        "yes": Vote("rag", 2, "answers must cite sources: only retrieval knows where a fact came from"),
        "no": Vote(None, 0, "no citations needed"),
    },
    "pairs": {
        "none": Vote("rag", 2, "no labelled pairs: nothing to fine-tune on (collect hundreds first)"),
        "hundreds": Vote("finetune", 1, "hundreds of labelled pairs: enough for PEFT to learn a task"),
        "thousands": Vote("finetune", 2, "thousands of labelled pairs: enough to fine-tune well"),
    },
    "format": {
        "high": Vote("finetune", 2, "the output format is critical: fine-tuning makes it reliable"),
        "medium": Vote("finetune", 1, "the format matters: fine-tuning steadies it"),
        "low": Vote(None, 0, "the format is free: prompting is enough"),
    },
    "vocabulary": {
        "dense": Vote("finetune", 1, "dense domain vocabulary: training teaches the model to use it"),
        "some": Vote(None, 0, "some domain terms: a prompt or retrieved context can carry them"),
        "general": Vote(None, 0, "general vocabulary"),
    },
    "latency": {
        "tight": Vote("finetune", 2, "tight latency budget: no retrieval hop and no long retrieved prompt"),
        "moderate": Vote(None, 0, "moderate latency budget: a retrieval hop fits"),
        "relaxed": Vote(None, 0, "relaxed latency budget"),
    },
}
QUESTIONS: dict[str, str] = {
    "freshness": "How often does the knowledge the answers need change?",
    "citations": "Must answers cite their sources?",
    "pairs": "How many labelled (input, ideal answer) pairs do you have?",
    "format": "How critical is the exact output format or style?",
    "vocabulary": "How dense is the domain's specialised vocabulary?",
    "latency": "What is the latency budget per answer?",
}
OPTIONAL: dict[str, tuple[str, ...]] = {
    "preference": ("no", "yes"),        # preference pairs (chosen/rejected) for alignment after SFT
    "domain_text": ("none", "some", "plentiful"),  # raw domain text for continued pre-training
}


def check_answers(answers: dict[str, str]) -> dict[str, str]:
    """Lower-cased answers, each one of its criterion's choices; unknown keys or values fail with the choices."""
    known = {**{k: tuple(v) for k, v in CRITERIA.items()}, **OPTIONAL}
    checked: dict[str, str] = {}
    for key, value in answers.items():
        if key not in known:
            raise UserError(f"advise: unknown criterion '{key}'{suggestion(key, list(known))}; "
                            f"use {', '.join(known)}")
        text = str(value).strip().lower()
        if text in ("true", "false"):
            text = "yes" if text == "true" else "no"
        if text not in known[key]:
            raise UserError(f"advise: {key} '{value}' is not an answer{suggestion(text, known[key])}; "
                            f"choose one of {', '.join(known[key])}")
        checked[key] = text
    return checked


def missing(answers: dict[str, str]) -> list[str]:
    return [name for name in CRITERIA if name not in answers]
