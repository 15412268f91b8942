"""DGP Table 5 defence pieces (I-FGSM, smoothing, classifier, the table) and the Table 4 perceptual loss."""

import pytest
import torch
from torch import nn

from inversion import restore
from inversion.dgp.defence import accuracy, defence_accuracies, ifgsm, smooth, train_classifier
from inversion.dgp.losses import PerceptualLoss
from inversion.operators import SuperResolution
from tests.inversion.test_dgp import images, tiny


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16 * 16, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_ifgsm_stays_in_the_eps_ball_and_raises_the_loss():
    clf = _Linear()
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = clf(x).argmax(1)  # the classifier is right on the clean images
    adv = ifgsm(clf, x, labels, eps=0.05, steps=5)
    assert (adv - x).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    ce = nn.functional.cross_entropy
    assert ce(clf(adv), labels) > ce(clf(x), labels)
    assert accuracy(clf, adv, labels).mean() < 1.0
    with pytest.raises(ValueError, match="eps"):
        ifgsm(clf, x, labels, eps=0.0)


def test_smoothing_keeps_constants_and_lowers_noise():
    c = torch.full((1, 1, 16, 16), 0.3)
    assert torch.allclose(smooth(c), c, atol=1e-6)
    n = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert smooth(n).std() < n.std()


def test_defence_table_runs_end_to_end_on_a_tiny_prior():
    prior = tiny()
    x = images(prior, 24)
    labels = (x.mean((1, 2, 3)) > x.mean()).long()
    clf = train_classifier(
        x,
        labels,
        2,
        steps=20,
        batch_size=8,
        model_kwargs={"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2},
    )
    stages = [
        {
            "blocks": "all",
            "iterations": 3,
            "generator_lr": 1e-4,
            "latent_lr": 1e-2,
            "weights": {"critic": 0.0, "mse": 4.0},
        }
    ]
    out = defence_accuracies(
        prior,
        clf,
        x[:2],
        labels[:2],
        eps=0.1,
        attack_steps=2,
        dgp_options={"stages": stages, "n_candidates": 4},
        csgm_options={"csgm_steps": 3, "restarts": 1},
    )
    assert set(out) == {"clean", "attacked", "DGP", "CSGM", "smoothing"}
    assert all(v.shape == (2,) and set(v.tolist()) <= {0.0, 1.0} for v in out.values())


def test_perceptual_loss_is_zero_on_the_target_and_drives_dgp():
    prior = tiny()
    x = images(prior, 2)
    op = SuperResolution(factor=2, kernel="bicubic")
    y = op.A(x)
    mse_dist = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731 - any (B,) distance plugs in
    term = PerceptualLoss(prior.image_shape, distance=_Wrap(mse_dist))

    class Ctx:
        ax, operator = y, op

    Ctx.y = y
    assert torch.allclose(term(Ctx), torch.zeros(2))
    stages = [
        {
            "blocks": "all",
            "iterations": 15,
            "generator_lr": 1e-3,
            "latent_lr": 1e-2,
            "weights": {"perceptual": 1.0},
        }
    ]
    for variant in ("faithful", "fast"):  # both variants take extra loss terms
        res = restore(
            y, op, prior, "dgp", loss_terms={"perceptual": term}, stages=stages, init_metric="mse",
            n_candidates=4, variant=variant,
        )  # fmt: skip
        assert (res.history[-1] < res.history[0]).all()


class _Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, a, b):
        return self.fn(a, b)
