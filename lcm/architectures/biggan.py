"""BigGAN (Brock et al. 2019) as DGP (Pan et al. 2020) uses it: the BigGAN-PyTorch architecture of
``models/biggan.py`` in github.com/XingangPan/deep-generative-prior, whose ``G_ema.pth`` / ``D.pth``
DGP releases (128 and 256 px, ImageNet).

Parameter and buffer names follow the authors' code, so their state dicts load strictly:

* spectral norm with one stored singular vector ``u0`` and value ``sv0`` per layer; one power
  iteration per call from the stored ``u0`` (updated in training mode only, so eval uses the stored
  vector);
* generator: shared class embedding ``shared``; hierarchical ``z`` split into one chunk for the first
  linear layer and one per residual block (concatenated to the class embedding); class-conditional
  BatchNorm (``bn1``/``bn2`` with ``stored_mean``/``stored_var`` and spectrally normed linear
  gains/biases, gain = 1 + linear(y)); self-attention after the block at 64 px; output BN-ReLU-conv-tanh;
  each block also carries DGP's ``in1``/``in2`` InstanceNorm twins (``use_in``, see :class:`GBlock`);
* discriminator: pre-activation residual blocks with average pooling, attention at 64 px, global sum
  pooling, linear output plus class projection (``embed``); DGP's loss reads the list of every block's
  output and the pooled features (8 tensors at 128 px).

The configuration is read from a state dict's shapes (:func:`generator_config`,
:func:`discriminator_config`); :func:`load_biggan_prior` wraps both networks as an :class:`lcm.Prior`
(images in [0, 1]) whose ``generator.blocks`` are DGP's parameter groups: the first linear layer,
one group per residual block (with its attention), the output layer (7 groups at 128 px).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lcm.architectures.registry import Architecture, CheckpointFile, register_architecture
from lcm.architectures.state_dicts import build_strict
from lcm.prior import Prior

__all__ = [
    "RELEASED",
    "BigGANDiscriminator",
    "BigGANGenerator",
    "BigGANPriorGenerator",
    "biggan_prior",
    "build_discriminator",
    "build_generator",
    "discriminator_config",
    "generator_config",
    "is_biggan_discriminator_state",
    "is_biggan_generator_state",
    "load_biggan_prior",
]

# DGP's released configurations (config_128 / config_256 of its scripts): G_ch = D_ch = 96, dim_z = 120,
# shared_dim = 128, hierarchical z, shared embedding, attention at 64, 1000 ImageNet classes.
RELEASED = {
    128: {
        "ch": 96,
        "dim_z": 120,
        "shared_dim": 128,
        "attention": (64,),
        "n_classes": 1000,
        "resolution": 128,
    },
    256: {
        "ch": 96,
        "dim_z": 120,
        "shared_dim": 128,
        "attention": (64,),
        "n_classes": 1000,
        "resolution": 256,
    },
}

# channel multipliers (in, out) per generator block, by output resolution (BigGAN-PyTorch G_arch)
_G_ARCH = {
    32: ([4, 4, 4], [4, 4, 4]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1]),
    512: ([16, 16, 8, 8, 4, 2, 1], [16, 8, 8, 4, 2, 1, 1]),
}
# discriminator blocks (out multipliers; the input of block 0 is RGB), all downsampling but the last
_D_ARCH = {64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16]}
SN_EPS = 1e-6  # DGP's --SN_eps default
BN_EPS = 1e-5


# -- spectral norm ------------------------------------------------------------------------------
class _SpectralNorm:
    """Mixin: ``weight / sigma`` with sigma from one power iteration started at the stored ``u0``
    (Miyato et al. 2018 as BigGAN-PyTorch implements it; u0/sv0 are updated in training mode only).

    The layers apply ``1 / sigma`` where it is cheapest (:meth:`_sn_apply`): to the weight, as
    BigGAN-PyTorch does, or to the layer's output when that is smaller (``conv(x, W) / sigma`` equals
    ``conv(x, W / sigma)`` up to rounding; at batch 1 most of BigGAN's weights are larger than their
    outputs, and building ``W / sigma`` and its backward was a quarter of a BigGAN-128 step).
    ``sn_output_scale = False`` on a layer keeps BigGAN-PyTorch's ``W / sigma`` always."""

    sn_output_scale = True

    def _init_sn(self, num_outputs: int) -> None:
        self.register_buffer("u0", torch.randn(1, num_outputs))
        self.register_buffer("sv0", torch.ones(1))

    def sn_sigma(self) -> torch.Tensor:
        """The largest singular value, differentiable in the weight (u, v held fixed)."""
        w = self.weight.reshape(self.weight.shape[0], -1)
        with torch.no_grad():
            v = F.normalize(self.u0 @ w, eps=SN_EPS)
            u = F.normalize(v @ w.t(), eps=SN_EPS)
            if self.training:
                self.u0.copy_(u)
        sv = (v @ w.t() @ u.t()).squeeze()
        if self.training:
            with torch.no_grad():
                self.sv0.copy_(sv)
        return sv

    def sn_weight(self) -> torch.Tensor:
        return self.weight / self.sn_sigma()

    def _sn_apply(self, op, out_numel: int, bias: torch.Tensor | None, bias_shape: tuple) -> torch.Tensor:
        """``op(weight / sigma) + bias``, with ``1 / sigma`` on the weight or, when smaller, the output."""
        sv = self.sn_sigma()
        if not self.sn_output_scale or out_numel >= self.weight.numel():
            out = op(self.weight / sv)
            return out if bias is None else out + bias.view(bias_shape)
        out = op(self.weight)
        return out / sv if bias is None else torch.addcdiv(bias.view(bias_shape), out, sv)


