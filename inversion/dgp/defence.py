"""DGP's adversarial defence experiment (DGP Table 5), on our data.

A classifier trained on the prior's data (the timm DeiT of :mod:`inversion.cri.classifier`, from
scratch) is attacked with I-FGSM (Kurakin et al. 2017: ``x <- clip_eps(x + alpha sign grad CE)``,
L-inf ball of radius ``eps``); the attacked images are then restored under the identity operator and
re-classified. DGP attacks ResNet50 and defends without the attacker seeing the defence; we do the
same (the attack sees only the classifier). Reported: accuracy on clean, attacked, DGP-restored
(``configs/inversion/dgp/defence.yaml``), CSGM-restored (DefenseGAN-style: latent only) and
Gaussian-smoothed images (the plain filter any user would try).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = ["accuracy", "defence_accuracies", "ifgsm", "smooth", "train_classifier"]


def train_classifier(
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    steps: int = 400,
    batch_size: int = 64,
    seed: int = 0,
    **kwargs,
):
    """A :class:`inversion.cri.classifier.CRIClassifier` (tiny DeiT) trained on clean ``x`` for ``steps``.

    Shape:
        - x: ``(N, C, H, W)`` in [0, 1]; labels: ``(N,)`` int64 in ``[0, num_classes)``.
    """
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from inversion.cri.classifier import CRIClassifier
    from inversion.engine import quiet_lightning

    if x.shape[0] != labels.shape[0]:
        raise ValueError(f"x has {x.shape[0]} images for {labels.shape[0]} labels")
    pl.seed_everything(seed, verbose=False)
    model = CRIClassifier(x.shape[1], x.shape[-1], num_classes, augment=False, **kwargs)
    data = [{"image": x[i], "label": labels[i]} for i in range(x.shape[0])]
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=len(data) > batch_size)
    with quiet_lightning():
        trainer = pl.Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(model, loader)
    return model.eval().requires_grad_(False)


def ifgsm(
    classifier, x: torch.Tensor, labels: torch.Tensor, eps: float, steps: int = 10, alpha: float | None = None
):
    """I-FGSM / untargeted L-inf PGD without random start (Kurakin et al. 2017), images kept in [0, 1].

    ``alpha`` defaults to ``eps / 4`` (Kurakin et al.'s 1/255 per step for eps 4/255 scaled).
    """
    if not eps > 0 or steps < 1:
        raise ValueError(f"eps must be > 0 and steps >= 1, got {eps!r}, {steps!r}")
    alpha = eps / 4 if alpha is None else alpha
    adv = x.detach().clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(classifier(adv), labels)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + alpha * grad.sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


def smooth(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian smoothing (kernel ``2 * ceil(2 sigma) + 1``), the baseline filter."""
    import kornia

    k = 2 * int(torch.tensor(2 * sigma).ceil()) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


@torch.no_grad()
def accuracy(classifier, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image correctness ``(B,)`` as float (1 = correct)."""
    return (classifier(x).argmax(1) == labels).float()


def defence_accuracies(
    prior,
    classifier,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 16 / 255,
    attack_steps: int = 10,
    dgp_options: Mapping | None = None,
    csgm_options: Mapping | None = None,
    smooth_sigma: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Per-image correctness on clean, attacked and restored images (DGP Table 5 layout).

    Returns:
        ``{"clean", "attacked", "DGP", "CSGM", "smoothing"}`` -> ``(B,)`` floats in {0, 1}.
    """
    from inversion.dgp.fit import load_preset
    from inversion.methods import restore
    from inversion.operators import Denoising

    adv = ifgsm(classifier, x, labels, eps, attack_steps)
    op = Denoising(sigma=0.0)  # identity: y is the attacked image
    dgp_opts = {**load_preset("defence"), **dict(dgp_options or {})}
    rec_dgp = restore(adv, op, prior, "dgp", seed=seed, **dgp_opts).images
    rec_csgm = restore(adv, op, prior, "csgm", seed=seed, **dict(csgm_options or {})).images
    return {
        "clean": accuracy(classifier, x, labels),
        "attacked": accuracy(classifier, adv, labels),
        "DGP": accuracy(classifier, rec_dgp, labels),
        "CSGM": accuracy(classifier, rec_csgm, labels),
        "smoothing": accuracy(classifier, smooth(adv, smooth_sigma), labels),
    }
