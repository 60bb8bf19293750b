"""Pure text metrics for generated answers: exact match, SQuAD-style normalized match, ROUGE-L F1, and the
final-number extraction GSM8K is scored by.

No dependency: ROUGE-L is the F1 of the longest common subsequence of tokens (Lin, 2004), the sentence-level
variant `rouge_score` reports as `rougeL` (without stemming), which is the number papers quote.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)
_NUMBER = re.compile(r"-?[$]?\d[\d,]*(?:\.\d+)?")
_GSM8K_FINAL = re.compile(r"####\s*(-?[$]?\d[\d,]*(?:\.\d+)?)")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation and articles (a, an, the), collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> bool:
    """Equal after stripping surrounding whitespace only: the strictest score."""
    return prediction.strip() == reference.strip()


def normalized_match(prediction: str, reference: str) -> bool:
    """Equal after `normalize_answer`: forgives case, punctuation and articles, as SQuAD's EM does."""
    return normalize_answer(prediction) == normalize_answer(reference)


def rouge_l_f1(prediction: str, reference: str) -> float:
    """ROUGE-L F1 over lowercased word tokens (punctuation split off); 0.0 when either side is empty."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    if not pred or not ref:
        return 0.0
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _rouge_tokens(text: str) -> list[str]:
    # rouge_score's default tokenizer: lowercase, non-alphanumerics become spaces.
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by dynamic programming over one row: O(len(a) * len(b)) time, O(len(b)) memory."""
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def canonical_number(text: str) -> str | None:
    """A number written as GSM8K writes it ("$1,234.50", "18.") -> a canonical string ("1234.5"), else None."""
    cleaned = text.replace(",", "").replace("$", "").rstrip(".")
    try:
        value = float(cleaned)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def last_number(text: str) -> str | None:
    """The last number in a generation (the harness's "flexible extract"), canonicalised; None when none."""
    found = _NUMBER.findall(text)
    return canonical_number(found[-1]) if found else None


def final_answer(text: str) -> str | None:
    """The number after the last `#### ` (GSM8K references, and the "strict match" of generations)."""
    found = _GSM8K_FINAL.findall(text)
    return canonical_number(found[-1]) if found else None
