"""95 % bootstrap intervals of AUC, pAUC and the official score, by ``scipy.stats.bootstrap``.

The resampling is stratified: normal and anomalous clips are resampled separately (scipy's multi-sample
bootstrap, ``paired=False``), so every resample holds both labels in the test set's proportions and an AUC is
always defined; a resample with one label cannot occur. Intervals are percentile intervals (BCa is undefined
when every resample gives the same AUC, as a perfectly separable test set does) from a fixed random state, so
the same scores always give the same interval. ``domain_ranking_metrics`` puts them together for one score: AUC
and pAUC per domain with their intervals, harmonic means and the official score (the detectors' test results).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from ..data.dcase import DOMAINS
from .metrics import MAX_FPR, auc_pauc, harmonic_mean, official_score, roc_auc

N_RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


def _two_sample(normal: np.ndarray, anomaly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([normal, anomaly])
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomaly))]
    return scores, labels


def _auc_pauc(normal: np.ndarray, anomaly: np.ndarray) -> np.ndarray:
    scores, labels = _two_sample(normal, anomaly)
    return np.array([roc_auc(scores, labels), roc_auc(scores, labels, MAX_FPR)])


def _split(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("a bootstrap interval of AUC needs both normal (0) and anomaly (1) labels")
    return scores[~labels], scores[labels]


def _bootstrap(samples: tuple[np.ndarray, ...], statistic, n_resamples: int, seed: int) -> np.ndarray:
    result = stats.bootstrap(
        samples,
        statistic,
        paired=False,
        vectorized=False,
        n_resamples=n_resamples,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return np.stack([result.confidence_interval.low, result.confidence_interval.high], axis=-1)


def auc_pauc_intervals(
    scores: Sequence[float], labels: Sequence[int], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> dict[str, float]:
    """95 % intervals of AUC and pAUC: ``auc_low, auc_high, pauc_low, pauc_high`` (labels: 1 = anomaly)."""
    low_high = _bootstrap(_split(scores, labels), _auc_pauc, n_resamples, seed)
    return {
        "auc_low": float(low_high[0, 0]),
        "auc_high": float(low_high[0, 1]),
        "pauc_low": float(low_high[1, 0]),
        "pauc_high": float(low_high[1, 1]),
    }


def official_score_interval(
    groups: Sequence[tuple[Sequence[float], Sequence[int]]], n_resamples: int = N_RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """95 % interval of the official score (harmonic mean of every group's AUC and pAUC) over
    (scores, labels) groups, one per run and domain; each group's normals and anomalies are resampled apart."""
    samples = tuple(part for group in groups for part in _split(*group))

    def statistic(*parts: np.ndarray) -> float:
        values = [v for i in range(0, len(parts), 2) for v in _auc_pauc(parts[i], parts[i + 1])]
        return harmonic_mean(values)

    low, high = _bootstrap(samples, statistic, n_resamples, seed)
    return float(low), float(high)


def domain_ranking_metrics(values: torch.Tensor, scores: dict[str, torch.Tensor], intervals: bool) -> dict:
    """{domain: {auc, pauc[, auc_low, auc_high, pauc_low, pauc_high]}, hmean: {auc, pauc}, dcase_score} of one
    score."""
    results: dict = {}
    for code, domain in enumerate(DOMAINS):
        mask = scores["domain"] == code
        if not mask.any():
            continue
        auc, pauc = auc_pauc(values[mask], scores["label"][mask])
        results[domain] = {"auc": auc, "pauc": pauc}
        if intervals:
            results[domain] |= auc_pauc_intervals(values[mask].numpy(), scores["label"][mask].numpy())
    domains = [d for d in DOMAINS if d in results]
    results["hmean"] = {m: harmonic_mean(results[d][m] for d in domains) for m in ("auc", "pauc")}
    results["dcase_score"] = official_score([results[d]["auc"] for d in domains], [results[d]["pauc"] for d in domains])
    return results
