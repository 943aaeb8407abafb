"""GANomaly for log-mel spectrograms as pure PyTorch modules (no Lightning).

Encoder E1 maps X to a latent feature map Z (or, with ``latent_vector``, a vector), the decoder reconstructs X~
from Z, encoder E2 (same architecture as E1) maps X~ to Z', and a discriminator tells X from X~. The anomaly score of
a clip is the mean squared distance between Z and Z'.

GANomaly: Akcay, Atapour-Abarghouei, Breckon, arXiv 1805.06725. For sound: Hassankhani, Dini, Drossos,
DCASE 2021 Task 2 technical report. Sizes come from the config (see ``conf/model/``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _per_layer(flags: bool | Sequence[bool], n: int) -> list[bool]:
    flags = [flags] * n if isinstance(flags, bool) else list(flags)
    if len(flags) != n:
        raise ValueError(f"expected {n} per-layer flags, got {len(flags)}")
    return flags


def _check_layers(channels: Sequence[int], strides: Sequence[int]) -> None:
    if not channels or len(channels) != len(strides):
        raise ValueError(f"channels {list(channels)} and strides {list(strides)} must be non-empty, same length")
    if any(s not in (1, 2) for s in strides):
        raise ValueError(f"strides must be 1 or 2, not {list(strides)}")


class Encoder(nn.Module):
    """Conv2d blocks (kernel k, padding k//2): Conv -> LeakyReLU -> BatchNorm, as in the report and code."""

    def __init__(
        self,
        channels: Sequence[int],
        strides: Sequence[int],
        batch_norm: bool | Sequence[bool] = True,
        in_channels: int = 1,
        kernel_size: int = 5,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        _check_layers(channels, strides)
        layers: list[nn.Module] = []
        for out, stride, bn in zip(channels, strides, _per_layer(batch_norm, len(channels)), strict=True):
            layers.append(nn.Conv2d(in_channels, out, kernel_size, stride, kernel_size // 2, bias=False))
            layers.append(nn.LeakyReLU(negative_slope, inplace=True))
            if bn:
                layers.append(nn.BatchNorm2d(out))
            in_channels = out
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_channels
        self.total_stride = math.prod(strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, H, W) -> (batch, channels[-1], H/stride, W/stride)."""
        return self.layers(x)


class Decoder(nn.Module):
    """ConvTranspose2d blocks that undo the encoder's striding: ConvT -> BatchNorm -> ReLU, last one
    followed by ``output_activation`` only (``tanh`` in the report, ``relu`` in the authors' code)."""

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        batch_norm: bool | Sequence[bool] = True,
        kernel_size: int = 5,
        output_activation: str = "tanh",
    ) -> None:
        super().__init__()
        _check_layers(channels, strides)
        activations = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "none": nn.Identity}
        if output_activation not in activations:
            raise ValueError(f"output_activation must be one of {sorted(activations)}")
        flags = _per_layer(batch_norm, len(channels))
        layers: list[nn.Module] = []
        for i, (out, stride) in enumerate(zip(channels, strides, strict=True)):
            pad = kernel_size // 2
            layers.append(
                nn.ConvTranspose2d(in_channels, out, kernel_size, stride, pad, output_padding=stride - 1, bias=False)
            )
            if flags[i]:
                layers.append(nn.BatchNorm2d(out))
            last = i == len(channels) - 1
            layers.append(activations[output_activation]() if last else nn.ReLU(inplace=True))
            in_channels = out
        self.layers = nn.Sequential(*layers)
        self.total_stride = math.prod(strides)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, C, h, w) -> (batch, channels[-1], h*stride, w*stride)."""
        return self.layers(z)


class Discriminator(nn.Module):
    """Conv blocks as in the encoder, then a linear layer to one logit. Returns (logit, features)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        strides: Sequence[int],
        batch_norm: bool | Sequence[bool] = True,
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.features = Encoder(channels, strides, batch_norm, kernel_size=kernel_size)
        height, width = (math.ceil(size / self.features.total_stride) for size in input_shape)
        self.features_shape = (self.features.out_channels, height, width)
        self.classifier = nn.Linear(math.prod(self.features_shape), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, 1, H, W) -> (logit (batch,), feature map)."""
        features = self.features(x)
        return self.classifier(features.flatten(1)).squeeze(1), features


class ToVector(nn.Module):
    """A linear layer from a (C, h, w) feature map to a latent vector of ``size``, kept as (batch, size, 1, 1)."""

    def __init__(self, map_shape: Sequence[int], size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(map_shape), size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, C, h, w) -> (batch, size, 1, 1)."""
        return self.linear(features.flatten(1))[:, :, None, None]


class FromVector(nn.Module):
    """A latent vector (batch, size, 1, 1) back to a (C, h, w) map: linear -> BatchNorm -> ReLU, as the original
    GANomaly's first transposed convolution."""

    def __init__(self, size: int, map_shape: Sequence[int]) -> None:
        super().__init__()
        self.map_shape = tuple(map_shape)
        self.linear = nn.Linear(size, math.prod(map_shape), bias=False)
        self.norm = nn.BatchNorm2d(map_shape[0])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(batch, size, 1, 1) -> (batch, C, h, w)."""
        return torch.relu(self.norm(self.linear(z.flatten(1)).view(-1, *self.map_shape)))


class Generator(nn.Module):
    """E1 -> decoder -> E2. Inputs are zero-padded so both sides divide by the total stride. With
    ``latent_vector`` (a size), E1 and E2 end in a linear layer to a vector and the decoder starts from one (the
    original GANomaly's bottleneck; it needs ``input_shape``, unpadded); without, Z is E1's feature map."""

    def __init__(
        self,
        encoder: dict,
        decoder: dict,
        kernel_size: int = 5,
        latent_vector: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder1 = Encoder(**encoder, kernel_size=kernel_size)
        self.decoder = Decoder(self.encoder1.out_channels, **decoder, kernel_size=kernel_size)
        self.encoder2 = Encoder(**encoder, kernel_size=kernel_size)
        self.total_stride = self.encoder1.total_stride
        if self.decoder.total_stride != self.total_stride:
            raise ValueError(
                f"decoder upsamples by {self.decoder.total_stride} but the encoder downsamples by "
                f"{self.total_stride}: the reconstruction would not match the input"
            )
        if decoder["channels"][-1] != encoder.get("in_channels", 1):
            raise ValueError("the decoder's last channel count must equal the encoder's input channels")
        if latent_vector is not None:
            if input_shape is None or latent_vector < 1:
                raise ValueError(f"latent_vector must be >= 1 and needs the input shape, not {latent_vector}")
            map_shape = (self.encoder1.out_channels, *(math.ceil(size / self.total_stride) for size in input_shape))
            self.encoder1 = nn.Sequential(self.encoder1, ToVector(map_shape, latent_vector))
            self.encoder2 = nn.Sequential(self.encoder2, ToVector(map_shape, latent_vector))
            self.decoder = nn.Sequential(FromVector(latent_vector, map_shape), self.decoder)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad height and width up to multiples of the total stride."""
        stride = self.total_stride
        pad_h, pad_w = (-x.shape[-2]) % stride, (-x.shape[-1]) % stride
        # traced for ONNX, the shape is a tensor: pad unconditionally (by zero, for a multiple) rather than branch on it
        if torch.jit.is_tracing() or pad_h or pad_w:
            return F.pad(x, (0, pad_w, 0, pad_h))
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (padded X, X~, Z, Z')."""
        x = self.pad(x)
        z = self.encoder1(x)
        x_rec = self.decoder(z)
        z_prime = self.encoder2(x_rec)
        return x, x_rec, z, z_prime


class GANomaly(nn.Module):
    """Generator and discriminator; ``scores`` gives per-clip anomaly scores for (batch, n_mels, frames)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        encoder: dict,
        decoder: dict,
        discriminator: dict,
        kernel_size: int = 5,
        latent_vector: int | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.generator = Generator(dict(encoder), dict(decoder), kernel_size, latent_vector, self.input_shape)
        stride = self.generator.total_stride
        padded = [math.ceil(size / stride) * stride for size in self.input_shape]
        self.discriminator = Discriminator(padded, kernel_size=kernel_size, **discriminator)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, n_mels, frames) -> (padded X, X~, Z, Z') with a channel axis added."""
        return self.generator(x.unsqueeze(1))

    def profiles(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores over time of (batch, n_mels, frames): ``latent`` (batch, latent columns), the mean over channels
        and rows of (Z - Z')^2; ``reconstruction`` (batch, frames), the mean over bands of |X - X~|; ``discriminator``
        (batch,), 1 - sigmoid(D(X)), the discriminator's belief that X is not real; ``residual`` X - X~ itself
        (batch, n_mels, frames). The reconstruction leaves the zero padding up to the stride out (its error says
        nothing about the clip); every latent column sees part of the clip (the padding is shorter than the
        stride), so ``latent`` keeps them all."""
        height, width = x.shape[-2:]
        x_pad, x_rec, z, z_prime = self(x)
        logit, _ = self.discriminator(x_pad)
        residual = (x_pad - x_rec)[:, 0, :height, :width]
        return {
            "latent": (z - z_prime).pow(2).mean((1, 2)),
            "reconstruction": residual.abs().mean(1),
            "discriminator": 1.0 - torch.sigmoid(logit),
            "residual": residual,
        }

    def scores(self, x: torch.Tensor, with_residual: bool = False) -> dict[str, torch.Tensor]:
        """Per-clip scores, the means of :meth:`profiles` over time: ``score`` = mean((Z - Z')^2), ``score_rec`` =
        mean|X - X~|, ``score_disc``; with ``with_residual`` also ``residual`` (batch, n_mels, frames)."""
        profiles = self.profiles(x)
        scores = {
            "score": profiles["latent"].mean(1),
            "score_rec": profiles["reconstruction"].mean(1),
            "score_disc": profiles["discriminator"],
        }
        return scores | {"residual": profiles["residual"]} if with_residual else scores


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0 (linear layers keep
    PyTorch's default)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
