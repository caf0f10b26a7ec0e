"""Per-sample scoring: lm-eval's acc / acc_norm rules and the gen post-processors."""

from __future__ import annotations

import math

from hanlin.eval.scoring import (
    INVALID,
    mean_and_stderr,
    postprocess,
    score_choices,
    score_generation,
    token_f1,
)


def test_acc_and_acc_norm_differ_when_lengths_differ() -> None:
    # " yes" is likelier in total; per character the long choice wins.
    scores = score_choices([-2.0, -6.0], (" yes", " a much longer answer"), gold=1)
    assert scores["accuracy"] == 0.0
    assert scores["accuracyNorm"] == 1.0


def test_ties_pick_the_first_choice_like_argmax() -> None:
    assert score_choices([-1.0, -1.0], (" A", " B"), gold=0)["accuracy"] == 1.0
    assert score_choices([-1.0, -1.0], (" A", " B"), gold=1)["accuracy"] == 0.0


def test_byte_normalisation_counts_utf8_bytes() -> None:
    # Same characters, different bytes: only accuracyBytes tells them apart.
    scores = score_choices([-4.0, -3.3], (" éé", " ab"), gold=0)
    assert scores["accuracyNorm"] == 0.0
    assert scores["accuracyBytes"] == 1.0


def test_postprocessors() -> None:
    assert postprocess(" 80 + 29 = 109", "number") == "109"
    assert postprocess("no digits", "number") == INVALID
    assert postprocess(" The answer is C.", "letter", n_choices=4) == "C"
    assert postprocess(" I think E, so B", "letter", n_choices=4) == "B"
    assert postprocess("  05/01/2021\nmore", "first-line") == "05/01/2021"


def test_generation_scores() -> None:
    assert score_generation("109", "109", "number", "exactMatch") == {"exactMatch": 1.0}
    assert score_generation("109.0", "109", "number", "exactMatch") == {"exactMatch": 1.0}
    assert score_generation("108", "109", "number", "exactMatch") == {"exactMatch": 0.0}
    assert score_generation("Paris", "paris", "first-line", "exactMatch") == {"exactMatch": 0.0}
    assert score_generation("the Eiffel tower", "Eiffel Tower", "first-line", "f1") == {"f1": 1.0}
    assert math.isclose(token_f1("red car", "red bus"), 0.5)


def test_mean_and_stderr() -> None:
    mean, err = mean_and_stderr([1.0, 0.0, 1.0, 0.0])
    assert mean == 0.5
    assert err is not None and math.isclose(err, math.sqrt((1 / 3) / 4))
    assert mean_and_stderr([1.0]) == (1.0, None)
