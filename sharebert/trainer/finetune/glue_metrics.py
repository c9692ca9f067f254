"""GLUE's metrics as pure numpy functions, and how they combine into task scores and the GLUE average.

Degenerate inputs give 0.0, never NaN: a model that predicts one class everywhere (common early in
fine-tuning) has Matthews correlation 0, and constant predictions correlate 0 with the labels. A NaN
would make every later checkpoint compare as "not better".

Scores (the GLUE leaderboard's rule, Wang et al. 2019): a task with several numbers scores their
mean (MRPC and QQP: accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and mismatched
accuracy); the GLUE average is the unweighted mean of the task scores. The diagnostic set (AX)
has no dev labels and never enters the average.
"""

from __future__ import annotations

import numpy as np

from .glue import GlueTask


def accuracy(predictions, labels) -> float:
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def f1_binary(predictions, labels, positive: int = 1) -> float:
    """F1 of the positive class (GLUE's F1 for MRPC and QQP); 0.0 when it is never predicted nor true."""
    predictions, labels = _pair(predictions, labels)
    tp = int(np.sum((predictions == positive) & (labels == positive)))
    fp = int(np.sum((predictions == positive) & (labels != positive)))
    fn = int(np.sum((predictions != positive) & (labels == positive)))
    denominator = 2 * tp + fp + fn
    return 2.0 * tp / denominator if denominator else 0.0


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation (multi-class form, which equals the binary phi coefficient); 0.0 if undefined."""
    predictions, labels = _pair(predictions, labels)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    k = len(classes)
    true_ids, pred_ids = encoded[: len(labels)], encoded[len(labels) :]
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (true_ids, pred_ids), 1.0)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    numerator = correct * n - true_counts @ pred_counts
    denominator = np.sqrt(n * n - pred_counts @ pred_counts) * np.sqrt(n * n - true_counts @ true_counts)
    return float(numerator / denominator) if denominator > 0 else 0.0


def pearson(x, y) -> float:
    x, y = _pair(x, y, dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # constant: undefined; exact test (the mean may round)
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    denominator = np.sqrt((xc @ xc) * (yc @ yc))
    return float(np.clip((xc @ yc) / denominator, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n with ties sharing the mean of their ranks (scipy's rankdata 'average')."""
    x = np.asarray(x)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start of each run of equal values, and for each run the mean of the 1-based positions it spans.
    starts = np.flatnonzero(np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]]))
    ends = np.concatenate([starts[1:], [len(x)]])
    run_ranks = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def spearman(x, y) -> float:
    x, y = _pair(x, y, dtype=np.float64)
    return pearson(average_ranks(x), average_ranks(y))


METRIC_FUNCTIONS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}
METRIC_TITLES = {"accuracy": "acc", "f1": "F1", "mcc": "MCC", "pearson": "Pearson", "spearman": "Spearman"}


def predictions_from_logits(task: GlueTask, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification, the single output for regression."""
    logits = np.asarray(logits)
    if task.is_regression:
        return logits.reshape(len(logits), -1)[:, 0].astype(np.float64)
    return logits.argmax(axis=-1).astype(np.int64)


def compute_metrics(task: GlueTask, predictions, labels) -> dict[str, float]:
    return {name: METRIC_FUNCTIONS[name](predictions, labels) for name in task.metrics}


def task_score(task: GlueTask, dev_metrics: dict[str, dict[str, float]]) -> float:
    """The task's GLUE score: the mean of its score parts, e.g. MRPC (acc + F1) / 2."""
    return float(np.mean([dev_metrics[split][metric] for split, metric in task.score_parts]))


def selection_score(task: GlueTask, split_metrics: dict[str, float]) -> float:
    """What picks the best checkpoint: the task score's parts on the selection split (MNLI: matched)."""
    return float(np.mean([split_metrics[m] for s, m in task.score_parts if s == task.selection_split]))


def glue_average(task_scores: dict[str, float]) -> float:
    return float(np.mean(list(task_scores.values())))


def _pair(a, b, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=dtype).reshape(-1), np.asarray(b, dtype=dtype).reshape(-1)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} predictions for {len(b)} labels")
    if len(a) == 0:
        raise ValueError("no examples to score")
    return a, b
