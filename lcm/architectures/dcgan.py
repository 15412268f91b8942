"""The DCGAN of PyTorch's tutorial (``beginner_source/dcgan_faces_tutorial.py``; Radford et al. 2016),
loaded from its state dicts, as a :class:`lcm.Prior`.

The tutorial's generator is one ``nn.Sequential`` named ``main``: ``depth - 1`` times ConvTranspose2d
(4x4; stride 1 from the 1x1 latent, then stride 2) + BatchNorm2d + ReLU, then ConvTranspose2d + Tanh;
its discriminator is Conv2d (4x4, stride 2) + LeakyReLU(0.2), ``depth - 2`` times Conv2d + BatchNorm2d
+ LeakyReLU(0.2), then Conv2d (4x4, stride 1, to one channel) + Sigmoid. Every width (nz, ngf, ndf,
channels) and the depth (hence the resolution, ``4 * 2**(depth - 1)``) are read from the tensors'
shapes, within bounds, and the state dict must then match the rebuilt network key for key (strict).

A checkpoint is a bare state dict (``main.N.*`` keys, optionally under DataParallel's ``module.``) or
a dict that holds one under a usual name (``netG_state_dict``, ``state_dict``, ``G``, ...; see
:data:`GENERATOR_KEYS` / :data:`DISCRIMINATOR_KEYS`). A file holding both ``netG_state_dict`` and
``netD_state_dict`` (the tutorial's own checkpoints) gives a prior with its critic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lcm.architectures.registry import Architecture, CheckpointFile, register_architecture
from lcm.architectures.state_dicts import load_state_dict_strict
from lcm.prior import Prior

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "DCGANPriorGenerator",
    "build_discriminator",
    "build_generator",
    "dcgan_prior",
    "generator_config",
    "discriminator_config",
    "load_dcgan_prior",
    "recognise",
    "unwrap_state",
]

# where a checkpoint dict may keep the state dict of each network (first match wins)
GENERATOR_KEYS = ("netG_state_dict", "netG", "G", "generator", "gen", "state_dict", "model")
DISCRIMINATOR_KEYS = (
    "netD_state_dict",
    "netD",
    "D",
    "discriminator",
    "disc",
    "critic",
    "state_dict",
    "model",
)

MAX_DEPTH = 8  # 512 px
MAX_WIDTH = 8192  # nz, ngf * 2**k, ndf * 2**k
MAX_CHANNELS = 4
_KEY = re.compile(r"main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)")


# -- networks (the tutorial's layout, module for module) --------------------------------------------
class DCGANGenerator(nn.Module):
    """The tutorial's ``Generator`` with widths ``widths = [nz, c_1, ..., c_{depth-1}, nc]``."""

    def __init__(self, widths: list[int], bias: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        depth = len(widths) - 1
        for i in range(depth):
            cin, cout = widths[i], widths[i + 1]
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=bias))
            if i < depth - 1:
                layers += [nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)
        self.widths = [int(w) for w in widths]
        self.nz, self.channels, self.depth = self.widths[0], self.widths[-1], depth
        self.resolution = 4 * 2 ** (depth - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """The tutorial's ``Discriminator`` with widths ``widths = [nc, d_1, ..., d_{depth-1}, 1]``."""

    def __init__(self, widths: list[int], bias: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        depth = len(widths) - 1
        for i in range(depth):
            cin, cout = widths[i], widths[i + 1]
            last = i == depth - 1
            layers.append(nn.Conv2d(cin, cout, 4, 1 if last else 2, 0 if last else 1, bias=bias))
            if 0 < i < depth - 1:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.Sigmoid() if last else nn.LeakyReLU(0.2, inplace=True))
        self.main = nn.Sequential(*layers)
        self.widths = [int(w) for w in widths]
        self.channels, self.depth = self.widths[0], depth
        self.resolution = 4 * 2 ** (depth - 1)
        # feature blocks for DGP's critic loss: each conv (+ BN) + LeakyReLU; the score layer last
        starts = [0, *range(2, 3 * depth - 1, 3)]
        self.blocks = [self.main[a:b] for a, b in zip(starts, [*starts[1:], len(self.main)], strict=True)]

    def _check(self, x: torch.Tensor) -> None:
        want = (self.channels, self.resolution, self.resolution)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"DCGAN discriminator expects images (B, {want}), got {tuple(x.shape)}")

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the conv (+ BN) + LeakyReLU blocks (not the score layer), input in [-1, 1]."""
        self._check(x)
        out = []
        for block in self.blocks[:-1]:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The tutorial's output, ``sigmoid`` of the last conv, as ``(B,)``."""
        self._check(x)
        return self.main(x).flatten(1).squeeze(1)