class SNConv2d(nn.Conv2d, _SpectralNorm):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1, bias: bool = True):
        super().__init__(cin, cout, kernel_size, padding=padding, bias=bias)
        self._init_sn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k, _), (p, _) = self.kernel_size, self.padding  # stride 1
        h, w = x.shape[-2] + 2 * p - k + 1, x.shape[-1] + 2 * p - k + 1
        return self._sn_apply(
            lambda wt: F.conv2d(x, wt, None, self.stride, self.padding),
            x.shape[0] * self.out_channels * h * w, self.bias, (-1, 1, 1),
        )  # fmt: skip


class SNLinear(nn.Linear, _SpectralNorm):
    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__(cin, cout, bias=bias)
        self._init_sn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel() // self.in_features * self.out_features
        return self._sn_apply(lambda wt: F.linear(x, wt), n, self.bias, (-1,))


class SNEmbedding(nn.Embedding, _SpectralNorm):
    def __init__(self, num: int, dim: int):
        super().__init__(num, dim)
        self._init_sn(num)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self._sn_apply(lambda wt: F.embedding(y, wt), y.numel() * self.embedding_dim, None, ())


class ClassConditionalBN(nn.Module):
    """BigGAN's ccbn: BatchNorm on ``stored_mean``/``stored_var`` (no affine), then ``* (1 + gain(c)) +
    bias(c)`` with spectrally normed linear maps of the conditioning vector ``c``.

    ``instance_norm_from`` gives the BN->IN replacement of DGP appendix B for one image (see
    :func:`callbacks.swap_batchnorm_for_instancenorm`).
    """

    def __init__(self, channels: int, cond_dim: int, eps: float = BN_EPS):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.gain = SNLinear(cond_dim, channels, bias=False)
        self.bias = SNLinear(cond_dim, channels, bias=False)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps)
        return out * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]

    def instance_norm_from(self, x: torch.Tensor, out: torch.Tensor, eps: float) -> nn.Module:
        """An InstanceNorm whose output on ``x`` (one image) equals this layer's output ``out`` there:
        bias = mean of ``out``, scale = its signed std (class gain x BN scale x the image's std)."""
        c = self.channels
        var = x.var(dim=(2, 3), unbiased=False)[0]
        scale = (out - out.mean(dim=(2, 3), keepdim=True))[0].flatten(1)
        # out - mean(out) = s (x - mean(x)) with s = gain(c) / sqrt(stored_var + eps) per channel
        xc = (x - x.mean(dim=(2, 3), keepdim=True))[0].flatten(1)
        s = (scale * xc).sum(1) / xc.pow(2).sum(1).clamp_min(1e-30)
        inorm = nn.InstanceNorm2d(c, eps=eps, affine=True).to(device=x.device, dtype=x.dtype)
        inorm.weight.copy_(s * torch.sqrt(var + eps))
        inorm.bias.copy_(out.mean(dim=(2, 3))[0])
        req = self.gain.weight.requires_grad
        inorm.weight.requires_grad_(req)
        inorm.bias.requires_grad_(req)
        return _Unconditional(inorm.eval())


