"""Reading NVIDIA StyleGAN2-ADA snapshots (``network-snapshot-*.pkl``) without executing them.

A released snapshot is a pickle whose networks were saved through NVIDIA's ``torch_utils.persistence``:
each network is a call ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the class name, the
module's Python source, and the module's pickled state (``_parameters``, ``_buffers``, ``_modules``,
``_init_kwargs``, ...). ``pickle.load`` would execute that source. :class:`SafeUnpickler` instead
resolves only the few globals that rebuild tensors and plain containers, turns every persistence call
into an inert :class:`PersistentRecord` (the source text is kept as a string, never run), and refuses
any other global with :class:`UnsafeSnapshotError` naming it. Tensor storages are decoded with
``torch.load(..., weights_only=True)``.

The networks are then rebuilt by :mod:`lcm.architectures.stylegan2` from the records' init kwargs and
loaded strictly from the records' parameters and buffers.
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lcm.architectures import stylegan2 as sg2
from lcm.architectures.registry import Architecture, CheckpointFile, register_architecture
from lcm.architectures.state_dicts import load_state_dict_strict

__all__ = [
    "PersistentRecord",
    "SafeUnpickler",
    "UnsafeSnapshotError",
    "build_networks",
    "load_snapshot",
    "load_state_dict_file",
    "read_snapshot",
    "record_state_dict",
]


class UnsafeSnapshotError(pickle.UnpicklingError):
    """The pickle names a global the safe loader does not allow (it was not called)."""


@dataclass
class PersistentRecord:
    """An inert stand-in for a network pickled through ``torch_utils.persistence``.

    Attributes:
        class_name: e.g. ``"Generator"``; ``module_src``: the embedded source, as text only.
        state: the module's pickled ``__dict__`` (parameters, buffers, submodules as records, kwargs).
    """

    class_name: str
    module_src: str
    state: dict
    version: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()))

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs", {}))


def _reconstruct_persistent_obj(meta) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict):
        raise UnsafeSnapshotError(
            "a torch_utils.persistence record that is not a pickled class instance (type "
            f"{meta.get('type') if isinstance(meta, dict) else type(meta).__name__!r}) is not supported"
        )
    return PersistentRecord(
        class_name=str(meta.get("class_name")),
        module_src=str(meta.get("module_src", "")),
        state=meta["state"],
        version=meta.get("version"),
    )


def _load_storage_bytes(b: bytes):
    """``torch.storage._load_from_bytes`` without its unrestricted ``torch.load``."""
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafeSnapshotError(f"storage bytes expected, got {type(b).__name__}")
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _rebuild_tensor_v2(
    storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafeSnapshotError(f"tensor rebuild from a {type(storage).__name__}, not a storage")
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    raw = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    t = torch.empty(0, dtype=dtype).set_(raw, int(offset), tuple(size), tuple(stride))
    return t


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    if not isinstance(data, torch.Tensor):
        raise UnsafeSnapshotError(f"parameter rebuild from a {type(data).__name__}, not a tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


class _DType:
    """A numpy dtype described by name (its pickled ``__setstate__`` tuple is checked, not trusted)."""

    def __init__(self, name, align=False, copy=False):
        self.name, self.order = str(name), "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def resolve(self) -> np.dtype:
        dt = np.dtype(self.name)
        if dt.kind not in "biufc":
            raise UnsafeSnapshotError(f"numpy dtype {self.name!r} is not a plain number type")
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DType) or not isinstance(data, (bytes, bytearray)):
        raise UnsafeSnapshotError("numpy scalar reconstruction with unexpected arguments")
    return np.frombuffer(data, dtype=dtype.resolve(), count=1)[0].item()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _DType,
    # configuration dicts (training_set_kwargs, *_kwargs) are dnnlib.EasyDict: read as plain dicts
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only tensor / storage / container rebuilding (see module docstring)."""

    def find_class(self, module: str, name: str):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise UnsafeSnapshotError(
                f"refusing to load global {module}.{name}: a StyleGAN2-ADA snapshot needs only tensor "
                "rebuilding and network records; this file carries other code (nothing was executed)"
            )
        return fn

    def persistent_load(self, pid):
        raise UnsafeSnapshotError(f"persistent id {pid!r} is not allowed in a snapshot")