class DCGANPriorGenerator(nn.Module):
    """The prior-facing generator: ``forward(z)`` with ``z`` of shape ``(B, nz)``, and ``blocks``, one per
    ConvTranspose2d (+ its BN + ReLU; the last with Tanh), latent side first, for progressive
    fine-tuning (DGP) and IAGAN's joint updates. It shares its modules with ``net``."""

    def __init__(self, net: DCGANGenerator):
        super().__init__()
        m = net.main
        self.blocks = nn.ModuleList([m[3 * i : 3 * i + 3] for i in range(net.depth - 1)] + [m[-2:]])
        self.nz = net.nz
        # (a slice of nn.Sequential keeps the indices of ``main`` as its children's names)
        self._block_of = {int(n): i for i, b in enumerate(self.blocks) for n, _ in b.named_children()}
        # state dicts under the tutorial's ``main.N`` names (they load into its ``Generator`` and back)
        self.register_state_dict_post_hook(self._to_main_names)
        self.register_load_state_dict_pre_hook(self._from_main_names)

    @staticmethod
    def _to_main_names(module, state, prefix, local_metadata) -> None:
        for key in [k for k in state if k.startswith(prefix + "blocks.")]:
            rest = key[len(prefix) + len("blocks.") :].split(".", 1)[1]  # "<layer>.<name>"
            state[f"{prefix}main.{rest}"] = state.pop(key)

    def _from_main_names(self, module, state, prefix, *args) -> None:
        for key in [k for k in state if k.startswith(prefix + "main.")]:
            layer, name = key[len(prefix) + len("main.") :].split(".", 1)
            if layer.isdigit() and int(layer) in self._block_of:
                state[f"{prefix}blocks.{self._block_of[int(layer)]}.{layer}.{name}"] = state.pop(key)

    def dcgan_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under the tutorial's ``main.N`` names (loads into its ``Generator``)."""
        return dict(self.state_dict())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() == 4 and z.shape[2:] == (1, 1):
            z = z.flatten(1)
        if z.dim() != 2 or z.shape[1] != self.nz:
            raise ValueError(f"DCGAN expects latents (B, {self.nz}), got {tuple(z.shape)}")
        x = z[:, :, None, None]
        for block in self.blocks:
            x = block(x)
        return x


# -- recognising and configuring from a state dict -------------------------------------------------
def _layer_keys(state: Mapping) -> dict[int, set[str]]:
    layers: dict[int, set[str]] = {}
    for k in state:
        m = _KEY.fullmatch(k)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
    return layers


def _conv_indices(state: Mapping) -> list[int]:
    return sorted(
        i
        for i, names in _layer_keys(state).items()
        if "weight" in names and getattr(state[f"main.{i}.weight"], "dim", lambda: 0)() == 4
    )


def is_generator_state(state: Mapping) -> bool:
    """A tutorial-layout DCGAN generator: ``main.0.weight`` 4-D and a BatchNorm at ``main.1``."""
    return _is_main(state) and "main.1.running_mean" in state and "main.2.weight" not in state


def is_discriminator_state(state: Mapping) -> bool:
    """A tutorial-layout DCGAN discriminator: convs at ``main.0`` and ``main.2``, nothing at ``main.1``."""
    return _is_main(state) and "main.2.weight" in state and not any(k.startswith("main.1.") for k in state)


def _is_main(state: Mapping) -> bool:
    w = state.get("main.0.weight")
    return (
        isinstance(w, torch.Tensor)
        and w.dim() == 4
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    )


def recognise(state: Mapping) -> str | None:
    """``"generator"`` / ``"discriminator"`` if ``state`` (bare or wrapped, see :func:`unwrap_state`)
    is a tutorial-layout DCGAN, else None."""
    for role in ("generator", "discriminator"):
        try:
            unwrap_state(state, role)
        except ValueError:
            continue
        return role
    return None


