"""The install's load check: torch, torchaudio and torchvision import side by side and make one log-mel.

``python -m asd_ganomaly.stack`` runs at the end of ``make install``. A binary stack that does not load (a
torchaudio or torchvision built for another torch) fails there with one line naming the three versions, instead
of failing the first training run with a linker error.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata

STACK = ("torch", "torchaudio", "torchvision")


class StackError(RuntimeError):
    """The installed torch, torchaudio and torchvision do not load together."""


def installed_versions(names: tuple[str, ...] = STACK) -> dict[str, str]:
    """The installed distribution version of each name ("missing" when it is not installed), without importing."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def describe(versions: dict[str, str]) -> str:
    """``torch 2.11.0, torchaudio 2.11.0, torchvision 0.26.0``."""
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def check_stack() -> dict[str, str]:
    """Import the three libraries and compute one log-mel with the package's feature code; return the versions.

    Raises :class:`StackError` with one line naming the versions and the first library that failed to load.
    """
    versions = installed_versions()
    for name in STACK:
        try:
            importlib.import_module(name)
        except (ImportError, OSError, RuntimeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise StackError(
                f"{name} does not load beside {describe(versions)}: {reason}. "
                "Install the matched triple of requirements.lock (make install)."
            ) from error
    import torch

    from .data.features import FeatureConfig, LogMel

    config = FeatureConfig(seconds=1.0, frames=None)
    logmel = LogMel(config)(torch.zeros(1, config.samples))
    if logmel.shape != (1, config.n_mels, config.n_frames) or not torch.isfinite(logmel).all():
        raise StackError(f"one log-mel of silence came out {tuple(logmel.shape)} or not finite ({describe(versions)})")
    return versions


def main() -> int:
    """Print the three versions, or one line saying why the stack does not load (exit status 1)."""
    try:
        versions = check_stack()
    except StackError as error:
        print(f"install check failed: {error}", file=sys.stderr)
        return 1
    print(f"install check: {describe(versions)} load together and make a log-mel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
