"""Inverting a prior in its code space: W and W+ latents for every restoration method.

:func:`code_space_prior` turns a prior with a mapping network into one whose latent *is* the code:

* ``"z"``: the prior itself (its own latent);
* ``"w"``: one code ``w`` ``(w_dim,)`` per image (Abdal et al. 2019, Image2StyleGAN, invert in W);
* ``"w+"``: one code per synthesis layer ``(num_ws, w_dim)`` (Image2StyleGAN's W+; CRI inverts in W+);
  needs a generator with ``num_ws`` that accepts ``(B, num_ws, w_dim)`` (StyleGAN2).

With ``optimize_noise`` (generators with noise inputs:
:class:`lcm.architectures.stylegan2_prior.StyleSynthesis`) the latent also carries one noise map per
noise input, packed after the code and starting from the generator's stored constant noise (CRI,
remark after eq. 6: "the noise vector can be considered").

Starting latents are codes of Gaussian ``z`` (``sample_latent``). The class of a conditional prior is
part of its code, so the code-space prior takes no labels (``num_classes == 0``; synthesis never reads
them) and draws the class of each start uniformly, since a start is drawn before its image is known.
The latent is unconstrained and has no prior penalty (W is not Gaussian).
"""

from __future__ import annotations

import torch

from lcm.prior import Prior

__all__ = ["SPACES", "CodeSpacePrior", "code_space_prior"]

SPACES = ("z", "w", "w+")


class CodeSpacePrior(Prior):
    """A prior whose latent is its base prior's code (W or W+, optionally with noise maps).

    Generator, critic, classes and image shape are the base prior's (shared, not copied).

    Shape:
        - latent: ``(B, w_dim)`` in W, ``(B, num_ws, w_dim)`` in W+, ``(B, P)`` packed with noise.
    """

    def __init__(self, base: Prior, space: str = "w", optimize_noise: bool = False):
        if space not in ("w", "w+"):
            raise ValueError(f"space must be 'w' or 'w+' for a code-space prior, got {space!r}")
        if base.latent_kind == "convnet" or isinstance(base.mapping, torch.nn.Identity):
            raise ValueError(
                f"space={space!r} needs a prior with a mapping network (StyleGAN2); this {base.kind} prior "
                "feeds its latent to the generator directly: use space='z'"
            )
        gen = base.generator
        num_ws = getattr(gen, "num_ws", None)
        if space == "w+" and not isinstance(num_ws, int):
            raise ValueError(
                f"space='w+' needs a generator with one code per layer (`num_ws`); "
                f"{type(gen).__name__} has none"
            )
        if optimize_noise and not hasattr(gen, "pack"):
            raise ValueError(
                f"optimize_noise needs a generator with noise inputs; {type(gen).__name__} has none"
            )
        with torch.no_grad():
            probe = base.code(
                base.sample_latent(1, torch.Generator(device=_device(base)).manual_seed(0)),
                None if not base.num_classes else torch.zeros(1, dtype=torch.long, device=_device(base)),
            )
        w_shape = tuple(probe.shape[1:])
        shape = w_shape if space == "w" else (num_ws, *w_shape)
        if optimize_noise:
            shape = (int(torch.Size(shape).numel()) + gen.noise_numel,)
        super().__init__(
            gen,
            "gaussian",
            shape,
            base.image_shape,
            num_classes=0,
            kind=f"{base.kind}@{space}{'+noise' if optimize_noise else ''}",
        )
        self.critic = base.critic
        self.base = base
        self.space, self.optimize_noise, self.num_ws = space, optimize_noise, num_ws
        self.base_classes = base.num_classes

    def lift(self, w: torch.Tensor) -> torch.Tensor:
        """W codes ``(B, w_dim)`` of the base prior as latents of this prior (broadcast, noise appended)."""
        if self.space == "w+":
            w = w.unsqueeze(1).expand(-1, self.num_ws, *w.shape[1:])
        if self.optimize_noise:
            noise = self.generator.const_noise().to(w)
            w = self.generator.pack(w, noise.unsqueeze(0).expand(w.shape[0], -1))
        return w.contiguous()

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.base.sample_latent(n, generator)
        labels = None
        if self.base_classes:
            dev = generator.device if generator is not None else z.device
            labels = torch.randint(0, self.base_classes, (n,), generator=generator, device=dev).to(z.device)
        with torch.no_grad():
            return self.lift(self.base.code(z, labels))

    def latent_penalty(self, latent: torch.Tensor) -> torch.Tensor:
        return latent.new_zeros(latent.shape[0])

    def code(self, latent: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return latent


def _device(prior: Prior) -> torch.device:
    return next(prior.generator.parameters()).device


def code_space_prior(prior: Prior, space: str = "z", optimize_noise: bool = False) -> Prior:
    """``prior`` itself for ``space="z"`` (no noise), else a :class:`CodeSpacePrior` in W / W+."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if space == "z":
        if optimize_noise:
            raise ValueError("optimize_noise needs space='w' or 'w+' (the noise is part of the code latent)")
        return prior
    return CodeSpacePrior(prior, space, optimize_noise)
