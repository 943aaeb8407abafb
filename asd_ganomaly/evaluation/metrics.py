"""DCASE 2021 Task 2 metrics: AUC, standardised pAUC, harmonic means and the official score.

pAUC is the McClish-standardised partial AUC up to FPR 0.1, the value that scikit-learn's
``roc_auc_score(y, s, max_fpr=0.1)`` returns and that the official evaluator uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy import stats
from torchmetrics.functional.classification import binary_f1_score, binary_precision, binary_recall

from ..data.dcase import DOMAINS

MAX_FPR = 0.1
EPS = 1e-8


def auc_pauc(scores: torch.Tensor, labels: torch.Tensor, max_fpr: float = MAX_FPR) -> tuple[float, float]:
    """Return (AUC, standardised pAUC) of anomaly scores against 0/1 labels (1 = anomaly)."""
    scores = torch.as_tensor(scores, dtype=torch.float64).detach().flatten().cpu().numpy()
    labels = torch.as_tensor(labels).long().detach().flatten().cpu().numpy()
    if np.unique(labels).size != 2:
        raise ValueError("AUC needs both normal (0) and anomaly (1) labels")
    return roc_auc(scores, labels), roc_auc(scores, labels, max_fpr)


def roc_auc(scores: np.ndarray, labels: np.ndarray, max_fpr: float | None = None) -> float:
    """AUC, or the McClish-standardised partial AUC up to ``max_fpr``, as scikit-learn's ``roc_auc_score``
    computes them (ties handled as one ROC step), in plain numpy: fast enough to call a thousand times."""
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = last_of_tie + 1 - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    if max_fpr is None:
        return float(np.trapezoid(tpr, fpr))
    stop = int(np.searchsorted(fpr, max_fpr, side="right"))
    tpr_end = np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])
    partial = float(np.trapezoid(np.r_[tpr[:stop], tpr_end], np.r_[fpr[:stop], max_fpr]))
    low, high = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1 + (partial - low) / (high - low))


def score_ranks(scores: torch.Tensor) -> torch.Tensor:
    """Scores mapped into [0, 1] by rank, ties kept: torchmetrics would pass values outside [0, 1] through a
    sigmoid, which saturates for large scores and would turn distinct scores into ties."""
    _, inverse = torch.unique(torch.as_tensor(scores), return_inverse=True)
    return inverse.double() / max(int(inverse.max()), 1)


def harmonic_mean(values: Iterable[float], eps: float = EPS) -> float:
    """``scipy.stats.hmean`` with each value floored at ``eps``, as the official evaluator does."""
    floored = np.maximum(np.asarray(list(values), dtype=np.float64), eps)
    if floored.size == 0:
        raise ValueError("harmonic mean of no values")
    return float(stats.hmean(floored))


def official_score(aucs: Iterable[float], paucs: Iterable[float]) -> float:
    """DCASE 2021 Task 2 official score: the harmonic mean of all AUC and pAUC values pooled together."""
    return harmonic_mean([*aucs, *paucs])


def decision_metrics(decisions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 (torchmetrics) of 0/1 decisions against 0/1 labels (1 = anomaly); 0 where a
    ratio has no denominator."""
    decisions = torch.as_tensor(decisions).long().flatten()
    labels = torch.as_tensor(labels).long().flatten()
    return {
        "precision": binary_precision(decisions, labels, zero_division=0).item(),
        "recall": binary_recall(decisions, labels, zero_division=0).item(),
        "f1": binary_f1_score(decisions, labels, zero_division=0).item(),
    }


def flatten_metrics(stage: str, results: dict) -> dict[str, float]:
    """Nested results to logger names: ``{"source": {"auc": a}, "dcase_score": s}`` ->
    ``{"<stage>/source/auc": a, "<stage>/dcase_score": s}``. Values that are not numbers are left out."""
    flat: dict[str, float] = {}
    for key, value in results.items():
        name = f"{stage}/{key}"
        if isinstance(value, dict):
            flat |= flatten_metrics(name, value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def section_results(scores: dict[str, torch.Tensor], domain_metrics: Callable[[dict], dict]) -> dict:
    """Results of a per-machine-type run: ``domain_metrics`` of each section's clips under
    ``sections["NN"]``, and over all section-domain pairs the harmonic means and the official score."""
    sections = {}
    for section in sorted(scores["section"].unique().tolist()):
        mask = scores["section"] == section
        sections[f"{section:02d}"] = domain_metrics({key: value[mask] for key, value in scores.items()})
    pairs = [result[d] for result in sections.values() for d in DOMAINS if d in result]
    aucs, paucs = [p["auc"] for p in pairs], [p["pauc"] for p in pairs]
    return {
        "sections": sections,
        "hmean": {"auc": harmonic_mean(aucs), "pauc": harmonic_mean(paucs)},
        "dcase_score": official_score(aucs, paucs),
    }


def gamma_threshold(scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of a gamma distribution fitted to ``scores`` (empirical quantile if the fit fails)."""
    try:
        shape, loc, scale = stats.gamma.fit(scores)
        threshold = float(stats.gamma.ppf(quantile, shape, loc=loc, scale=scale))
        if np.isfinite(threshold):
            return threshold
    except (ValueError, RuntimeError, FloatingPointError):
        pass
    return float(np.quantile(scores, quantile))
