"""asd-ganomaly: GANomaly for unsupervised anomalous machine-sound detection (DCASE 2021 Task 2)."""

__version__ = "0.1.0"
