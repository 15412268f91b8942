"""StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"),
written from the paper and the public description of NVIDIA's released networks.

Parameter and buffer names, shapes, gains and the order of operations match NVIDIA's released
``G_ema`` / ``D`` networks, so their state dicts load strictly (``lcm.architectures.snapshot`` reads the
snapshot pickles without executing them). Everything runs in float32: the ``num_fp16_res`` option is
accepted (it is part of the released configurations) and only changes rounding in the original.

* :class:`MappingNetwork`: 2nd-moment normalised ``z`` (and embedded one-hot ``c``), ``num_layers``
  equalised-lr FC layers (lr multiplier 0.01), truncation ``w_avg + psi (w - w_avg)``.
* :class:`SynthesisNetwork`: a learned 4x4 constant, per resolution two modulated / demodulated 3x3
  convolutions (the first upsampling by 2 through the [1, 3, 3, 1] FIR filter), per-pixel noise scaled
  by a learned strength, bias + leaky ReLU with gain sqrt(2) and optional clamping (``conv_clamp``),
  and skip-architecture ToRGB outputs summed after FIR upsampling.
* :class:`Discriminator`: residual blocks (FIR downsampling, skip path scaled by sqrt(1/2)), then
  minibatch standard deviation, a 3x3 conv, two FC layers and, for ``c_dim > 0``, a projection onto the
  mapped label. ``features`` returns each block's output (DGP's feature-matching loss reads them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Conv2dLayer",
    "Discriminator",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "fir_filter",
    "run_blocks",
    "upfirdn2d",
]

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2


def fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2-D separable low-pass filter ``outer(taps, taps) / sum`` (StyleGAN2's resampling filter)."""
    t = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(t, t)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    pad: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Zero-insertion upsampling by ``up``, padding ``(left, right, top, bottom)`` (negative crops),
    FIR filtering with ``f * gain`` (a true convolution), then keeping every ``down``-th sample.

    Shape:
        - x: ``(B, C, H, W)``; f: ``(kh, kw)``.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    px0, px1, py0, py1 = (int(p) for p in pad)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f * gain).to(x.dtype).flip([0, 1])
    x = F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _bias_act(x, b, act: str, gain: float, clamp: float | None) -> torch.Tensor:
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.dim() - 2)))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act == "relu":
        x = F.relu(x)
    elif act != "linear":
        raise ValueError(f"activation must be 'lrelu', 'relu' or 'linear', got {act!r}")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _def_gain(act: str) -> float:
    return SQRT2 if act in ("lrelu", "relu") else 1.0


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
    correlate: bool = True,
) -> torch.Tensor:
    """2-D convolution with FIR up- or downsampling by 2 (padding given at the upsampled size).

    ``correlate=False`` applies ``w`` as a true (flipped) convolution, as the released networks do in
    their upsampling layers.
    """
    o, i, kh, kw = w.shape
    fk = 0 if f is None else f.shape[-1]
    p0 = p1 = padding
    if up > 1:
        p0 += (fk + up - 1) // 2
        p1 += (fk - up) // 2
    if down > 1:
        p0 += (fk - down + 1) // 2
        p1 += (fk - down) // 2
    if not correlate:
        w = w.flip([2, 3])
    if up > 1 and down == 1:
        # transposed strided conv (= zero insertion + conv with the flipped kernel), then the FIR filter
        wt = w.flip([2, 3]).reshape(groups, o // groups, i, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * i, o // groups, kh, kw)
        q0, q1 = p0 - (kw - 1), p1 - (kw - up)
        t = max(min(-q0, -q1), 0)
        x = F.conv_transpose2d(x, wt, stride=up, padding=t, groups=groups)
        return upfirdn2d(x, f, pad=(q0 + t, q1 + t, q0 + t, q1 + t), gain=up * up)
    if down > 1 and up == 1:
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, pad=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, pad=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    raise ValueError(f"conv2d_resample supports up or down by an integer, not both (up={up}, down={down})")


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: weights scaled by ``lr_multiplier / sqrt(in)`` at run time."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        x = x.matmul(w.t())
        return _bias_act(x, b, self.activation, _def_gain(self.activation), None)


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(nn.Module):
    """``z`` (and one-hot ``c``) -> ``w``; broadcast to ``(B, num_ws, w_dim)`` unless ``num_ws`` is None.

    Args:
        z_dim, c_dim, w_dim: latent, label and code sizes (0 = no latent / no label).
        num_ws: how many copies of ``w`` to output (None: ``(B, w_dim)``).
        num_layers, embed_features, layer_features, activation, lr_multiplier: as released (8 layers,
            lr multiplier 0.01).
        w_avg_beta: whether a ``w_avg`` buffer exists (truncation centre; it is not updated here).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = (
            z_dim,
            c_dim,
            w_dim,
            num_ws,
            num_layers,
        )
        embed = 0 if c_dim == 0 else (w_dim if embed_features is None else embed_features)
        hidden = w_dim if layer_features is None else layer_features
        sizes = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed)
        for k in range(num_layers):
            layer = FullyConnectedLayer(
                sizes[k], sizes[k + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{k}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        broadcast: bool = True,
    ) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            if z is None or z.dim() != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"z must be (B, {self.z_dim}), got {None if z is None else tuple(z.shape)}")
            parts.append(_normalize_2nd_moment(z.float()))
        if self.c_dim > 0:
            if c is None or c.dim() != 2 or c.shape[1] != self.c_dim:
                raise ValueError(
                    f"c must be (B, {self.c_dim}) one-hot labels, got {None if c is None else tuple(c.shape)}"
                )
            parts.append(_normalize_2nd_moment(self.embed(c.float())))
        x = torch.cat(parts, dim=1)
        for k in range(self.num_layers):
            x = getattr(self, f"fc{k}")(x)
        if truncation_psi != 1:  # truncation trick (StyleGAN, Karras et al. 2019, Sec. 3.1 / B)
            if not hasattr(self, "w_avg"):
                raise ValueError("this mapping network has no w_avg: truncation is undefined")
            if truncation_cutoff is None or not broadcast or self.num_ws is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                xs = x.unsqueeze(1).repeat(1, self.num_ws, 1)
                xs[:, :truncation_cutoff] = self.w_avg.lerp(xs[:, :truncation_cutoff], truncation_psi)
                return xs
        if broadcast and self.num_ws is not None:
            x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated (style ``affine(w)``) and demodulated 3x3 conv, noise, bias, leaky ReLU, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _def_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        noise: torch.Tensor | None = None,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """``noise``: an explicit ``(B or 1, 1, res, res)`` noise map (overrides ``noise_mode``)."""
        b = x.shape[0]
        styles = self.affine(w)
        n = None
        if self.use_noise:
            if noise is not None:
                n = noise * self.noise_strength
            elif noise_mode == "random":
                n = torch.randn(b, 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype)
                n = n * self.noise_strength
            elif noise_mode == "const":
                n = self.noise_const * self.noise_strength
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
        x = _modulated_conv(
            x, self.weight, styles, True, self.up, self.padding, self.resample_filter, self.up == 1
        )
        if n is not None:
            x = x + n
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return _bias_act(x, self.bias.to(x.dtype), self.activation, self.act_gain * gain, clamp)


def _modulated_conv(x, weight, styles, demodulate, up, padding, f, correlate) -> torch.Tensor:
    """Per-sample weights ``weight * style`` (StyleGAN2 eq. 1), demodulated (eq. 3), as one grouped conv."""
    b = x.shape[0]
    o, i, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(b, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(b, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    out = conv2d_resample(
        x, w.reshape(-1, i, kh, kw), f, up=up, padding=padding, groups=b, correlate=correlate
    )
    return out.reshape(b, o, *out.shape[2:])


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 conv to image channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel_size: int = 1,
        conv_clamp: float | None = None,
        channels_last: bool = False,
    ):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = _modulated_conv(x, self.weight, styles, False, 1, 0, None, True)
        return _bias_act(x, self.bias.to(x.dtype), "linear", 1.0, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv0), conv1, ToRGB."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        architecture: str = "skip",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        **layer_kwargs,
    ):
        super().__init__()
        if architecture != "skip":
            raise ValueError(
                f"only the released 'skip' generator architecture is implemented, got {architecture!r}"
            )
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.num_conv = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, **layer_kwargs
        )
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def noise_layers(self) -> list[SynthesisLayer]:
        return [m for m in (getattr(self, "conv0", None), self.conv1) if m is not None and m.use_noise]

    def forward(self, x, img, ws, noise_mode: str = "const", noise: Sequence[torch.Tensor] | None = None):
        """``ws``: ``(B, num_conv + num_torgb, w_dim)``; ``noise``: one map per conv (or None)."""
        it = iter(ws.unbind(dim=1))
        nz = iter(noise) if noise is not None else None
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, next(it), noise_mode, None if nz is None else next(nz))
        x = self.conv1(x, next(it), noise_mode, None if nz is None else next(nz))
        if img is not None:
            img = upfirdn2d(img, self.resample_filter, up=2, pad=(2, 1, 2, 1), gain=4)
        y = self.torgb(x, next(it)).float()
        return x, (y if img is None else img + y)


class SynthesisNetwork(nn.Module):
    """W+ codes ``(B, num_ws, w_dim)`` -> images ``(B, C, R, R)`` in about [-1, 1].

    Channels per resolution ``min(channel_base // res, channel_max)``; blocks ``b4 ... b{R}``;
    ``num_ws = 2 log2(R) - 2`` (each block's convs, plus the last ToRGB).
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        **block_kwargs,
    ):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if img_resolution != 2**log2 or img_resolution < 4:
            raise ValueError(f"img_resolution must be a power of 2 >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(
                ch[r // 2] if r > 4 else 0, ch[r], w_dim, r, img_channels, r == img_resolution, **block_kwargs
            )
            self.num_ws += block.num_conv + (block.num_torgb if r == img_resolution else 0)
            setattr(self, f"b{r}", block)

    @property
    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.block_resolutions]

    def noise_shapes(self) -> list[tuple[int, int]]:
        """The ``(H, W)`` of every noise input, in order (latent side first)."""
        return [(m.resolution, m.resolution) for b in self.blocks for m in b.noise_layers()]

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "const", noise: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        return run_blocks(self.blocks, ws, noise_mode, noise)


def run_blocks(
    blocks: Sequence[SynthesisBlock],
    ws: torch.Tensor,
    noise_mode: str = "const",
    noise: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Synthesis through ``blocks`` (b4 first): W+ codes ``(B, num_ws, w_dim)`` -> images.

    ``noise``: one ``(B or 1, 1, H, W)`` map per noise input (``SynthesisNetwork.noise_shapes``), or None
    for ``noise_mode``.
    """
    num_ws = sum(b.num_conv for b in blocks) + blocks[-1].num_torgb
    w_dim = blocks[0].conv1.affine.weight.shape[1]
    if ws.dim() != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim):
        raise ValueError(f"ws must be (B, {num_ws}, {w_dim}), got {tuple(ws.shape)}")
    x = img = None
    k = n = 0
    for block in blocks:
        m = len(block.noise_layers())
        nb = None if noise is None else noise[n : n + m]
        x, img = block(x, img, ws[:, k : k + block.num_conv + block.num_torgb], noise_mode, nb)
        k += block.num_conv
        n += m
    return img


class Generator(nn.Module):
    """Mapping + synthesis; ``forward(z, c)`` = ``synthesis(mapping(z, c, psi))``."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
        **synthesis_extra,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, **{**(synthesis_kwargs or {}), **synthesis_extra}
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **(mapping_kwargs or {}))

    def forward(self, z, c=None, truncation_psi: float = 1.0, truncation_cutoff=None, noise_mode="const"):
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), noise_mode)