def unwrap_state(ckpt: Mapping, role: str = "generator") -> dict[str, torch.Tensor]:
    """The ``role`` network's bare state dict from a checkpoint dict (bare, under DataParallel's
    ``module.`` prefix, or held under one of :data:`GENERATOR_KEYS` / :data:`DISCRIMINATOR_KEYS`).

    Raises:
        ValueError: no DCGAN state dict of that role in ``ckpt``.
    """
    test = is_generator_state if role == "generator" else is_discriminator_state
    names = GENERATOR_KEYS if role == "generator" else DISCRIMINATOR_KEYS
    candidates = [ckpt] + [ckpt[k] for k in names if isinstance(ckpt.get(k), Mapping)]
    for cand in candidates:
        state = _strip_module(cand)
        if test(state):
            return state
    raise ValueError(
        f"no DCGAN {role} state dict found: expected the PyTorch DCGAN tutorial's 'main.N.*' keys, bare or "
        f"under one of {list(names)}"
    )


def _strip_module(state: Mapping) -> dict:
    keys = list(state)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _check_widths(widths: list[int], what: str) -> None:
    depth = len(widths) - 1
    if not 2 <= depth <= MAX_DEPTH:
        raise ValueError(f"{what} has {depth} conv layers; supported: 2..{MAX_DEPTH} (8..512 px)")
    if not all(1 <= w <= MAX_WIDTH for w in widths):
        raise ValueError(f"{what} widths {widths} out of range (1..{MAX_WIDTH})")


def generator_config(state: Mapping[str, torch.Tensor]) -> dict:
    """:class:`DCGANGenerator` arguments (``widths``, ``bias``) read from a generator state dict."""
    if not is_generator_state(state):
        raise ValueError("not a DCGAN generator state dict (needs main.0.weight and a BatchNorm at main.1)")
    convs = _conv_indices(state)
    want = list(range(0, 3 * len(convs), 3))
    if convs != want:
        raise ValueError(
            f"DCGAN generator state dict has conv weights at main.{convs}; the tutorial layout puts them at "
            f"main.{want} (ConvTranspose, BatchNorm, ReLU per layer): is a layer's weight missing?"
        )
    widths = [int(state["main.0.weight"].shape[0])] + [int(state[f"main.{i}.weight"].shape[1]) for i in convs]
    _check_widths(widths, "DCGAN generator")
    if widths[-1] > MAX_CHANNELS:
        raise ValueError(f"DCGAN generator outputs {widths[-1]} channels; supported: 1..{MAX_CHANNELS}")
    return {"widths": widths, "bias": "main.0.bias" in state}


def discriminator_config(state: Mapping[str, torch.Tensor]) -> dict:
    """:class:`DCGANDiscriminator` arguments (``widths``, ``bias``) read from a discriminator state dict."""
    if not is_discriminator_state(state):
        raise ValueError("not a DCGAN discriminator state dict (needs convs at main.0 and main.2)")
    convs = _conv_indices(state)
    want = [0, *range(2, 3 * len(convs) - 1, 3)]
    if convs != want:
        raise ValueError(
            f"DCGAN discriminator state dict has conv weights at main.{convs}; the tutorial layout puts them "
            f"at main.{want}: is a layer's weight missing?"
        )
    widths = [int(state["main.0.weight"].shape[1])] + [int(state[f"main.{i}.weight"].shape[0]) for i in convs]
    _check_widths(widths, "DCGAN discriminator")
    if widths[0] > MAX_CHANNELS or widths[-1] != 1:
        raise ValueError(
            f"DCGAN discriminator widths {widths}: need 1..{MAX_CHANNELS} input channels, 1 output"
        )
    return {"widths": widths, "bias": "main.0.bias" in state}


def _load_strict(net: DCGANGenerator | DCGANDiscriminator, state: Mapping, what: str) -> None:
    load_state_dict_strict(net, state, what, f"the DCGAN tutorial layout read from it (widths {net.widths})")


def build_generator(
    state: Mapping[str, torch.Tensor], what: str = "DCGAN generator state dict"
) -> DCGANGenerator:
    """A :class:`DCGANGenerator` configured from and strictly loaded with ``state`` (eval mode)."""
    net = DCGANGenerator(**generator_config(state))
    _load_strict(net, state, what)
    return net.eval()


