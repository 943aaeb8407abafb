"""Plots people would rather look at than read: ROC curves, score histograms, input vs reconstruction.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas), so nothing touches pyplot's global state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchmetrics.functional.classification import binary_roc

from ..core.files import atomic_output
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
    """Write the figure as a PNG through a temporary file and a rename (never half a picture under ``out``)."""
    out = Path(out)
    figure.tight_layout()
    with atomic_output(out) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    return out


def _arrays(by_domain: DomainScores) -> dict[str, dict[str, np.ndarray]]:
    return {
        d: {"score": np.asarray(s, dtype=float), "label": np.asarray(y, dtype=int)} for d, (s, y) in by_domain.items()
    }


def roc_figure(by_domain: DomainScores, title: str = "") -> Figure:
    """ROC curve per domain (scores and labels per domain) with AUC and pAUC in the legend; the pAUC range
    (FPR <= 0.1) shaded and labelled; ``title`` names the run (machine, section, setting, score)."""
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    for domain, data in _arrays(by_domain).items():
        fpr, tpr = roc_curve(data["score"], data["label"])
        auc, pauc = auc_pauc(data["score"], data["label"])
        axes.plot(fpr, tpr, label=f"{domain}: AUC {auc:.3f}, pAUC {pauc:.3f}")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.axvspan(0, 0.1, color="grey", alpha=0.1, label="pAUC range (FPR <= 0.1)")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=_titled("ROC", title))
    axes.title.set_fontsize(9)
    axes.legend(loc="lower right", fontsize=8)
    return figure


def score_histogram_figure(
    by_domain: DomainScores, threshold: float | None = None, title: str = "", score: str = "anomaly score"
) -> Figure:
    """Histograms (outlines, so nothing overlaps unlabelled) of normal and anomaly scores, one panel per domain,
    with the decision ``threshold`` as a vertical line when it is finite; integer clip counts on the y axis."""
    data = _arrays(by_domain)
    figure = Figure(figsize=(4.8 * len(data), 3.8))
    for i, (domain, values) in enumerate(data.items()):
        axes = figure.add_subplot(1, len(data), i + 1)
        edges = np.histogram_bin_edges(values["score"], bins=20)
        for label, name in ((0, "normal"), (1, "anomaly")):
            axes.hist(values["score"][values["label"] == label], bins=edges, histtype="step", linewidth=1.5, label=name)
        if threshold is not None and np.isfinite(threshold):
            axes.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set(xlabel=score, ylabel="clips", title=_titled(domain, title))
        axes.title.set_fontsize(9)
        axes.legend(fontsize=8)
    return figure


def spectrogram_figure(inputs: np.ndarray, reconstructions: np.ndarray, titles: list[str]) -> Figure:
    """One row per clip: the normalised log-mel input, its reconstruction (same colour scale) and the residual
    input - reconstruction (a diverging scale centred on 0), each with a colour bar; arrays (N, n_mels, frames)."""
    figure = Figure(figsize=(15, 2.8 * len(inputs)))
    for row, (x, x_rec, title) in enumerate(zip(inputs, reconstructions, titles, strict=True)):
        low, high = float(np.min(x)), float(np.max(x))
        residual = x - x_rec
        reach = float(np.max(np.abs(residual))) or 1.0
        panels = (
            (x, "input", "magma", low, high),
            (x_rec, "reconstruction", "magma", low, high),
            (residual, "residual (input - reconstruction)", "coolwarm", -reach, reach),
        )
        for col, (image, kind, cmap, vmin, vmax) in enumerate(panels):
            axes = figure.add_subplot(len(inputs), 3, 3 * row + col + 1)
            shown = axes.imshow(image, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap=cmap)
            figure.colorbar(shown, ax=axes, label="normalised log-mel")
            axes.set(title=f"{kind}: {title}", xlabel="frame", ylabel="mel band")
            axes.title.set_fontsize(8)
    return figure


def plot_roc(by_domain: DomainScores, out: str | Path, title: str = "") -> Path:
    """Save :func:`roc_figure` as a PNG."""
    return _save(roc_figure(by_domain, title), out)


def plot_score_histogram(
    by_domain: DomainScores, out: str | Path, threshold: float | None = None, title: str = "", score: str = "score"
) -> Path:
    """Save :func:`score_histogram_figure` as a PNG."""
    return _save(score_histogram_figure(by_domain, threshold, title, score), out)


def plot_spectrograms(inputs: np.ndarray, reconstructions: np.ndarray, titles: list[str], out: str | Path) -> Path:
    """Save :func:`spectrogram_figure` as a PNG."""
    return _save(spectrogram_figure(inputs, reconstructions, titles), out)


def _titled(what: str, title: str) -> str:
    return f"{what}: {title}" if title else what
