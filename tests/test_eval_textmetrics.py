"""Answer metrics: SQuAD normalisation, ROUGE-L (checked against hand-computed LCS values), GSM8K numbers."""

from __future__ import annotations

import pytest

from tunesmith.evaluate.textmetrics import (
    exact_match,
    final_answer,
    last_number,
    normalize_answer,
    normalized_match,
    rouge_l_f1,
)


def test_normalize_answer_is_squad_style():
    assert normalize_answer("  The Eiffel   Tower!! ") == "eiffel tower"
    assert normalize_answer("An apple, a pear.") == "apple pear"
    assert normalized_match("Paris.", "paris") and not exact_match("Paris.", "paris")
    assert exact_match(" Paris ", "Paris")
    assert not normalized_match("Paris is big", "Paris")


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 1.0),
        ("", "anything", 0.0),
        ("dog", "cat", 0.0),
        # LCS("the cat was on the mat", "the cat sat on the mat") = the cat on the mat = 5 of 6 and 6: F1 = 5/6
        ("the cat was on the mat", "the cat sat on the mat", 5 / 6),
        # LCS = "a c" (2); precision 2/3, recall 2/4 -> F1 = 2PR/(P+R) = 4/7
        ("a b c", "a x c y", 4 / 7),
        ("Police KILLED the gunman.", "the gunman police killed", 2 * 0.5 * 0.5 / 1.0),  # LCS "the gunman" = 2 of 4
    ],
)
def test_rouge_l_f1(prediction, reference, expected):
    assert rouge_l_f1(prediction, reference) == pytest.approx(expected)


def test_gsm8k_numbers():
    reference = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert final_answer(reference) == "72"
    assert final_answer("#### 1,234") == "1234"
    assert final_answer("no marker 5") is None
    assert last_number("so she makes 9 * 2 = $18.") == "18"
    assert last_number("The answer is 18.00 dollars") == "18"
    assert last_number("-3 degrees") == "-3"
    assert last_number("0.5 of it") == "0.5"
    assert last_number("no digits here") is None