def build_discriminator(
    state: Mapping[str, torch.Tensor], what: str = "DCGAN discriminator state dict"
) -> DCGANDiscriminator:
    """A :class:`DCGANDiscriminator` configured from and strictly loaded with ``state`` (eval mode)."""
    net = DCGANDiscriminator(**discriminator_config(state))
    _load_strict(net, state, what)
    return net.eval()


def dcgan_prior(generator: DCGANGenerator, critic: DCGANDiscriminator | None = None) -> Prior:
    """Wrap DCGAN networks as a :class:`lcm.Prior` (Gaussian ``z`` of shape ``(nz,)``, eval mode)."""
    if critic is not None and (
        critic.resolution != generator.resolution or critic.channels != generator.channels
    ):
        raise ValueError(
            f"DCGAN discriminator ({critic.channels} x {critic.resolution} px) does not match the generator "
            f"({generator.channels} x {generator.resolution} px)"
        )
    prior = Prior(
        DCGANPriorGenerator(generator),
        latent_kind="gaussian",
        latent_shape=(generator.nz,),
        image_shape=(generator.channels, generator.resolution, generator.resolution),
        critic=critic,
        kind="dcgan",
    )
    return prior.eval()


def read_state(path: str | os.PathLike, role: str) -> dict:
    """The checked ``torch.load(path, weights_only=True)`` (:func:`lcm.checkpoints.read_torch_file`: CRCs,
    views within the stored bytes, finite weights) as a dict, with one clear error for unreadable files."""
    from lcm.checkpoints import read_torch_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DCGAN {role} file {str(path)!r} does not exist (or is not a file)")
    ckpt = read_torch_file(path, f"DCGAN {role} file")
    if not isinstance(ckpt, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(ckpt).__name__}, not a DCGAN state dict")
    return dict(ckpt)


def load_dcgan_prior(
    path: str | os.PathLike,
    critic: str | os.PathLike | None = None,
    map_location: str | torch.device = "cpu",
    ckpt: Mapping | None = None,
) -> Prior:
    """A DCGAN generator file (+ optional discriminator file) as a :class:`lcm.Prior`.

    Without ``critic``, a discriminator kept in the same file (``netD_state_dict``) becomes the critic.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: no DCGAN state dict of that role, or keys / shapes that do not match.
    """
    ckpt = dict(ckpt) if ckpt is not None else read_state(path, "generator")
    try:
        gstate = unwrap_state(ckpt, "generator")
    except ValueError as err:
        hint = " (it is a discriminator: pass it as critic=)" if recognise(ckpt) == "discriminator" else ""
        raise ValueError(f"{str(path)!r}: {err}{hint}") from err
    generator = build_generator(gstate, f"{str(path)!r} DCGAN generator state dict")
    net_d = None
    if critic is not None:
        dckpt = read_state(critic, "discriminator")
        try:
            dstate = unwrap_state(dckpt, "discriminator")
        except ValueError as err:
            hint = " (it is a generator: pass it as the prior)" if recognise(dckpt) == "generator" else ""
            raise ValueError(f"{str(critic)!r}: {err}{hint}") from err
        net_d = build_discriminator(dstate, f"{str(critic)!r} DCGAN discriminator state dict")
    elif any(isinstance(ckpt.get(k), Mapping) for k in ("netD_state_dict", "netD", "D", "discriminator")):
        net_d = build_discriminator(unwrap_state(ckpt, "discriminator"), f"{str(path)!r} discriminator")
    return dcgan_prior(generator, net_d).to(map_location)


# -- the architecture registry (lcm.load_prior) ------------------------------------------------------
def _recognise(file: CheckpointFile) -> bool:
    if file.path.suffix == ".pkl":
        return False
    state = file.state()
    return isinstance(state, Mapping) and recognise(state) == "generator"


def _explain(file: CheckpointFile) -> str | None:
    state = file.state()
    if isinstance(state, Mapping) and recognise(state) == "discriminator":
        return "a DCGAN discriminator (pass it as critic=, the generator file as the prior)"
    return None


def _load(file: CheckpointFile, map_location="cpu", critic: str | os.PathLike | None = None) -> Prior:
    return load_dcgan_prior(file.path, critic, map_location, ckpt=file.state())


register_architecture(
    Architecture(
        "dcgan",
        "PyTorch DCGAN-tutorial generator state dicts (main.N.*, bare or under netG_state_dict / state_dict "
        "/ G; critic= its discriminator's file)",
        _recognise,
        _load,
        _explain,
    )
)
