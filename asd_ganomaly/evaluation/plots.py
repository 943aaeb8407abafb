"""Plots people would rather look at than read: ROC curves, score histograms, input vs reconstruction.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas), so nothing touches pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.functional.classification import binary_roc

from .metrics import auc_pauc, score_ranks

DomainScores = dict[str, tuple[list[float], list[int]]]
"""Per domain: the scores and the 0/1 labels of its test clips."""


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over all thresholds (torchmetrics' ``binary_roc`` on the score ranks, so
    any score range works), from (0, 0) to (1, 1)."""
    ranks = score_ranks(torch.as_tensor(scores, dtype=torch.float64))
    fpr, tpr, _ = binary_roc(ranks, torch.as_tensor(labels).long(), thresholds=None)
    return fpr.numpy(), tpr.numpy()


def _save(figure: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    return out


def _arrays(by_domain: DomainScores) -> dict[str, dict[str, np.ndarray]]:
    return {
        d: {"score": np.asarray(s, dtype=float), "label": np.asarray(y, dtype=int)} for d, (s, y) in by_domain.items()
    }


def plot_roc(by_domain: DomainScores, out: str | Path) -> Path:
    """ROC curve per domain (scores and labels per domain) with AUC and pAUC in the legend; the pAUC range
    (FPR <= 0.1) is shaded."""
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    for domain, data in _arrays(by_domain).items():
        fpr, tpr = roc_curve(data["score"], data["label"])
        auc, pauc = auc_pauc(data["score"], data["label"])
        axes.plot(fpr, tpr, label=f"{domain}: AUC {auc:.3f}, pAUC {pauc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axes.axvspan(0, 0.1, color="grey", alpha=0.1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, out)


def plot_score_histogram(by_domain: DomainScores, out: str | Path) -> Path:
    """Histograms of normal and anomaly scores, one panel per domain (scores and labels per domain)."""
    data = _arrays(by_domain)
    figure = Figure(figsize=(4.5 * len(data), 3.5))
    for i, (domain, values) in enumerate(data.items()):
        axes = figure.add_subplot(1, len(data), i + 1)
        bins = np.histogram_bin_edges(values["score"], bins=20)
        for label, name in ((0, "normal"), (1, "anomaly")):
            axes.hist(values["score"][values["label"] == label], bins=bins, alpha=0.6, label=name)
        axes.set(xlabel="anomaly score", ylabel="clips", title=domain)
        axes.legend(fontsize=8)
    return _save(figure, out)


def plot_spectrograms(inputs: np.ndarray, reconstructions: np.ndarray, titles: list[str], out: str | Path) -> Path:
    """One row per clip: the (normalised) log-mel input and its reconstruction, arrays (N, n_mels, frames)."""
    figure = Figure(figsize=(10, 2.6 * len(inputs)))
    for row, (x, x_rec, title) in enumerate(zip(inputs, reconstructions, titles, strict=True)):
        low, high = float(np.min(x)), float(np.max(x))
        for col, (image, kind) in enumerate(((x, "input"), (x_rec, "reconstruction"))):
            axes = figure.add_subplot(len(inputs), 2, 2 * row + col + 1)
            axes.imshow(image, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            axes.set(title=f"{kind}: {title}", xlabel="frame", ylabel="mel band")
            axes.title.set_fontsize(8)
    return _save(figure, out)
