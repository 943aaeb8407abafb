"""AUC, pAUC, harmonic means and decisions: ``asd_ganomaly/metrics.py``."""

import numpy as np
import pytest
import torch

from asd_ganomaly.evaluation.metrics import auc_pauc, decision_metrics, harmonic_mean, official_score


def test_pauc_equals_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(10, 300))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = rng.standard_normal(n) + labels * rng.uniform(0, 2)
        if trial % 4 == 0:
            scores = np.round(scores, 1)  # ties
        if trial % 4 == 1:
            scores = scores * 1000 + 5000  # large scores (an MSE in dB^2) must not saturate
        auc, pauc = auc_pauc(torch.from_numpy(scores), torch.from_numpy(labels))
        assert auc == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-6)
        assert pauc == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores, max_fpr=0.1), abs=1e-6)


def test_harmonic_means_and_decisions():
    stats = pytest.importorskip("scipy.stats")
    values = [0.6, 0.7, 0.55, 0.9]
    assert harmonic_mean(values) == pytest.approx(stats.hmean(values))
    assert official_score([0.6, 0.7], [0.5, 0.55]) == pytest.approx(stats.hmean([0.6, 0.7, 0.5, 0.55]))
    assert harmonic_mean([0.0, 0.5]) < 1e-7  # floored at eps, as the evaluator does
    result = decision_metrics(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0]))
    assert result == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
