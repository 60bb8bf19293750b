"""From six answers to an outcome (RAG, fine-tune, or both) and, when fine-tuning is in it, the paradigm.

Outcome: the votes are summed per side. Without labelled pairs there is nothing to fine-tune on, so the
outcome is RAG whatever else pulls. Both sides strong (each 2 or more) gives "both": fine-tune for how to
respond, RAG for what to respond with. Otherwise the larger side wins; a tie goes to RAG, the cheaper and
reversible start.

Paradigm: CPT first when the vocabulary is dense and raw domain text is plentiful (far from general text);
then SFT; PEFT (LoRA) unless thousands of pairs and full fine-tuning fits the memory (then full with replay);
QLoRA when LoRA does not fit; DPO after SFT when preference pairs exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.advise.criteria import CRITERIA, Vote

BOTH = "both: fine-tune for how to respond, RAG for what to respond with"
STRONG = 2


@dataclass
class Decision:
    outcome: str                     # "rag" | "finetune" | "both"
    votes: dict[str, Vote]
    scores: dict[str, int]
    reasons: list[str] = field(default_factory=list)

    @property
    def fine_tunes(self) -> bool:
        return self.outcome in ("finetune", "both")

    @property
    def summary(self) -> str:
        return {"rag": "RAG", "finetune": "fine-tune", "both": BOTH}[self.outcome]


def decide(answers: dict[str, str]) -> Decision:
    """The outcome of six checked answers, with each criterion's vote and the rule that decided."""
    votes = {name: CRITERIA[name][answers[name]] for name in CRITERIA}
    scores = {"rag": 0, "finetune": 0}
    for vote in votes.values():
        if vote.side:
            scores[vote.side] += vote.weight
    rag, ft = scores["rag"], scores["finetune"]
    if answers["pairs"] == "none":
        outcome, rule = "rag", "no labelled pairs: fine-tuning has nothing to learn from, so RAG"
    elif rag >= STRONG and ft >= STRONG:
        outcome, rule = "both", f"both sides pull strongly (RAG {rag}, fine-tune {ft}): {BOTH}"
    elif ft > rag:
        outcome, rule = "finetune", f"fine-tune {ft} vs RAG {rag}"
    else:
        outcome, rule = "rag", f"RAG {rag} vs fine-tune {ft}" + (" (a tie starts with RAG: cheaper, reversible)"
                                                               if rag == ft else "")
    return Decision(outcome, votes, scores, [rule])


@dataclass
class Paradigm:
    steps: list[str]                 # e.g. ["cpt", "sft", "dpo"]
    adapter: str                     # "lora" | "qlora" | "full"
    reasons: list[str]


def paradigm(answers: dict[str, str], fits: dict[str, bool]) -> Paradigm:
    """Which training steps, and which adapter: `fits[adapter]` says whether its plan fits the memory."""
    steps, reasons = [], []
    if answers["vocabulary"] == "dense" and answers.get("domain_text") == "plentiful":
        steps.append("cpt")
        reasons.append("dense vocabulary and plentiful raw domain text: continued pre-training first, then SFT")
    steps.append("sft")
    reasons.append("instruction tuning (SFT) on the labelled pairs")
    if answers["pairs"] == "thousands" and fits.get("full"):
        adapter = "full"
        reasons.append("thousands of pairs and full fine-tuning fits: full, lr 2e-5, with data replay against forgetting")
    elif fits.get("lora", True):
        adapter = "lora"
        reasons.append("PEFT (LoRA): under 1% of the weights trained, little forgetting, fits the memory"
                       if answers["pairs"] == "thousands" else "hundreds of pairs: PEFT (LoRA), less to overfit")
    else:
        adapter = "qlora"
        reasons.append("LoRA does not fit the memory: QLoRA (4-bit NF4 base + LoRA)")
    if answers.get("preference") == "yes":
        steps.append("dpo")
        reasons.append("preference pairs available: DPO after SFT")
    return Paradigm(steps, adapter, reasons)