class Conv2dLayer(nn.Module):
    """Equalised-lr conv (weights scaled by ``1 / sqrt(fan_in)``) with FIR down/upsampling, bias, act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = _def_gain(activation)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = conv2d_resample(
            x, w.to(x.dtype), self.resample_filter, self.up, self.down, self.padding, correlate=self.up == 1
        )
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        b = None if self.bias is None else self.bias.to(x.dtype)
        return _bias_act(x, b, self.activation, self.act_gain * gain, clamp)


class DiscriminatorBlock(nn.Module):
    """Residual D block: (FromRGB at the top), conv0, strided conv1 (down 2), 1x1 skip, both * sqrt(1/2).

    ``architecture="orig"``: the same without the skip path.
    """

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        first_layer_idx: int = 0,
        architecture: str = "resnet",
        activation: str = "lrelu",
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
        use_fp16: bool = False,
        fp16_channels_last: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        if architecture not in ("resnet", "orig"):
            raise ValueError(f"discriminator architecture must be 'resnet' or 'orig', got {architecture!r}")
        self.in_channels, self.architecture = in_channels, architecture
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation=activation, conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation=activation, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation=activation,
            down=2,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img.float())
        if self.architecture == "orig":  # no residual path (the released CIFAR-10 configuration)
            return self.conv1(self.conv0(x))
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the per-group standard deviation of the features, averaged (Karras et al. 2018, Sec. 3).

    A batch whose size is not a multiple of the group size uses the largest common divisor as group
    (the released code requires divisibility).
    """

    def __init__(self, group_size: int | None, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else math.gcd(min(self.group_size, n), n)
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-stddev, 3x3 conv, FC, output FC (projection on ``cmap`` when conditional)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        activation: str = "lrelu",
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, 3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = x.float()
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:  # projection discriminator (Miyato & Koyama 2018)
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator; ``forward(img, c)`` -> logits ``(B, 1)``, images in [-1, 1]."""

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if img_resolution != 2**log2 or img_resolution < 8:
            raise ValueError(f"img_resolution must be a power of 2 >= 8, got {img_resolution}")
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        ch = {r: min(channel_base // r, channel_max) for r in [*self.block_resolutions, 4]}
        if cmap_dim is None:
            cmap_dim = ch[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        for r in self.block_resolutions:
            block = DiscriminatorBlock(
                ch[r] if r < img_resolution else 0, ch[r], ch[r // 2], r, **(block_kwargs or {}), **common
            )
            setattr(self, f"b{r}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(0, c_dim, cmap_dim, None, w_avg_beta=None, **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(ch[4], cmap_dim, 4, **(epilogue_kwargs or {}), **common)

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """Each residual block's output, image side first (DGP eq. 3 reads them)."""
        out, x = [], None
        for r in self.block_resolutions:
            x = getattr(self, f"b{r}")(x, img)
            out.append(x)
        return out

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(img)[-1]
        cmap = None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this discriminator is class-conditional (c_dim={self.c_dim}): pass c")
            cmap = self.mapping(None, c)
        return self.b4(x, cmap)
