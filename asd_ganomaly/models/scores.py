"""The score vocabulary: each score choice (``model.score``) and its key in score dicts and scores.csv."""

SCORE_KEYS = {
    "latent": "score_latent",
    "reconstruction": "score_rec",
    "discriminator": "score_disc",
    "residual_knn": "score_residual_knn",
    "band_error": "score_band_error",
    "knn": "score_knn",
    "fused": "score_fused",
    "default": "score",
}
"""Score choices (``model.score``) and the stable key of each in score dicts and scores.csv."""

SCORE_COLUMNS = tuple(key for key in SCORE_KEYS.values() if key != "score")
"""The per-score columns of scores.csv, beside ``score`` (the chosen one)."""