def read_snapshot(path: str | os.PathLike) -> dict:
    """The snapshot's top-level dict (``G``, ``D``, ``G_ema``, ... as :class:`PersistentRecord`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"snapshot {str(path)!r} does not exist (or is not a file)")
    with open(path, "rb") as fh:
        try:
            data = SafeUnpickler(fh).load()
        except UnsafeSnapshotError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
            raise ValueError(
                f"{str(path)!r} is not a readable snapshot pickle (truncated or corrupt?): {err}"
            ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} holds a {type(data).__name__}, not a StyleGAN2-ADA snapshot dict")
    return data


def record_state_dict(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a record tree: persistent parameters and buffers, by dotted name."""
    out: dict[str, torch.Tensor] = {}
    state = record.state
    skip = set(state.get("_non_persistent_buffers_set", ()) or ())
    for kind in ("_parameters", "_buffers"):
        for k, v in (state.get(kind) or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = v.detach() if isinstance(v, torch.Tensor) else v
    for k, sub in (state.get("_modules") or {}).items():
        if isinstance(sub, PersistentRecord):
            out.update(record_state_dict(sub, f"{prefix}{k}."))
        elif sub is not None:
            raise ValueError(f"submodule {prefix}{k} is a {type(sub).__name__}, not a network record")
    return out


_CLASSES = {"Generator": sg2.Generator, "Discriminator": sg2.Discriminator}


def _build(record: PersistentRecord, what: str, device="cpu") -> torch.nn.Module:
    cls = _CLASSES.get(record.class_name)
    if (
        cls is None
        or (what == "G" and cls is not sg2.Generator)
        or (what == "D" and cls is not sg2.Discriminator)
    ):
        raise ValueError(
            f"snapshot entry {what} is a {record.class_name!r}; expected a StyleGAN2-ADA network"
        )
    try:
        with torch.device("meta"):
            net = cls(*record.init_args, **record.init_kwargs)
    except TypeError as err:
        raise ValueError(
            f"snapshot {what} ({record.class_name}) has init kwargs this StyleGAN2-ADA implementation "
            f"does not take (a StyleGAN3 / StyleGAN-XL snapshot?): {err}"
        ) from err
    state = record_state_dict(record)
    _load_strict(net, state, f"snapshot {what}")
    return net.to(device).eval().requires_grad_(False)


def _load_strict(net: torch.nn.Module, state: dict, what: str) -> None:
    load_state_dict_strict(
        net,
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
        what,
        "the StyleGAN2-ADA architecture of its config",
        hint="a StyleGAN3 / XL model, or a wrong config?",
        assign=True,
    )


def build_networks(snapshot: dict, device="cpu", generator_key: str = "G_ema"):
    """``(G, D or None)`` built from a snapshot dict of :func:`read_snapshot`."""
    if generator_key not in snapshot:
        raise ValueError(f"the snapshot has no {generator_key!r} (keys: {sorted(snapshot)})")
    g = _build(snapshot[generator_key], "G", device)
    d = snapshot.get("D")
    return g, (_build(d, "D", device) if isinstance(d, PersistentRecord) else None)


def load_snapshot(path: str | os.PathLike, device="cpu", generator_key: str = "G_ema"):
    """``(G_ema, D)`` of a ``network-snapshot-*.pkl`` (D None if absent), loaded without executing it."""
    return build_networks(read_snapshot(path), device, generator_key)


def load_state_dict_file(
    path: str | os.PathLike, config: dict | str | os.PathLike | None = None, device="cpu"
):
    """``G`` from a ``G_ema.state_dict()`` file (``torch.load(weights_only=True)``) plus its config.

    ``config``: the ``Generator`` init kwargs (a dict or a JSON file), or None to read ``config`` from the
    file itself when it is ``{"G": state_dict, "config": kwargs}`` (``D`` there is loaded too).

    Returns:
        ``(G, D or None)``.
    """
    obj = torch.load(Path(path), weights_only=True, map_location="cpu")
    if isinstance(config, (str, os.PathLike)):
        config = json.loads(Path(config).read_text())
    g_state, d_state, d_config = obj, None, None
    if isinstance(obj, dict) and "G" in obj and isinstance(obj["G"], dict):
        g_state, d_state = obj["G"], obj.get("D")
        file_cfg = obj.get("config") or {}
        config = config or file_cfg.get("G", file_cfg)
        d_config = file_cfg.get("D")
    if not isinstance(config, dict):
        raise ValueError(
            f"{str(path)!r} is a bare state dict: pass its Generator config (a dict or JSON file)"
        )
    with torch.device("meta"):
        g = sg2.Generator(**config)
    _load_strict(g, g_state, f"{str(path)!r} G")
    d = None
    if d_state is not None and d_config is not None:
        with torch.device("meta"):
            d = sg2.Discriminator(**d_config)
        _load_strict(d, d_state, f"{str(path)!r} D")
        d = d.to(device).eval().requires_grad_(False)
    return g.to(device).eval().requires_grad_(False), d


def load_stylegan2_prior(
    path: str | os.PathLike,
    map_location="cpu",
    truncation_psi: float = 1.0,
    config: dict | str | os.PathLike | None = None,
):
    """A :class:`lcm.Prior` from a StyleGAN2-ADA snapshot ``.pkl`` (read without executing it), or from
    a ``G_ema.state_dict()`` file with its ``Generator`` config (see :func:`load_state_dict_file`).

    Args:
        path: ``network-snapshot-*.pkl`` or a state-dict file.
        map_location: device of the networks.
        truncation_psi: truncation of the mapping network's codes towards ``w_avg`` (1: none).
        config: the generator's init kwargs, for a bare state-dict file only.
    """
    from lcm.architectures.stylegan2_prior import stylegan2_prior

    path = Path(path)
    if path.suffix == ".pkl":
        if config is not None:
            raise ValueError(
                "a snapshot .pkl carries its own config: pass config only with a state-dict file"
            )
        g, d = load_snapshot(path, map_location)
    else:
        g, d = load_state_dict_file(path, config, map_location)
    return stylegan2_prior(g, d, truncation_psi)


# -- the registry entry of lcm.load_prior ---------------------------------------------------------
def _recognise(file: CheckpointFile) -> bool:
    """A snapshot ``.pkl``; a state-dict file given with ``config=``; or a ``{"G", "config"}`` bundle."""
    if file.path.suffix == ".pkl" or "config" in file.options:
        return True
    state = file.state()
    return isinstance(state, dict) and isinstance(state.get("G"), dict) and "config" in state


def _load(file: CheckpointFile, map_location="cpu", truncation_psi: float = 1.0, config=None):
    return load_stylegan2_prior(file.path, map_location, truncation_psi, config)


register_architecture(
    Architecture(
        "stylegan2",
        "StyleGAN2-ADA snapshots (network-snapshot-*.pkl, read without executing them; truncation_psi=) "
        "and G_ema state dicts with config=",
        _recognise,
        _load,
    )
)
