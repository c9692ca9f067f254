"""GLUE metrics against small cases checked by hand, and how they combine into scores."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sharebert.trainer.finetune.glue import GLUE_TASKS
from sharebert.trainer.finetune.glue_metrics import (
    accuracy,
    average_ranks,
    compute_metrics,
    f1_binary,
    glue_average,
    matthews_corrcoef,
    pearson,
    predictions_from_logits,
    selection_score,
    spearman,
    task_score,
)


def test_accuracy():
    assert accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


def test_f1_of_the_positive_class():
    # tp = 2 (rows 0, 4), fp = 1 (row 1), fn = 1 (row 3): F1 = 2*2 / (2*2 + 1 + 1)
    assert f1_binary([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(4 / 6)
    assert f1_binary([0, 0, 0], [0, 0, 0]) == 0.0  # nothing positive anywhere: 0, not a division error
    assert f1_binary([0, 0, 0], [1, 0, 1]) == 0.0


def test_mcc_binary_hand_case():
    # tp=2 tn=1 fp=1 fn=1: (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = 1 / 6
    assert matthews_corrcoef([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(1 / 6)
    # scikit-learn's documented example, with labels -1/+1
    assert matthews_corrcoef([1, -1, 1, 1], [1, 1, 1, -1]) == pytest.approx(-1 / 3)


def test_mcc_perfect_inverse_and_degenerate():
    labels = [0, 1, 1, 0, 1]
    assert matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert matthews_corrcoef([1 - y for y in labels], labels) == pytest.approx(-1.0)
    # One class predicted everywhere (what an untrained CoLA model does): 0, not NaN.
    assert matthews_corrcoef([1, 1, 1, 1, 1], labels) == 0.0
    assert matthews_corrcoef([0, 0, 0, 0, 0], labels) == 0.0
    assert matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant labels
    assert matthews_corrcoef([1, 1], [1, 1]) == 0.0


def test_mcc_multiclass_hand_case():
    # confusion rows (true) [1,1,0] [0,1,1] [1,0,1]: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) = (18-12)/24
    assert matthews_corrcoef([0, 1, 1, 2, 2, 0], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.25)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=40))
def test_mcc_equals_the_binary_phi_formula(pairs):
    pred = np.array([p for p, _ in pairs])
    true = np.array([t for _, t in pairs])
    tp = np.sum((pred == 1) & (true == 1))
    tn = np.sum((pred == 0) & (true == 0))
    fp = np.sum((pred == 1) & (true == 0))
    fn = np.sum((pred == 0) & (true == 1))
    den = math.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    expected = (tp * tn - fp * fn) / den if den else 0.0
    assert matthews_corrcoef(pred, true) == pytest.approx(expected, abs=1e-12)


def test_pearson():
    assert pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0)
    assert pearson([0.1, 0.1, 0.1], [1.0, 2.0, 3.0]) == 0.0  # constant predictions: 0, not NaN


def test_average_ranks_share_ties():
    np.testing.assert_allclose(average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
    np.testing.assert_allclose(average_ranks([5, 5, 5]), [2, 2, 2])


def test_spearman():
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))
    assert spearman([2, 2, 2, 2], [1, 2, 3, 4]) == 0.0


def test_length_mismatch_and_empty_are_errors():
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError):
        pearson([], [])


def test_task_metrics_and_scores():
    mrpc, stsb, mnli, cola = (GLUE_TASKS[t] for t in ("mrpc", "stsb", "mnli", "cola"))
    m = compute_metrics(mrpc, [1, 1, 0, 0, 1], [1, 0, 0, 1, 1])
    assert m == pytest.approx({"accuracy": 0.6, "f1": 4 / 6})
    assert task_score(mrpc, {"validation": m}) == pytest.approx((0.6 + 4 / 6) / 2)
    assert set(compute_metrics(stsb, [0.5, 1.0, 4.0], [1.0, 2.0, 5.0])) == {"pearson", "spearman"}
    assert set(compute_metrics(cola, [0, 1], [0, 1])) == {"mcc"}
    dev = {"validation_matched": {"accuracy": 0.8}, "validation_mismatched": {"accuracy": 0.7}}
    assert task_score(mnli, dev) == pytest.approx(0.75)
    assert selection_score(mnli, dev["validation_matched"]) == pytest.approx(0.8)  # picked on matched only
    assert glue_average({"mrpc": 0.5, "cola": 0.25}) == pytest.approx(0.375)


def test_predictions_from_logits():
    logits = np.array([[0.1, 0.9], [2.0, -1.0]])
    np.testing.assert_array_equal(predictions_from_logits(GLUE_TASKS["sst2"], logits), [1, 0])
    np.testing.assert_allclose(predictions_from_logits(GLUE_TASKS["stsb"], np.array([[3.5], [0.25]])), [3.5, 0.25])
