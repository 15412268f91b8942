"""genprior's own checkpoints: the ``.ckpt`` files ``python -m lcm fit`` writes for :class:`lcm.WGANGP`,
:class:`lcm.GLO`, :class:`lcm.LCM` and :class:`lcm.AutoEncoder` (recognised by their ``genprior_kind``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from lcm.architectures.registry import Architecture, CheckpointFile, register_architecture

__all__ = ["load_lightning_prior"]


def _recognise(file: CheckpointFile) -> bool:
    if file.is_pickle_snapshot():  # a pickle snapshot, not a torch file
        return False
    state = file.state()
    return isinstance(state, dict) and "genprior_kind" in state


def _explain(file: CheckpointFile) -> str | None:
    state = file.state()
    if isinstance(state, dict) and "state_dict" in state and "genprior_kind" not in state:
        return "a Lightning checkpoint of another model (it has no 'genprior_kind' entry)"
    return None


def _trained_latents(state: dict, memmap: str | None, path: Path) -> torch.Tensor | None:
    """The per-image latent table of a GLO/LCM checkpoint (in the state dict or its memmap file)."""
    if "table.weight" in state:
        return state["table.weight"].float()
    if memmap and Path(memmap).is_file():
        import numpy as np

        return torch.from_numpy(np.load(memmap, mmap_mode="r").astype(np.float32))
    if memmap:
        warnings.warn(
            f"{str(path)!r}: latent memmap {memmap!r} not found; sampling falls back to the uniform "
            "latent set (pass the .npy next to the checkpoint to sample like the training data)",
            stacklevel=4,
        )
    return None


# the hyper-parameters that size the networks, and what our modules support (a file cannot ask for more)
_BOUNDS = {
    "channels": (1, 16), "resolution": (4, 4096), "num_classes": (0, 100_000), "latent_dim": (1, 1 << 16),
    "width": (1, 8192), "critic_width": (1, 8192), "encoder_width": (1, 8192), "mapping_layers": (0, 64),
    "levels": (0, 16), "latent_shape": (1, 4096), "noise_shape": (1, 4096), "hidden": (1, 8192),
}  # fmt: skip


def _check_hparams(hparams: dict, state: dict, what: str, build) -> None:
    """Refuse network-sizing hyper-parameters outside :data:`_BOUNDS`, then build the module on the meta
    device (no memory) and refuse it unless its state dict has the stored tensors' keys and shapes: nothing
    is allocated for a network the file's weights do not fill."""

    def bad(msg: str) -> ValueError:
        return ValueError(f"{what}: {msg}; refusing to build it (a damaged or hostile checkpoint)")

    for key, (lo, hi) in _BOUNDS.items():
        value = hparams.get(key)
        values = value if isinstance(value, (list, tuple)) else [value]
        if value is None or (isinstance(value, (list, tuple)) and len(value) <= 32 and not value):
            continue
        if len(values) > 32 or not all(
            isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in values
        ):
            raise bad(f"hyper-parameter {key}={value!r} is outside [{lo}, {hi}]")
    try:
        with torch.device("meta"):
            own = build().state_dict()
    except (TypeError, ValueError, RuntimeError):
        return  # hyper-parameters the module refuses: the real build below says so
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        shown = [*missing[:3], *unexpected[:3], *(f"{k} (file {tuple(state[k].shape)}, hyper-parameters "
                 f"{tuple(own[k].shape)})" for k in wrong[:3])]  # fmt: skip
        raise bad(
            f"its hyper-parameters build a network whose weights are not the stored ones ({len(missing)} "
            f"missing, {len(unexpected)} unexpected, {len(wrong)} wrong-shape keys: {', '.join(shown)})"
        )


def load_lightning_prior(file: CheckpointFile, map_location="cpu"):
    """The prior of a genprior checkpoint (the module rebuilt from its hyper-parameters, loaded strictly)."""
    import lcm.autoencoder  # noqa: F401 - registers the "ae" kind in MODULES
    from lcm.modules import FORMAT_VERSION, MODULES

    path, ckpt = file.path, file.state()
    kind = ckpt["genprior_kind"]
    if kind not in MODULES:
        raise ValueError(
            f"{str(path)!r} is a genprior checkpoint of unknown kind {kind!r}; known: {list(MODULES)}"
        )
    if ckpt.get("genprior_format", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} was written by a newer genprior (format {ckpt['genprior_format']})")
    hparams = {k: v for k, v in ckpt.get("hyper_parameters", {}).items() if not k.startswith("_")}
    # the prior needs no per-image latent table: build the module without it
    hparams.pop("num_images", None)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("table.")}
    memmap = hparams.pop("latent_memmap", None)
    _check_hparams(hparams, state, f"{str(path)!r} ({kind})", lambda: MODULES[kind](**hparams))
    try:  # a checkpoint relabelled with another kind fits neither that kind's hparams nor its weights
        module = MODULES[kind](**hparams)
        module.load_state_dict(state, strict=True)
    except (TypeError, RuntimeError) as err:
        raise ValueError(
            f"{str(path)!r} says it is a {kind!r} checkpoint, but its hyper-parameters or weights are not "
            f"those of {MODULES[kind].__name__} (was 'genprior_kind' edited?): {err}"
        ) from err
    prior = module.to_prior().to(map_location).eval()
    table = _trained_latents(ckpt["state_dict"], memmap, path)
    if table is not None and prior.latent_kind in ("sphere", "convnet"):
        prior.fit_latent_distribution(table.view(-1, *prior.latent_shape))
    return prior


register_architecture(
    Architecture(
        "lightning",
        "genprior checkpoints of python -m lcm fit (WGAN-GP, GLO, LCM, AE .ckpt)",
        _recognise,
        load_lightning_prior,
        _explain,
    )
)
