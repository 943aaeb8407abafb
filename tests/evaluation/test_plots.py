"""Plots that explain themselves: titles naming the run and score, labelled bands, a threshold, colour bars."""

import numpy as np

from asd_ganomaly.evaluation.plots import plot_roc, roc_figure, score_histogram_figure, spectrogram_figure

BY_DOMAIN = {"source": ([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]), "target": ([0.3, 0.7, 0.4, 0.6], [0, 1, 0, 1])}
TITLE = "fan section 0, ganomaly_small, latent score\nw_rec-10-1a2b3c4d"


def test_the_roc_names_the_run_and_labels_the_pauc_band(tmp_path):
    axes = roc_figure(BY_DOMAIN, TITLE).axes[0]
    assert "fan section 0" in axes.get_title() and "latent score" in axes.get_title()
    labels = axes.get_legend_handles_labels()[1]
    assert "source: AUC 1.000, pAUC 1.000" in labels and "pAUC range (FPR <= 0.1)" in labels
    assert plot_roc(BY_DOMAIN, tmp_path / "roc.png", TITLE).stat().st_size > 1000


def test_the_histogram_draws_the_threshold_names_the_score_and_counts_whole_clips():
    figure = score_histogram_figure(BY_DOMAIN, threshold=0.5, title=TITLE, score="latent score")
    assert len(figure.axes) == 2
    for axes in figure.axes:
        assert axes.get_xlabel() == "latent score" and "fan section 0" in axes.get_title()
        assert "threshold 0.5" in axes.get_legend_handles_labels()[1]
        figure.canvas.draw()
        assert all(float(t).is_integer() for t in axes.get_yticks())
    no_threshold = score_histogram_figure(BY_DOMAIN, threshold=float("inf"))
    assert not any("threshold" in label for label in no_threshold.axes[0].get_legend_handles_labels()[1])


def test_spectrograms_show_input_reconstruction_and_residual_each_with_a_colour_bar():
    x = np.random.default_rng(0).normal(size=(2, 8, 16))
    figure = spectrogram_figure(x, x * 0.5, ["normal clip", "anomaly clip"])
    titles = [a.get_title() for a in figure.axes if a.get_title()]
    assert len(titles) == 6 and sum(t.startswith("residual") for t in titles) == 2
    assert len(figure.axes) == 12, "every panel has its colour bar"
    assert {a.get_ylabel() for a in figure.axes if not a.get_title()} == {"normalised log-mel"}
