"""Bootstrap intervals of AUC, pAUC and the official score."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from asd_ganomaly.evaluation.bootstrap import auc_pauc_intervals, official_score_interval, roc_auc
from asd_ganomaly.evaluation.metrics import auc_pauc

LABELS = np.r_[np.zeros(30), np.ones(30)].astype(int)


def test_numpy_auc_and_pauc_equal_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(50):
        labels = rng.permutation(np.r_[np.zeros(rng.integers(2, 30)), np.ones(rng.integers(2, 30))])
        scores = np.round(rng.normal(size=len(labels)) + labels, 1)
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
        assert roc_auc(scores, labels, 0.1) == pytest.approx(roc_auc_score(labels, scores, max_fpr=0.1))
        assert roc_auc(scores, labels, 0.1) == pytest.approx(auc_pauc(scores, labels)[1], abs=1e-6)


def test_separable_scores_give_a_narrow_interval_near_one():
    scores = np.r_[np.random.default_rng(0).normal(size=30), np.random.default_rng(1).normal(size=30) + 8]
    interval = auc_pauc_intervals(scores, LABELS)
    assert interval["auc_low"] > 0.99 and interval["pauc_low"] > 0.99
    assert interval["auc_high"] == pytest.approx(1.0)


def test_random_scores_give_an_interval_that_covers_chance():
    scores = np.random.default_rng(5).normal(size=60)
    interval = auc_pauc_intervals(scores, LABELS)
    assert interval["auc_low"] < 0.5 < interval["auc_high"]
    assert interval["auc_high"] - interval["auc_low"] > 0.15, "60 clips cannot pin an AUC down"
    assert interval["pauc_low"] <= 0.5 <= interval["pauc_high"]


def test_intervals_are_reproducible_and_need_both_labels():
    scores = np.random.default_rng(7).normal(size=60) + LABELS * 0.5
    assert auc_pauc_intervals(scores, LABELS) == auc_pauc_intervals(scores, LABELS)
    assert auc_pauc_intervals(scores, LABELS) != auc_pauc_intervals(scores, LABELS, seed=1)
    with pytest.raises(ValueError, match="both normal"):
        auc_pauc_intervals(scores, np.zeros(60))


def test_official_score_interval_brackets_the_pooled_score():
    rng = np.random.default_rng(11)
    groups = [(rng.normal(size=60) + LABELS * shift, LABELS) for shift in (0.5, 1.0, 2.0)]
    values = [v for scores, labels in groups for v in auc_pauc(scores, labels)]
    point = len(values) / sum(1 / v for v in values)
    low, high = official_score_interval(groups, n_resamples=300)
    assert low < point < high
    assert high - low < 0.3
