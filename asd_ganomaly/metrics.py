"""DCASE 2021 Task 2 metrics: AUC, standardised pAUC, harmonic means and the official score.

pAUC is the McClish-standardised partial AUC up to FPR 0.1, the value that scikit-learn's
``roc_auc_score(y, s, max_fpr=0.1)`` returns and that the official evaluator uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torchmetrics.functional.classification import binary_auroc

MAX_FPR = 0.1
EPS = 1e-8


def auc_pauc(scores: torch.Tensor, labels: torch.Tensor, max_fpr: float = MAX_FPR) -> tuple[float, float]:
    """Return (AUC, standardised pAUC) of anomaly scores against 0/1 labels (1 = anomaly)."""
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    labels = torch.as_tensor(labels).long().flatten()
    if labels.unique().numel() != 2:
        raise ValueError("AUC needs both normal (0) and anomaly (1) labels")
    ranks = _dense_ranks(scores)
    auc = binary_auroc(ranks, labels).item()
    pauc = binary_auroc(ranks, labels, max_fpr=max_fpr).item()
    return auc, pauc


def _dense_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into [0, 1] by rank, ties kept: torchmetrics would pass values outside [0, 1] through a
    sigmoid, which saturates for large scores and would turn distinct scores into ties."""
    _, inverse = torch.unique(scores, return_inverse=True)
    return inverse.double() / max(int(inverse.max()), 1)


def harmonic_mean(values: Iterable[float], eps: float = EPS) -> float:
    """Harmonic mean with each value floored at ``eps``, as ``scipy.stats.hmean`` in the evaluator."""
    floored = [max(float(v), eps) for v in values]
    if not floored:
        raise ValueError("harmonic mean of no values")
    return len(floored) / sum(1.0 / v for v in floored)


def official_score(aucs: Iterable[float], paucs: Iterable[float]) -> float:
    """DCASE 2021 Task 2 official score: the harmonic mean of all AUC and pAUC values pooled together."""
    return harmonic_mean([*aucs, *paucs])


def decision_metrics(decisions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 of 0/1 decisions against 0/1 labels (1 = anomaly)."""
    decisions = torch.as_tensor(decisions).bool().flatten()
    labels = torch.as_tensor(labels).bool().flatten()
    tp = (decisions & labels).sum().item()
    fp = (decisions & ~labels).sum().item()
    fn = (~decisions & labels).sum().item()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
