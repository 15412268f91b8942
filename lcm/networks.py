"""Prior networks: DCGAN-style generator, WGAN-GP critic, mapping network and the batched latent ConvNet.

All networks work in ``[-1, 1]`` image range (``lcm.prior.to_unit`` converts).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Norm = Literal["batch", "instance", "none"]


def _num_doublings(src: int, dst: int, what: str) -> int:
    """Number of x2 steps from spatial size ``src`` to ``dst`` (must be a power-of-two ratio)."""
    if src <= 0 or dst % src != 0 or (dst // src) & (dst // src - 1):
        raise ValueError(f"{what}: size {dst} must be {src} times a power of two")
    return int(math.log2(dst // src))


def _norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {kind!r}")


class Generator(nn.Module):
    """DCGAN-style generator (Radford et al.; the LCM paper's GAN/GLO/LCM generator family).

    A vector latent ``(B, d)`` enters through a linear layer to a 4x4 map; a map latent
    ``(B, C, h, w)`` through a 3x3 convolution. Transposed-convolution blocks then double the size
    up to ``resolution``, halving the width each time, and a 3x3 convolution + tanh gives the image.
    With ``num_classes > 0`` a learned class embedding is concatenated to the latent (as extra
    channels for a map latent).

    Args:
        latent_shape: ``(d,)`` for a vector latent or ``(C, h, w)`` for a map latent (square).
        out_channels: image channels.
        resolution: output size (4 x a power of two for vector latents; h x a power of two for maps).
        width: channels of the last (image-side) block; the latent side has ``width * 2**(k-1)``.
        num_classes: 0 for unconditional.
        norm: ``"batch"`` (default), ``"instance"`` or ``"none"``.
        max_width: cap on the channel count of any block.

    Shape:
        - w: ``(B, *latent_shape)``; labels: ``(B,)`` int64 or None.
        - output: ``(B, out_channels, resolution, resolution)`` in ``[-1, 1]``.
    """

    def __init__(
        self,
        latent_shape: tuple[int, ...] = (128,),
        out_channels: int = 1,
        resolution: int = 32,
        width: int = 64,
        num_classes: int = 0,
        norm: Norm = "batch",
        max_width: int = 512,
    ):
        super().__init__()
        self.latent_shape = tuple(int(s) for s in latent_shape)
        if len(self.latent_shape) not in (1, 3):
            raise ValueError(f"latent_shape must be (d,) or (C, h, w), got {latent_shape}")
        self.out_channels, self.resolution, self.num_classes = out_channels, resolution, num_classes
        vector = len(self.latent_shape) == 1
        start = 4 if vector else self.latent_shape[1]
        if not vector and self.latent_shape[1] != self.latent_shape[2]:
            raise ValueError(f"map latent must be square, got {latent_shape}")
        n_up = _num_doublings(start, resolution, "Generator resolution")
        widths = [min(width * 2 ** (n_up - i), max_width) for i in range(n_up + 1)]
        self.embed_dim = 0
        if num_classes:
            self.embed_dim = min(self.latent_shape[0], 32) if vector else 8
            self.embedding = nn.Embedding(num_classes, self.embed_dim)
        in_dim = self.latent_shape[0] + self.embed_dim
        if vector:
            stem = nn.Sequential(
                nn.Linear(in_dim, widths[0] * 16),
                nn.Unflatten(1, (widths[0], 4, 4)),
                _norm2d(norm, widths[0]),
            )
        else:
            stem = nn.Sequential(nn.Conv2d(in_dim, widths[0], 3, padding=1), _norm2d(norm, widths[0]))
        stem.append(nn.ReLU(inplace=True))
        blocks = [stem]
        for i in range(n_up):
            blocks.append(
                nn.Sequential(
                    nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1),
                    _norm2d(norm, widths[i + 1]),
                    nn.ReLU(inplace=True),
                )
            )
        blocks.append(nn.Sequential(nn.Conv2d(widths[-1], out_channels, 3, padding=1), nn.Tanh()))
        self.blocks = nn.ModuleList(blocks)

    def condition(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Input of ``blocks[0]``: the latent, with the class embedding concatenated when conditional."""
        if w.shape[1:] != self.latent_shape:
            raise ValueError(
                f"generator expects latents of shape (B, {self.latent_shape}), got {tuple(w.shape)}"
            )
        if not self.num_classes:
            return w
        if labels is None:
            raise ValueError(f"class-conditional generator ({self.num_classes} classes): pass labels")
        e = self.embedding(labels)
        if w.dim() == 4:
            e = e[:, :, None, None].expand(-1, -1, *w.shape[2:])
        return torch.cat([w, e], dim=1)

    def forward(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.condition(w, labels)
        for block in self.blocks:
            h = block(h)
        return h


class Critic(nn.Module):
    """WGAN-GP critic (Gulrajani et al. 2017): strided convolutions, no BatchNorm.

    The gradient penalty is per-sample, so batch-coupled normalisation is not allowed; ``norm="layer"``
    uses ``GroupNorm(1, C)`` (layer norm over C, H, W), as the paper recommends. Class conditioning is
    a projection discriminator (Miyato & Koyama 2018): ``score += <embed(y), h>``.

    Shape:
        - x: ``(B, in_channels, resolution, resolution)`` in ``[-1, 1]``; labels ``(B,)`` or None.
        - output: ``(B,)`` scores; ``features(x)``: list with each block's output.
    """

    def __init__(
        self,
        in_channels: int = 1,
        resolution: int = 32,
        width: int = 64,
        num_classes: int = 0,
        norm: Literal["layer", "none"] = "layer",
        max_width: int = 512,
    ):
        super().__init__()
        if norm not in ("layer", "none"):
            raise ValueError(
                f"critic norm must be 'layer' or 'none' (no BatchNorm under WGAN-GP), got {norm!r}"
            )
        self.in_channels, self.resolution, self.num_classes = in_channels, resolution, num_classes
        n_down = _num_doublings(4, resolution, "Critic resolution")
        widths = [min(width * 2**i, max_width) for i in range(n_down + 1)]
        blocks = [nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1), nn.LeakyReLU(0.2))]
        for i in range(n_down):
            layers = [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)]
            if norm == "layer":
                layers.append(nn.GroupNorm(1, widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        feat = widths[-1] * 16
        self.head = nn.Linear(feat, 1, bias=False)  # a bias cancels in the WGAN loss and the penalty
        if num_classes:
            self.embedding = nn.Embedding(num_classes, feat)
            # the projection <embed(y), h> is a second linear head on h: start it at the head's scale
            # (nn.Linear's U(-1/sqrt(feat), 1/sqrt(feat))). nn.Embedding's N(0, 1) rows have norm sqrt(feat)
            # (45 at feat=2048), ~80x the head's, and made the first gradient penalty ~3e4 instead of ~1.
            bound = 1.0 / feat**0.5
            nn.init.uniform_(self.embedding.weight, -bound, bound)

    def _check(self, x: torch.Tensor) -> None:
        want = (self.in_channels, self.resolution, self.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"critic expects images (B, {want}), got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        self._check(x)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)[-1].flatten(1)
        score = self.head(h).squeeze(1)
        if self.num_classes:
            if labels is None:
                raise ValueError(f"class-conditional critic ({self.num_classes} classes): pass labels")
            score = score + (self.embedding(labels) * h).sum(1)
        return score


class MappingNetwork(nn.Module):
    """MLP ``z -> w`` (StyleGAN-style mapping; CRI clusters in w-space), optionally class-conditional.

    Shape:
        - z: ``(B, latent_dim)``; labels ``(B,)`` or None. Output ``(B, w_dim)``.
    """

    def __init__(self, latent_dim: int, w_dim: int, num_layers: int, num_classes: int = 0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_classes = num_classes
        in_dim = latent_dim
        if num_classes:
            self.embedding = nn.Embedding(num_classes, latent_dim)
            in_dim += latent_dim
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(in_dim if i == 0 else w_dim, w_dim))
            if i < num_layers - 1:
                layers.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError(f"class-conditional mapping ({self.num_classes} classes): pass labels")
            z = torch.cat([z, self.embedding(labels)], dim=1)
        return self.net(z)


class LatentConvNet(nn.Module):
    """The per-image latent ConvNets f_phi of LCM (eqs. 1-2), all evaluated as one batched computation.

    ``f`` is a stack of 3x3 convolutions (LeakyReLU between, linear output) from the fixed noise
    ``s`` of shape ``noise_shape`` to a map of ``out_shape``; when the noise is smaller than the
    output, nearest x2 upsampling precedes the first convolutions. Image ``i``'s weights are the flat
    vector ``phi_i`` (``num_params`` entries, in ``[-box, box]`` -- LCM eq. 1): the convolution
    kernels and biases ARE the entries of ``phi``, so the box bounds the ConvNet's weights as in the
    paper (``phi_i^j in [-0.01, 0.01]``). Each convolution is followed by a fixed, parameter-free
    scaling by the He-style gain ``sqrt(2 / fan_in) / box`` (part of the architecture f, which the
    paper leaves open; our choice, as equalised learning rate, Karras et al.), so that signals keep
    their scale through weights this small. ``conv(h; phi) * gain`` equals a convolution with weights
    ``gain * phi``, so models trained before this wording keep their outputs.

    A batch of B ConvNets runs as ONE grouped convolution per layer over ``B * C`` channels.
    :meth:`forward_single` is the per-image reference (one ConvNet, ungrouped).

    Shape:
        - phi: ``(B, num_params)``; noise: ``noise_shape`` or ``(B, *noise_shape)``.
        - output: ``(B, *out_shape)``.
    """

    def __init__(
        self,
        noise_shape: tuple[int, int, int] = (8, 4, 4),
        out_shape: tuple[int, int, int] = (16, 8, 8),
        hidden: tuple[int, ...] = (16, 16),
        box: float = 0.01,
        kernel_size: int = 3,
    ):
        super().__init__()
        self.noise_shape = tuple(int(s) for s in noise_shape)
        self.out_shape = tuple(int(s) for s in out_shape)
        if len(self.noise_shape) != 3 or len(self.out_shape) != 3:
            raise ValueError("noise_shape and out_shape must be (C, H, W)")
        if box <= 0:
            raise ValueError(f"box must be > 0, got {box}")
        n_up = _num_doublings(self.noise_shape[1], self.out_shape[1], "LatentConvNet out_shape")
        if _num_doublings(self.noise_shape[2], self.out_shape[2], "LatentConvNet out_shape") != n_up:
            raise ValueError(f"noise {noise_shape} and output {out_shape} must scale equally in H and W")
        chans = [self.noise_shape[0], *hidden, self.out_shape[0]]
        if n_up > len(chans) - 1:
            raise ValueError(f"{n_up} x2 upsamplings need at least {n_up} layers; add entries to hidden")
        self.box, self.kernel_size = float(box), kernel_size
        # (c_in, c_out, upsample_before, gain) per layer
        self.layers = [
            (cin, cout, i < n_up, math.sqrt(2.0 / (cin * kernel_size**2)) / box)
            for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:], strict=True))
        ]
        self.num_params = sum(cout * cin * kernel_size**2 + cout for cin, cout, _, _ in self.layers)

    def extra_repr(self) -> str:
        return f"noise={self.noise_shape}, out={self.out_shape}, num_params={self.num_params}, box={self.box}"

    def _split(self, phi: torch.Tensor):
        """Yield (weight (B, c_out, c_in, k, k), bias (B, c_out)) per layer: entries of ``phi`` (the box)."""
        k, off = self.kernel_size, 0
        for cin, cout, _, _ in self.layers:
            nw = cout * cin * k * k
            w = phi[:, off : off + nw].reshape(-1, cout, cin, k, k)
            b = phi[:, off + nw : off + nw + cout]
            off += nw + cout
            yield w, b

    def _check(self, phi: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if phi.dim() != 2 or phi.shape[1] != self.num_params:
            raise ValueError(f"phi must be (B, {self.num_params}), got {tuple(phi.shape)}")
        if tuple(noise.shape[-3:]) != self.noise_shape or noise.dim() not in (3, 4):
            raise ValueError(
                f"noise must be {self.noise_shape} or (B, *{self.noise_shape}), got {tuple(noise.shape)}"
            )
        noise = noise.to(phi.dtype)
        if noise.dim() == 3:
            noise = noise.unsqueeze(0).expand(phi.shape[0], -1, -1, -1)
        return noise

    def forward(self, phi: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        noise = self._check(phi, noise)
        n = phi.shape[0]
        h = noise.reshape(1, n * self.noise_shape[0], *self.noise_shape[1:])
        last = len(self.layers) - 1
        for i, ((cin, cout, up, gain), (w, b)) in enumerate(zip(self.layers, self._split(phi), strict=True)):
            if up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            w = w.reshape(n * cout, cin, *w.shape[3:])
            h = (
                F.conv2d(h, w, b.reshape(-1), padding="same", groups=n) * gain
            )  # LCM eq. 1 weights, fixed gain
            if i < last:
                h = F.leaky_relu(h, 0.2)
        return h.reshape(n, *self.out_shape)

    def forward_single(self, phi: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One image's ConvNet, no grouping (reference for the batched path and for benchmarks).

        Shape:
            - phi: ``(num_params,)``; noise: ``noise_shape``. Output: ``out_shape``.
        """
        noise = self._check(phi[None], noise)
        h = noise
        last = len(self.layers) - 1
        for i, ((_, _, up, gain), (w, b)) in enumerate(zip(self.layers, self._split(phi[None]), strict=True)):
            if up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = F.conv2d(h, w[0], b[0], padding="same") * gain
            if i < last:
                h = F.leaky_relu(h, 0.2)
        return h[0]
