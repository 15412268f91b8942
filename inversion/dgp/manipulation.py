"""DGP image manipulation after a fit (DGP Sec. 4.2): random jittering, morphing, category transfer
(the library; its command line is :mod:`inversion.dgp.manipulation_cli`).

Each function takes a fitted per-image generator (``DGPFit.fit.generators[i]``) and its latent
``DGPFit.fit.latent[i]`` and renders new images with the prior's latent code map (``prior.code``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from lcm.prior import Prior, to_unit

__all__ = ["category_transfer", "jitter", "morph", "render"]


def _check_latent(prior: Prior, latent: torch.Tensor, name: str) -> None:
    if tuple(latent.shape) != prior.latent_shape:
        raise ValueError(
            f"{name} must be ONE latent of shape {prior.latent_shape}, got {tuple(latent.shape)}"
        )


def _labels(prior: Prior, label: int | None, n: int, device) -> torch.Tensor | None:
    if not prior.num_classes:
        return None
    if label is None or not 0 <= int(label) < prior.num_classes:
        raise ValueError(
            f"this prior is class-conditional: pass label in [0, {prior.num_classes}), got {label!r}"
        )
    return torch.full((n,), int(label), dtype=torch.long, device=device)


def _tensors(generator: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers under the module's own attribute names (what ``functional_call`` takes;
    a ``state_dict`` may rename them, as BigGAN's does to DGP's key names)."""
    return {**dict(generator.named_parameters()), **dict(generator.named_buffers())}


@torch.no_grad()
def render(
    prior: Prior,
    generator: nn.Module,
    latent: torch.Tensor,
    labels: torch.Tensor | None = None,
    params: dict | None = None,
) -> torch.Tensor:
    """Images in [0, 1] of ``generator`` (optionally with substituted ``params``) on ``latent``.

    Shape:
        - latent: ``(B, *latent_shape)``; labels ``(B,)`` or None -> ``(B, C, H, W)``.
    """
    w = prior.code(latent, labels)
    args = (w, labels) if prior.num_classes else (w,)
    out = generator(*args) if params is None else torch.func.functional_call(generator, params, args)
    return to_unit(out)


@torch.no_grad()
def jitter(
    prior: Prior,
    generator: nn.Module,
    latent: torch.Tensor,
    sigma: float = 0.5,
    n: int = 8,
    seed: int = 0,
    label: int | None = None,
) -> torch.Tensor:
    """Random jittering (DGP Sec. 4.2): Gaussian noise of std ``sigma`` added to the fitted latent.

    Shape:
        - latent: ``latent_shape``; output ``(n, C, H, W)``.
    """
    _check_latent(prior, latent, "latent")
    if not sigma >= 0 or n < 1:
        raise ValueError(f"jitter needs sigma >= 0 and n >= 1, got sigma={sigma!r}, n={n!r}")
    g = torch.Generator(device=latent.device).manual_seed(int(seed))
    noise = torch.randn((n, *latent.shape), generator=g, device=latent.device, dtype=latent.dtype)
    z = prior.project_latent(latent[None] + sigma * noise)
    return render(prior, generator, z, _labels(prior, label, n, latent.device))


@torch.no_grad()
def morph(
    prior: Prior,
    generator_a: nn.Module,
    latent_a: torch.Tensor,
    generator_b: nn.Module,
    latent_b: torch.Tensor,
    lambdas: Sequence[float],
    label: int | None = None,
    label_b: int | None = None,
) -> torch.Tensor:
    """Image morphing (DGP Sec. 4.2): ``z = l z_A + (1 - l) z_B`` and ``theta = l theta_A + (1 - l)
    theta_B`` (parameters and floating-point buffers), so ``l = 1`` gives image A and ``l = 0`` image B.

    A class-conditional prior morphs between two images of class ``label``; with ``label_b`` (image B's
    class) between two classes, as DGP's ``example.py`` (morphing) does: the class embeddings are
    interpolated too, ``l G_A.shared(label) + (1 - l) G_B.shared(label_b)``, which needs a generator
    that takes embeddings (``synthesize_embedded``, BigGAN).

    Shape:
        - latent_a, latent_b: ``latent_shape``; output ``(len(lambdas), C, H, W)``.
    """
    _check_latent(prior, latent_a, "latent_a")
    _check_latent(prior, latent_b, "latent_b")
    sa, sb = _tensors(generator_a), _tensors(generator_b)
    if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
        raise ValueError(
            "the two generators differ in structure (e.g. one had its BatchNorm swapped for InstanceNorm): "
            "fit both images with the same options"
        )
    lambdas = [float(v) for v in lambdas]
    if not lambdas:
        raise ValueError("lambdas must hold at least one value (1 = image A, 0 = image B)")
    if label_b is not None:
        return _morph_two_classes(
            prior, generator_a, latent_a, generator_b, latent_b, lambdas, label, label_b
        )
    out = []
    for lam in lambdas:
        params = {k: (lam * a + (1 - lam) * sb[k]) if a.is_floating_point() else a for k, a in sa.items()}
        z = prior.project_latent((lam * latent_a + (1 - lam) * latent_b)[None])
        out.append(render(prior, generator_a, z, _labels(prior, label, 1, z.device), params))
    return torch.cat(out)


def _morph_two_classes(prior, generator_a, latent_a, generator_b, latent_b, lambdas, label, label_b):
    """DGP ``example.py`` (morphing): weights, latents and class embeddings interpolated."""
    if not prior.num_classes:
        raise ValueError("label_b (a second class) needs a class-conditional prior")
    if not all(callable(getattr(g, "synthesize_embedded", None)) for g in (generator_a, generator_b)):
        raise ValueError(
            "two-class morphing interpolates class embeddings: it needs generators with synthesize_embedded "
            f"(BigGAN), got {type(generator_a).__name__}"
        )
    la = _labels(prior, label, 1, latent_a.device)
    lb = _labels(prior, label_b, 1, latent_b.device)
    emb_a, emb_b = generator_a.embedding(la), generator_b.embedding(lb)
    sa, sb = _tensors(generator_a), _tensors(generator_b)
    mixed = copy.deepcopy(generator_a)
    own = _tensors(mixed)
    out = []
    for lam in lambdas:
        for k, a in sa.items():
            if a.is_floating_point():
                own[k].copy_(lam * a + (1 - lam) * sb[k])
        z = prior.project_latent((lam * latent_a + (1 - lam) * latent_b)[None])
        emb = lam * emb_a + (1 - lam) * emb_b
        out.append(to_unit(mixed.synthesize_embedded(prior.code(z, la), emb)))
    return torch.cat(out)


@torch.no_grad()
def category_transfer(
    prior: Prior, generator: nn.Module, latent: torch.Tensor, classes: Sequence[int] | None = None
) -> torch.Tensor:
    """Category transfer (DGP Sec. 4.2): the fitted latent and generator under other class conditions.

    Shape:
        - latent: ``latent_shape``; output ``(len(classes), C, H, W)`` (default: every class).
    """
    if not prior.num_classes:
        raise ValueError("category transfer needs a class-conditional prior (num_classes > 0)")
    _check_latent(prior, latent, "latent")
    classes = list(range(prior.num_classes)) if classes is None else [int(c) for c in classes]
    if not classes or any(not 0 <= c < prior.num_classes for c in classes):
        raise ValueError(
            f"classes must be a non-empty list of values in [0, {prior.num_classes}), got {classes}"
        )
    labels = torch.tensor(classes, dtype=torch.long, device=latent.device)
    return render(prior, generator, latent[None].expand(len(classes), *latent.shape), labels)
