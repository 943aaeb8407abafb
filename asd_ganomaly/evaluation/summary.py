"""A detector's results from its gathered test scores: per domain (or per section and domain) the chosen score's
AUC, pAUC with intervals and decision metrics, and under ``scores`` the ranking figures of every score choice."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..data.dcase import DOMAINS, UNLABELLED
from .bootstrap import domain_ranking_metrics
from .metrics import decision_metrics, section_results

NO_LABELS = "the test clips carry no labels: every clip is scored and decided (scores.csv), no AUC or pAUC"


def is_unlabelled(scores: dict[str, torch.Tensor]) -> bool:
    """True when no test clip carries a label (an evaluation set's test split)."""
    return bool((scores["label"] == UNLABELLED).all())


def unlabelled_results(scores: dict[str, torch.Tensor], threshold: torch.Tensor) -> dict:
    """The results of a test split without labels: ``labelled`` False, a note, and per domain how many clips were
    scored and how many of them the threshold decides anomalous."""
    decisions = {}
    for code, domain in enumerate(DOMAINS):
        mask = scores["domain"] == code
        if mask.any():
            anomalous = int((scores["score"][mask] > threshold).sum()) if torch.isfinite(threshold) else 0
            decisions[domain] = {"clips": int(mask.sum()), "decided_anomalous": anomalous}
    return {"labelled": False, "note": NO_LABELS, "decisions": decisions}


def domain_results(
    scores: dict[str, torch.Tensor], threshold: torch.Tensor, score_keys: Mapping[str, str], intervals: bool = False
) -> dict:
    """Per domain AUC, pAUC (with 95 % bootstrap intervals when ``intervals``) and, when ``threshold`` is finite,
    precision, recall and F1 of the chosen score (``scores["score"]``); their harmonic means; and under ``scores``
    the AUC/pAUC figures of every choice in ``score_keys`` (choice name -> key in ``scores``). Without labels:
    :func:`unlabelled_results`."""
    if is_unlabelled(scores):
        return unlabelled_results(scores, threshold)
    results = domain_ranking_metrics(scores["score"], scores, intervals)
    if torch.isfinite(threshold):
        decisions = scores["score"] > threshold
        for code, domain in enumerate(DOMAINS):
            if domain in results:
                mask = scores["domain"] == code
                results[domain] |= decision_metrics(decisions[mask], scores["label"][mask])
    results["scores"] = {
        name: domain_ranking_metrics(scores[key], scores, intervals) for name, key in score_keys.items()
    }
    return results


def run_results(
    scores: dict[str, torch.Tensor], threshold: torch.Tensor, score_keys: Mapping[str, str], per_section: bool
) -> dict:
    """A run's test results with intervals: :func:`domain_results`, per section (``sections["NN"]``, with the
    harmonic means and official score over all section-domain pairs) when ``per_section`` and the scores carry
    their clips' sections; without labels :func:`unlabelled_results`."""
    if is_unlabelled(scores):
        return unlabelled_results(scores, threshold)

    def by_domain(chosen: dict[str, torch.Tensor]) -> dict:
        return domain_results(chosen, threshold, score_keys, intervals=True)

    if per_section and "section" in scores:
        return section_results(scores, by_domain)
    return by_domain(scores)
