"""The DCASE AE baseline (``model=ae_baseline``): its output starts at the mean training vector, so that a short run
on raw dB does not rank clips by how quiet they are (docs/diagnosis.md, "The AE baseline scores below chance")."""

import torch
import torch.nn.functional as F

from asd_ganomaly.evaluation.metrics import auc_pauc
from asd_ganomaly.models.ae import context_vectors
from asd_ganomaly.models.base import build_detector
from asd_ganomaly.train import compose_config


def ae_module(*overrides: str):
    return build_detector(compose_config("model=ae_baseline", *overrides).model)


def train_briefly(module, features: torch.Tensor, steps: int = 30) -> None:
    """``steps`` Adam updates of the module's reconstruction loss (its training step without a Trainer)."""
    torch.manual_seed(0)
    module.fit_normalizer(features)
    optimizer = module.configure_optimizers()
    vectors = context_vectors(module.normalizer(features), module.net.context).flatten(0, 1)
    module.train()
    for _ in range(steps):
        batch = vectors[torch.randperm(len(vectors))[:512]]
        loss = F.mse_loss(module.net(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    module.eval()


def test_a_short_run_on_raw_db_scores_added_energy_higher():
    """Raw dB sits tens of dB below zero; from a zero output bias 30 Adam steps leave the reconstruction above every
    input, and a clip with energy added in some bands (as the synthetic anomalies add it) then scored *lower*."""
    torch.manual_seed(0)
    module = ae_module()
    assert module.normalizer.mode == "none"  # the official baseline's raw dB input
    train_briefly(module, torch.randn(16, 128, 40) * 3 - 50)
    normal = torch.randn(16, 128, 40) * 3 - 50
    louder = normal.clone()
    louder[:, 90:110] += 10.0  # 10 dB more in 20 of the 128 bands
    with torch.no_grad():
        scores = module.score_logmel(torch.cat([normal, louder]))["score"]
    auc, _ = auc_pauc(scores, torch.tensor([0] * 16 + [1] * 16))
    assert auc > 0.95


def test_the_output_starts_at_the_mean_training_vector_once():
    torch.manual_seed(0)
    features = torch.randn(4, 128, 30) * 5 - 40 + torch.linspace(0, 30, 128).view(128, 1)
    for normalization in ("none", "standard", "minmax"):
        module = ae_module(f"model.normalization={normalization}")
        module.fit_normalizer(features)
        expected = context_vectors(module.normalizer(features), 5).mean((0, 1))
        torch.testing.assert_close(module.net.layers[-1].bias.detach(), expected, atol=1e-4, rtol=1e-5)
        assert bool(module.output_started)
    # a resumed run (its state dict says the bias was set) keeps its weights when training starts again
    resumed = ae_module()
    resumed.load_state_dict(module.state_dict() | {"normalizer.fitted": torch.tensor(True)}, strict=False)
    bias = resumed.net.layers[-1].bias.detach().clone()
    resumed.fit_normalizer(features + 20)
    torch.testing.assert_close(resumed.net.layers[-1].bias.detach(), bias)


def test_a_checkpoint_from_before_the_start_flag_loads_as_started():
    module = ae_module()
    state = {k: v for k, v in module.state_dict().items() if k != "output_started"}
    module.load_state_dict(state)  # strict, as asd-ganomaly score and Lightning load
    assert bool(module.output_started)


def test_zero_keeps_the_initialisation():
    module = ae_module("model.output_bias=zero")
    bias = module.net.layers[-1].bias.detach().clone()
    module.fit_normalizer(torch.randn(4, 128, 30) - 40)
    torch.testing.assert_close(module.net.layers[-1].bias.detach(), bias)
    assert not bool(module.output_started)