class _Unconditional(nn.Module):
    """A norm layer in a conditional slot: ``forward(x, c)`` ignores ``c`` (a per-image copy's class
    is fixed)."""

    def __init__(self, norm: nn.Module):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(x)


class OutputBN(nn.Module):
    """BigGAN's unconditional ``bn``: BatchNorm on stored statistics with learned ``gain``/``bias``."""

    def __init__(self, channels: int, eps: float = BN_EPS):
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training, 0.1, self.eps
        )


class Attention(nn.Module):
    """SA-GAN non-local block as BigGAN-PyTorch implements it (theta/phi/g/o 1x1 SN convs, 2x2 max-pooled
    keys and values, ``x + gamma * o(...)``)."""

    def __init__(self, ch: int):
        super().__init__()
        self.ch = ch
        self.theta = SNConv2d(ch, ch // 8, 1, padding=0, bias=False)
        self.phi = SNConv2d(ch, ch // 8, 1, padding=0, bias=False)
        self.g = SNConv2d(ch, ch // 2, 1, padding=0, bias=False)
        self.o = SNConv2d(ch // 2, ch, 1, padding=0, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        b, _, h, w = x.shape
        theta = self.theta(x).reshape(b, self.ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).reshape(b, self.ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), 2).reshape(b, self.ch // 2, h * w // 4)
        beta = F.softmax(theta.transpose(1, 2) @ phi, dim=-1)
        o = self.o((g @ beta.transpose(1, 2)).reshape(b, self.ch // 2, h, w))
        return x + self.gamma * o


class GBlock(nn.Module):
    """Generator residual block: ccbn-ReLU-up-conv-ccbn-ReLU-conv, plus up-1x1-conv shortcut.

    ``use_in`` (DGP's ``GBlock.forward(x, y, use_in)``, ``models/layers.py``) replaces ``bn1``/``bn2`` by
    the InstanceNorm twins ``in1``/``in2``, whose frozen affine is set once, at the first call that uses
    them, to the per-channel mean and (unbiased) std of the BN output on that input (one image); a call
    without ``use_in`` marks them for re-initialisation, as DGP's does.
    """

    def __init__(self, cin: int, cout: int, cond_dim: int):
        super().__init__()
        self.conv1 = SNConv2d(cin, cout)
        self.conv2 = SNConv2d(cout, cout)
        self.conv_sc = SNConv2d(cin, cout, 1, padding=0)  # every block upsamples: learnable shortcut
        self.bn1 = ClassConditionalBN(cin, cond_dim)
        self.bn2 = ClassConditionalBN(cout, cond_dim)
        # DGP's InstanceNorm twins (part of its state dicts), frozen as in DGP
        self.in1 = nn.InstanceNorm2d(cin, affine=True)
        self.in2 = nn.InstanceNorm2d(cout, affine=True)
        self.in1.requires_grad_(False)
        self.in2.requires_grad_(False)
        self.use_in = False
        self.in_initialized = False

    @staticmethod
    def _init_in(bn: nn.Module, inorm: nn.Module, x: torch.Tensor, c: torch.Tensor) -> None:
        if x.shape[0] != 1:
            raise ValueError(f"DGP's BN->IN initialises from one image, got a batch of {x.shape[0]}")
        with torch.no_grad():
            h = bn(x, c)
            inorm.weight.copy_(h.flatten(2).std(2, unbiased=True)[0])
            inorm.bias.copy_(h.mean((2, 3))[0])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.use_in:
            if not self.in_initialized:
                self._init_in(self.bn1, self.in1, x, c)
            h = self.in1(x)
        else:
            h = self.bn1(x, c)
            self.in_initialized = False
        h = F.interpolate(F.relu(h), scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = self.conv1(h)
        if self.use_in:
            if not self.in_initialized:
                self._init_in(self.bn2, self.in2, h, c)
                self.in_initialized = True
            h = self.in2(h)
        else:
            h = self.bn2(h, c)
        h = self.conv2(F.relu(h))
        return h + self.conv_sc(x)


class DBlock(nn.Module):
    """Discriminator residual block (wide): [ReLU]-conv-ReLU-conv-[avgpool], plus 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, preactivation: bool, downsample: bool, wide: bool = True):
        super().__init__()
        hidden = cout if wide else cin
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1 = SNConv2d(cin, hidden)
        self.conv2 = SNConv2d(hidden, cout)
        self.learnable_sc = cin != cout or downsample
        if self.learnable_sc:
            self.conv_sc = SNConv2d(cin, cout, 1, padding=0)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            if self.learnable_sc:
                x = self.conv_sc(x)
            if self.downsample:
                x = F.avg_pool2d(x, 2)
        else:
            if self.downsample:
                x = F.avg_pool2d(x, 2)
            if self.learnable_sc:
                x = self.conv_sc(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)


# -- networks -------------------------------------------------------------------------------------
def _synthesize(linear, blocks, output_layer, z, emb, chunk: int, bottom: int) -> torch.Tensor:
    """BigGAN generator forward (hierarchical z): shared by the BigGAN-named and the prior-facing module."""
    zs = torch.split(z, chunk, 1)
    h = linear(zs[0]).reshape(z.shape[0], -1, bottom, bottom)
    for blocklist, zi in zip(blocks, zs[1:], strict=True):
        c = torch.cat([emb, zi], 1)
        for layer in blocklist:
            h = layer(h, c)
    return torch.tanh(output_layer(h))


class BigGANGenerator(nn.Module):
    """BigGAN-PyTorch's generator with hierarchical z and a shared embedding (the configuration DGP uses).

    Args:
        ch: width multiplier ``G_ch``.
        dim_z: latent size (rounded down to a multiple of the number of z chunks, as the original does).
        shared_dim: class embedding size.
        n_classes: number of classes.
        resolution: output size (32, 64, 128, 256 or 512).
        attention: resolutions that get a self-attention block after their residual block.

    Shape:
        - ``forward(z, emb)``: z ``(B, dim_z)``, emb = ``shared(y)`` ``(B, shared_dim)`` ->
          ``(B, 3, resolution, resolution)`` in [-1, 1].
    """

    def __init__(
        self,
        ch: int = 96,
        dim_z: int = 120,
        shared_dim: int = 128,
        n_classes: int = 1000,
        resolution: int = 128,
        attention: tuple[int, ...] = (64,),
    ):
        super().__init__()
        if resolution not in _G_ARCH:
            raise ValueError(
                f"BigGAN generator resolution must be one of {sorted(_G_ARCH)}, got {resolution}"
            )
        ins, outs = ([m * ch for m in a] for a in _G_ARCH[resolution])
        self.ch, self.resolution, self.n_classes, self.shared_dim = ch, resolution, n_classes, shared_dim
        self.attention = tuple(int(a) for a in attention)
        self.bottom_width = 4
        num_slots = len(ins) + 1
        self.z_chunk_size = dim_z // num_slots
        self.dim_z = self.z_chunk_size * num_slots
        cond_dim = shared_dim + self.z_chunk_size
        self.shared = nn.Embedding(n_classes, shared_dim)
        self.linear = SNLinear(self.z_chunk_size, ins[0] * self.bottom_width**2)
        blocks = []
        for i, (cin, cout) in enumerate(zip(ins, outs, strict=True)):
            blocklist = [GBlock(cin, cout, cond_dim)]
            if 8 * 2**i in self.attention:
                blocklist.append(Attention(cout))
            blocks.append(nn.ModuleList(blocklist))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(OutputBN(outs[-1]), nn.ReLU(), SNConv2d(outs[-1], 3))

    @property
    def config(self) -> dict:
        return {
            "ch": self.ch,
            "dim_z": self.dim_z,
            "shared_dim": self.shared_dim,
            "n_classes": self.n_classes,
            "resolution": self.resolution,
            "attention": self.attention,
        }

    def forward(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return _synthesize(
            self.linear, self.blocks, self.output_layer, z, emb, self.z_chunk_size, self.bottom_width
        )


class BigGANDiscriminator(nn.Module):
    """BigGAN-PyTorch's discriminator (wide residual blocks, attention, projection on the class).

    ``features(x)`` is DGP's feature list: every block's output in order (attention included), then
    the globally sum-pooled ReLU features. ``forward(x, y)`` is the logit ``(B,)`` (class projection
    added when ``y`` is given; DGP's loss calls it without a class).

    Shape:
        - x: ``(B, 3, resolution, resolution)`` in [-1, 1]; y: ``(B,)`` or None.
    """

    def __init__(
        self,
        ch: int = 96,
        n_classes: int = 1000,
        resolution: int = 128,
        attention: tuple[int, ...] = (64,),
        wide: bool = True,
    ):
        super().__init__()
        if resolution not in _D_ARCH:
            raise ValueError(
                f"BigGAN discriminator resolution must be one of {sorted(_D_ARCH)}, got {resolution}"
            )
        outs = [m * ch for m in _D_ARCH[resolution]]
        ins = [3, *outs[:-1]]
        self.ch, self.resolution, self.n_classes, self.wide = ch, resolution, n_classes, wide
        self.attention = tuple(int(a) for a in attention)
        blocks, size = [], resolution
        for i, (cin, cout) in enumerate(zip(ins, outs, strict=True)):
            down = i < len(outs) - 1
            size = size // 2 if down else size
            blocklist = [DBlock(cin, cout, preactivation=i > 0, downsample=down, wide=wide)]
            if size in self.attention:
                blocklist.append(Attention(cout))
            blocks.append(nn.ModuleList(blocklist))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(outs[-1], 1)
        self.embed = SNEmbedding(n_classes, outs[-1])

    @property
    def config(self) -> dict:
        return {
            "ch": self.ch,
            "n_classes": self.n_classes,
            "resolution": self.resolution,
            "attention": self.attention,
            "wide": self.wide,
        }

    def _check(self, x: torch.Tensor) -> None:
        want = (3, self.resolution, self.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"BigGAN discriminator expects images (B, {want}), got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check(x)
        out, h = [], x
        for blocklist in self.blocks:
            for layer in blocklist:
                h = layer(h)
                out.append(h)
        out.append(F.relu(h).sum(dim=(2, 3)))
        return out

    def dgp_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature list DGP's loss reads when run by its scripts: ``main.py`` builds D with
        ``--D_nl inplace_relu`` (the default of ``utils/biggan_utils.py``), so the in-place ReLU before the
        global sum pooling (``models/biggan.py`` ``Discriminator.forward``) also rectifies the last block's
        output, which is the list's second-to-last entry. (``features`` is the out-of-place default.)"""
        feats = self.features(x)
        return [*feats[:-2], F.relu(feats[-2]), feats[-1]]

    def logits(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(out (B, 1), features)`` exactly as the original ``forward(x, y)`` returns them."""
        feats = self.features(x)
        h = feats[-1]
        out = self.linear(h)
        if y is not None:
            out = out + (self.embed(y) * h).sum(1, keepdim=True)
        return out, feats

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(x, labels)[0].squeeze(1)


class BigGANPriorGenerator(nn.Module):
    """The prior-facing BigGAN generator: ``forward(z, labels) = G(z, G.shared(labels))`` and
    ``blocks`` = DGP's parameter groups (``get_params`` of its ``models/biggan.py``): group 0 the first
    linear layer, one group per residual block (with its attention), the output layer last (7 groups at
    128 px, 8 at 256). The class embedding is ``embedding`` (DGP adds it to group 0 when Table 7
    fine-tunes it; see :class:`callbacks.ProgressiveUnfreezing`).

    It shares its modules with ``net``. Its ``state_dict()`` uses BigGAN-PyTorch's (DGP's) key names
    (``shared``, ``linear``, ``blocks.<i>``, ``output_layer``) and ``load_state_dict`` accepts them, so a
    fine-tuned per-image copy saves as DGP's ``G_<image>.pth`` does.
    """

    def __init__(self, net: BigGANGenerator):
        super().__init__()
        self.blocks = nn.ModuleList(
            [nn.ModuleList([net.linear]), *net.blocks, nn.ModuleList([net.output_layer])]
        )
        self.embedding = net.shared
        self.z_chunk_size, self.bottom_width = net.z_chunk_size, net.bottom_width
        self.dim_z, self.num_classes = net.dim_z, net.n_classes
        # DGP's G.optim holds get_params(i) for i in range(len(G.blocks) + 1): never the output layer
        self.dgp_optimized_groups = len(self.blocks) - 1
        self.register_state_dict_post_hook(_to_biggan_names)
        self.register_load_state_dict_pre_hook(_from_biggan_names)

    def gblocks(self) -> list[GBlock]:
        return [m for m in self.modules() if isinstance(m, GBlock)]

    def set_instance_norm(self, flag: bool) -> None:
        """DGP's per-stage ``use_in``: run every residual block with its InstanceNorm twins (see
        :class:`GBlock`)."""
        for b in self.gblocks():
            b.use_in = bool(flag)

    def reset_instance_norm(self) -> None:
        """DGP's ``reset_in_init``: the next ``use_in`` call re-initialises the IN affine."""
        for b in self.gblocks():
            b.in_initialized = False

    def biggan_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under BigGAN-PyTorch's names (loads into DGP's ``Generator``)."""
        n = len(self.blocks)
        out = {f"shared.{k}": v for k, v in self.embedding.state_dict().items()}
        for i, group in enumerate(self.blocks):
            for k, v in group.state_dict().items():
                head, _, rest = k.partition(".")
                if i == 0:
                    out[f"linear.{rest}"] = v
                elif i == n - 1:
                    out[f"output_layer.{rest}"] = v
                else:
                    out[f"blocks.{i - 1}.{k}"] = v
        return out

    def synthesize_embedded(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents and class *embeddings* (DGP's class interpolation)."""
        return _synthesize(
            self.blocks[0][0],
            self.blocks[1:-1],
            self.blocks[-1][0],
            z,
            emb,
            self.z_chunk_size,
            self.bottom_width,
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"BigGAN expects latents (B, {self.dim_z}), got {tuple(z.shape)}")
        if labels is None:
            raise ValueError(f"BigGAN is class-conditional ({self.num_classes} classes): pass labels")
        return self.synthesize_embedded(z, self.embedding(labels))


def _internal_to_biggan(key: str, n: int) -> str:
    head, _, rest = key.partition(".")
    if head == "embedding":
        return f"shared.{rest}"
    i, _, tail = rest.partition(".")
    if int(i) == 0:
        return f"linear.{tail.partition('.')[2]}"
    if int(i) == n - 1:
        return f"output_layer.{tail.partition('.')[2]}"
    return f"blocks.{int(i) - 1}.{tail}"


def _biggan_to_internal(key: str, n: int) -> str:
    head, _, rest = key.partition(".")
    if head == "shared":
        return f"embedding.{rest}"
    if head == "linear":
        return f"blocks.0.0.{rest}"
    if head == "output_layer":
        return f"blocks.{n - 1}.0.{rest}"
    i, _, tail = rest.partition(".")
    return f"blocks.{int(i) + 1}.{tail}"


def _to_biggan_names(module, state_dict, prefix, local_metadata) -> None:
    n = len(module.blocks)
    own = {prefix + _internal_to_biggan(k[len(prefix) :], n): k for k in state_dict if k.startswith(prefix)}
    values = {new: state_dict.pop(old) for new, old in own.items()}
    state_dict.update(values)


def _from_biggan_names(module, state_dict, prefix, *args) -> None:
    own = [k for k in state_dict if k.startswith(prefix)]
    if not any(k[len(prefix) :].split(".")[0] in ("shared", "linear", "output_layer") for k in own):
        return  # already under the internal names
    n = len(module.blocks)
    values = {prefix + _biggan_to_internal(k[len(prefix) :], n): state_dict.pop(k) for k in own}
    state_dict.update(values)


# -- configuration from a state dict, strict loading ----------------------------------------------
def is_biggan_generator_state(state: Mapping) -> bool:
    return all(k in state for k in ("shared.weight", "linear.weight", "output_layer.2.weight"))


_D_KEYS = ("embed.weight", "linear.weight", "blocks.0.0.conv1.weight")


def is_biggan_discriminator_state(state: Mapping) -> bool:
    return all(k in state for k in _D_KEYS)


def _attention(state: Mapping, sizes: list[int]) -> tuple[int, ...]:
    return tuple(s for i, s in enumerate(sizes) if f"blocks.{i}.1.gamma" in state)


def _num_blocks(state: Mapping) -> int:
    return len({k.split(".")[1] for k in state if k.startswith("blocks.")})


def generator_config(state: Mapping[str, torch.Tensor]) -> dict:
    """:class:`BigGANGenerator` arguments read from a generator state dict's shapes."""
    if not is_biggan_generator_state(state):
        raise ValueError(
            "not a BigGAN generator state dict (needs shared.weight, linear.weight, output_layer)"
        )
    n_classes, shared_dim = state["shared.weight"].shape
    ch = int(state["output_layer.2.weight"].shape[1])
    n = _num_blocks(state)
    res = {len(v[0]): r for r, v in _G_ARCH.items()}.get(n)
    if res is None:
        raise ValueError(f"BigGAN generator with {n} blocks: no known resolution (32-512 px)")
    chunk = int(state["linear.weight"].shape[1])
    cond = int(state["blocks.0.0.bn1.gain.weight"].shape[1])
    if cond != shared_dim + chunk:
        raise ValueError(
            "only BigGAN with hierarchical z and a shared embedding is supported (as DGP releases it): "
            f"ccbn input {cond} != shared_dim {shared_dim} + z chunk {chunk}"
        )
    sizes = [8 * 2**i for i in range(n)]
    return {
        "ch": ch,
        "dim_z": chunk * (n + 1),
        "shared_dim": int(shared_dim),
        "n_classes": int(n_classes),
        "resolution": res,
        "attention": _attention(state, sizes),
    }


def discriminator_config(state: Mapping[str, torch.Tensor]) -> dict:
    """:class:`BigGANDiscriminator` arguments read from a discriminator state dict's shapes."""
    if not is_biggan_discriminator_state(state):
        raise ValueError("not a BigGAN discriminator state dict (needs embed.weight, linear.weight, blocks)")
    ch = int(state["blocks.0.0.conv1.weight"].shape[0])
    n = _num_blocks(state)
    res = {len(v): r for r, v in _D_ARCH.items()}.get(n)
    if res is None:
        raise ValueError(f"BigGAN discriminator with {n} blocks: no known resolution (64, 128, 256 px)")
    wide = state["blocks.1.0.conv1.weight"].shape[0] == state["blocks.1.0.conv2.weight"].shape[0]
    sizes = [res // 2 ** (i + 1) for i in range(n - 1)] + [res // 2 ** (n - 1)]
    return {
        "ch": ch,
        "n_classes": int(state["embed.weight"].shape[0]),
        "resolution": res,
        "attention": _attention(state, sizes),
        "wide": bool(wide),
    }


# DGP's InstanceNorm twins of each GBlock (``in1``/``in2``): BigGAN-PyTorch's own checkpoints predate them
# (DGP loads with strict=False for that); they are unused here, so their absence keeps IN's defaults
_OPTIONAL = re.compile(r"blocks\.\d+\.0\.in[12]\.(weight|bias)")


def _build(cls: type, config: dict, state: Mapping, what: str) -> nn.Module:
    architecture = f"the BigGAN architecture inferred from it ({config})"
    return build_strict(lambda: cls(**config), state, what, architecture, optional=_OPTIONAL.fullmatch)


def build_generator(state: Mapping[str, torch.Tensor]) -> BigGANGenerator:
    """A :class:`BigGANGenerator` configured from and strictly loaded with ``state`` (eval mode)."""
    return _build(BigGANGenerator, generator_config(state), state, "BigGAN generator state dict").eval()


def build_discriminator(state: Mapping[str, torch.Tensor]) -> BigGANDiscriminator:
    """A :class:`BigGANDiscriminator` configured from and strictly loaded with ``state`` (eval mode)."""
    return _build(
        BigGANDiscriminator, discriminator_config(state), state, "BigGAN discriminator state dict"
    ).eval()


def _read_state(path: Path, role: str) -> dict:
    from lcm.checkpoints import read_torch_file

    state = read_torch_file(path, f"BigGAN {role} file")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} is not a state dict of tensors: a BigGAN {role} must be a state dict such as "
            "DGP's G_ema.pth / D.pth"
        )
    return dict(state)


def biggan_prior(generator: BigGANGenerator, critic: BigGANDiscriminator | None = None) -> Prior:
    """Wrap BigGAN networks as a :class:`lcm.Prior` (Gaussian z, images in [0, 1], eval mode)."""
    if critic is not None and (
        critic.resolution != generator.resolution or critic.n_classes != generator.n_classes
    ):
        raise ValueError(
            f"BigGAN discriminator ({critic.resolution} px, {critic.n_classes} classes) does not match the "
            f"generator ({generator.resolution} px, {generator.n_classes} classes)"
        )
    gen = BigGANPriorGenerator(generator)
    prior = Prior(
        gen,
        latent_kind="gaussian",
        latent_shape=(generator.dim_z,),
        image_shape=(3, generator.resolution, generator.resolution),
        critic=critic,
        num_classes=generator.n_classes,
        kind="biggan",
    )
    return prior.eval()


def load_biggan_prior(
    generator_path: str | os.PathLike,
    critic_path: str | os.PathLike | None = None,
    map_location: str | torch.device = "cpu",
    state: Mapping | None = None,
) -> Prior:
    """BigGAN ``G_ema.pth`` (+ optional ``D.pth``, needed by DGP's critic loss) as a :class:`lcm.Prior`.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a file that is no BigGAN state dict of that role, or keys/shapes that do not match.
    """
    gpath = Path(generator_path)
    gstate = dict(state) if state is not None else _read_state(gpath, "generator")
    if not is_biggan_generator_state(gstate):
        raise ValueError(
            f"{str(gpath)!r} is not a BigGAN generator state dict (no shared/linear/output_layer)"
        )
    generator = build_generator(gstate)
    critic = None
    if critic_path is not None:
        cpath = Path(critic_path)
        dstate = _read_state(cpath, "discriminator")
        if not is_biggan_discriminator_state(dstate):
            gone = [k for k in _D_KEYS if k not in dstate]
            hint = ""
            if is_biggan_generator_state(dstate):
                hint = " (it is a generator: pass it as the prior)"
            elif len(gone) < len(_D_KEYS):  # a discriminator with keys missing: name them
                hint = f": missing key(s) {', '.join(map(repr, gone))} (a damaged or edited D.pth?)"
            raise ValueError(f"{str(cpath)!r} is not a BigGAN discriminator state dict{hint}")
        critic = build_discriminator(dstate)
    return biggan_prior(generator, critic).to(map_location)


def parameter_count(net: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in net.parameters())


# -- the registry entry of lcm.load_prior ---------------------------------------------------------
def _recognise(file: CheckpointFile) -> bool:
    if file.is_pickle_snapshot():
        return False
    state = file.state()
    return isinstance(state, Mapping) and is_biggan_generator_state(state)


def _explain(file: CheckpointFile) -> str | None:
    state = file.state()
    if isinstance(state, Mapping) and is_biggan_discriminator_state(state):
        return "a BigGAN discriminator (pass it as critic=, the G_ema.pth as the prior)"
    return None


def _load(file: CheckpointFile, map_location="cpu", critic: str | os.PathLike | None = None) -> Prior:
    return load_biggan_prior(file.path, critic, map_location, state=file.state())


register_architecture(
    Architecture(
        "biggan",
        "BigGAN generator state dicts (DGP's G_ema.pth; critic= its D.pth)",
        _recognise,
        _load,
        _explain,
    )
)
