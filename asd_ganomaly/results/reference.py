"""Published numbers to set our results beside.

* Tables 1 and 2 of Hassankhani, Dini, Drossos (DCASE 2021 Task 2 technical report): dev-set AUC per machine
  type, section and domain of the AE baseline, the MobileNetV2 baseline and the report's GANomaly.
  The report writes "SlideRail" for ``slider``.
* The AE baseline's per-machine harmonic means (AUC, pAUC) from the DCASE 2021 Task 2 submission template, which
  are almost certainly the organisers' AE-baseline dev values.

The report (``asd-ganomaly report``) sets each run's AUC beside Tables 1/2 and each machine type's harmonic means
beside the AE baseline's.
"""

from __future__ import annotations

# machine -> domain -> (AE, MobileNet, report's GANomaly) for sections 0, 1, 2, in percent
_TABLES: dict[str, dict[str, tuple[tuple[float, float, float], ...]]] = {
    "fan": {
        "source": ((66.7, 43.6, 57.5), (67.4, 78.3, 54.7), (64.2, 74.2, 72.9)),
        "target": ((69.7, 53.3, 68.0), (50.0, 78.1, 57.8), (66.2, 60.3, 69.2)),
    },
    "gearbox": {
        "source": ((56.0, 81.4, 68.8), (72.8, 60.7, 70.4), (59.0, 71.6, 72.8)),
        "target": ((74.3, 75.0, 71.0), (72.1, 56.3, 68.3), (66.4, 64.5, 68.5)),
    },
    "pump": {
        "source": ((67.5, 64.9, 67.6), (82.4, 86.3, 61.5), (63.9, 53.7, 62.1)),
        "target": ((58.1, 59.1, 60.6), (47.4, 71.9, 55.5), (62.8, 50.2, 57.6)),
    },
    "slider": {
        "source": ((74.1, 61.5, 74.4), (82.2, 80.0, 71.1), (78.3, 79.9, 78.3)),
        "target": ((67.2, 52.0, 68.8), (66.9, 46.8, 62.4), (46.2, 55.6, 63.5)),
    },
    "ToyCar": {
        "source": ((67.6, 66.6, 66.9), (62.0, 71.6, 62.6), (74.4, 40.4, 64.7)),
        "target": ((54.5, 61.3, 57.9), (64.2, 72.5, 66.3), (56.6, 45.2, 60.3)),
    },
    "ToyTrain": {
        "source": ((72.7, 69.8, 44.6), (72.7, 64.8, 66.5), (69.9, 69.3, 56.5)),
        "target": ((56.1, 46.3, 47.5), (51.3, 53.4, 56.0), (55.6, 51.4, 58.6)),
    },
    "valve": {
        "source": ((50.3, 58.3, 53.9), (53.5, 53.6, 55.7), (59.9, 56.1, 62.1)),
        "target": ((47.1, 52.2, 56.6), (56.4, 68.6, 59.4), (55.2, 53.6, 54.9)),
    },
}
SYSTEMS = ("ae", "mobilenet", "ganomaly_report")

# machine -> (hmean AUC, hmean pAUC) of the AE baseline on the dev set, in percent
AE_BASELINE_HMEAN: dict[str, tuple[float, float]] = {
    "ToyCar": (62.49, 52.36),
    "ToyTrain": (61.71, 53.81),
    "fan": (63.24, 53.38),
    "gearbox": (65.97, 52.76),
    "pump": (61.92, 54.41),
    "slider": (66.74, 55.94),
    "valve": (53.41, 50.54),
}


def report_auc(machine_type: str, section: int, domain: str) -> dict[str, float | None]:
    """The report's AUCs (fractions) of AE, MobileNet and GANomaly; None where the report has no number."""
    sections = _TABLES.get(machine_type, {}).get(domain)
    if sections is None or not 0 <= section < len(sections):
        return dict.fromkeys(SYSTEMS)
    return {name: value / 100 for name, value in zip(SYSTEMS, sections[section], strict=True)}


def ae_baseline_hmean(machine_type: str) -> tuple[float, float] | None:
    """The AE baseline's (hmean AUC, hmean pAUC) of a machine type as fractions, or None."""
    values = AE_BASELINE_HMEAN.get(machine_type)
    return None if values is None else (values[0] / 100, values[1] / 100)
