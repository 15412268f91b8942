"""BatchNorm -> InstanceNorm swap on per-image generator copies (DGP appendix B, Tables 7, 8, 10).

DGP replaces BN by IN "seamlessly ... by initialising the scale and shift parameters of IN with the
statistics of the output features of BN", which lets the fine-tuning use higher learning rates. The
swap is done per image (each private generator copy gets its own IN parameters, from that image's
current latent) and is idempotent (a generator without BatchNorm is left unchanged).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

__all__ = ["BatchNormToInstanceNorm", "swap_batchnorm_for_instancenorm"]


@torch.no_grad()
def swap_batchnorm_for_instancenorm(
    generator: nn.Module, w: torch.Tensor, labels: torch.Tensor | None = None, eps: float = 1e-5
) -> int:
    """Replace every ``BatchNorm2d`` of ``generator`` (in place) by ``InstanceNorm2d(affine=True)`` whose
    shift is the mean and whose scale is the standard deviation of the BN output on ``w``'s image.

    BN (eval, running statistics) is the per-channel affine map ``a (x - r) + beta``; IN gives
    ``g (x - mu) / sqrt(var + eps) + b`` with ``mu, var`` the image's own statistics. With ``b`` = the
    mean of the BN output and ``g = a sqrt(var + eps)`` (= the signed std of the BN output, IN's ``eps``
    folded in) the IN output equals the BN output on this image up to rounding (DGP appendix B).

    Args:
        generator: a network in eval mode whose ``forward(w[, labels])`` is what the copy computes.
        w: generator input of ONE image ``(1, ...)``.
        labels: ``(1,)`` class label for a conditional generator, else None.
        eps: IN epsilon.

    Returns:
        the number of layers swapped (0 when there is no BatchNorm left: idempotent).

    Shape:
        - w: ``(1, *latent_shape)``.
    """
    if w.shape[0] != 1:
        raise ValueError(f"the BN->IN swap is per image: pass w of one image (1, ...), got {tuple(w.shape)}")
    # BatchNorm2d, and class-conditional BNs that build their own IN twin (``instance_norm_from(x, out,
    # eps)``, e.g. BigGAN's ccbn: the per-image copy's class is fixed, so its gain and bias fold in)
    bns = [
        (name, m)
        for name, m in generator.named_modules()
        if isinstance(m, nn.BatchNorm2d) or callable(getattr(m, "instance_norm_from", None))
    ]
    if not bns:
        return 0
    if any(m.training for _, m in bns):
        raise ValueError("put the generator in eval mode before the BN->IN swap (BN must use running stats)")
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, name=name: seen.__setitem__(name, (inp[0].clone(), out.clone()))
        )
        for name, m in bns
    ]
    try:
        generator(w) if labels is None else generator(w, labels)
    finally:
        for h in hooks:
            h.remove()
    for name, bn in bns:
        x, out = seen[name]
        parent_name, _, child = name.rpartition(".")
        parent = generator.get_submodule(parent_name) if parent_name else generator
        if not isinstance(bn, nn.BatchNorm2d):
            setattr(parent, child, bn.instance_norm_from(x, out, eps))
            continue
        a = torch.ones_like(bn.running_var) if bn.weight is None else bn.weight.clone()
        a = a / torch.sqrt(bn.running_var + bn.eps)
        var = x.var(dim=(2, 3), unbiased=False)[0]
        inorm = nn.InstanceNorm2d(bn.num_features, eps=eps, affine=True, track_running_stats=False)
        inorm = inorm.to(device=x.device, dtype=x.dtype)
        inorm.weight.copy_(a * torch.sqrt(var + eps))  # signed std of the BN output (+ IN's eps)
        inorm.bias.copy_(out.mean(dim=(2, 3))[0])  # mean of the BN output
        req = bn.weight.requires_grad if bn.weight is not None else True
        inorm.weight.requires_grad_(req)
        inorm.bias.requires_grad_(req)
        setattr(parent, child, inorm.eval())
    return len(bns)


class BatchNormToInstanceNorm(pl.Callback):
    """Swap BN for IN in every per-image generator copy of the inversion engine, from each image's
    current latent, at the first stage that has copies (DGP appendix B; Tables 7, 8, 10).

    Needs the engine's sequential copies (``batching='sequential'``): stacked ``vmap`` weights share
    one module structure. Swapping again is a no-op.

    Args:
        eps: IN epsilon.
        stages: per stage DGP's ``use_in`` (None: IN from the first stage with copies on). Given, the
            callback runs DGP's ``run()`` rule: a generator with DGP's own InstanceNorm twins
            (``set_instance_norm`` / ``reset_instance_norm``, BigGAN's ``GBlock``; their affine is
            initialised from the BN output at the first forward that uses them) switches them per stage;
            any other generator is swapped at the first stage with ``use_in`` from the image's current
            latent, and must keep IN from then on.
        freeze_affine: the IN scale and shift do not train (DGP's code leaves them out of its optimizer).
    """

    def __init__(self, eps: float = 1e-5, stages: list[bool] | None = None, freeze_affine: bool = False):
        self.eps = float(eps)
        self.stages = None if stages is None else [bool(f) for f in stages]
        self.freeze_affine = bool(freeze_affine)
        self.swapped = 0
        self._swapped: set[int] = set()  # ids of the copies this callback swapped

    def on_stage_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, k: int, stage) -> None:
        if getattr(pl_module, "stacked", None) is not None:
            raise ValueError("the BN->IN swap needs batching='sequential' (per-image generator copies)")
        copies = getattr(pl_module, "copies", None)
        if copies is None:
            return
        flag = True if self.stages is None else self.stages[k]
        prior, labels = pl_module.prior, pl_module.labels
        with torch.no_grad():
            w = prior.code(pl_module.latent, labels)
        for i, g in enumerate(copies):
            if self.stages is not None and callable(getattr(g, "set_instance_norm", None)):
                if k == 0 and callable(getattr(g, "reset_instance_norm", None)):
                    g.reset_instance_norm()  # DGP's reset_in_init: first use initialises the twins
                g.set_instance_norm(flag)
                continue
            if not flag:
                if id(g) in self._swapped:
                    raise ValueError(
                        "this generator has no DGP InstanceNorm twins: once a stage swaps BN for IN, later "
                        "stages must keep instance_norm: true"
                    )
                continue
            lab = labels[i : i + 1] if prior.num_classes else None
            n = swap_batchnorm_for_instancenorm(g, w[i : i + 1], lab, self.eps)
            self.swapped += n
            if n:
                self._swapped.add(id(g))
            if n and self.freeze_affine:
                for m in g.modules():
                    if isinstance(m, nn.InstanceNorm2d):
                        m.requires_grad_(False)
            if n and pl_module.best_state[i] is None:
                # the best iterate so far used the shared generator: its IN twin reproduces it
                pl_module.best_state[i] = {name: p.detach().clone() for name, p in g.named_parameters()}
