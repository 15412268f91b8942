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
from lcm.checkpoints import check_finite, read_torch_file, view_problem

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


class UnsafeSnapshotError(pickle.UnpicklingError, ValueError):
    """The pickle names a global the safe loader does not allow (it was not called), or sizes that
    exceed what the file holds (nothing was allocated)."""


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


# element sizes of the storage classes a pickled storage may name (anything else is refused)
_STORAGE_SIZES = {
    ("torch", "FloatStorage"): 4, ("torch", "DoubleStorage"): 8, ("torch", "HalfStorage"): 2,
    ("torch", "BFloat16Storage"): 2, ("torch", "LongStorage"): 8, ("torch", "IntStorage"): 4,
    ("torch", "ShortStorage"): 2, ("torch", "CharStorage"): 1, ("torch", "ByteStorage"): 1,
    ("torch", "BoolStorage"): 1, ("torch.storage", "UntypedStorage"): 1,
}  # fmt: skip
_MAX_DIMS = 8


class _StorageScan(pickle.Unpickler):
    """Reads the pickles of a legacy ``torch.save`` only to collect each storage's declared size."""

    def __init__(self, fh):
        super().__init__(fh)
        self.declared: dict[str, int] = {}

    def find_class(self, module, name):
        if (module, name) not in _STORAGE_SIZES:
            raise UnsafeSnapshotError(f"storage bytes name the global {module}.{name}, not a storage type")
        return _STORAGE_SIZES[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
            raise UnsafeSnapshotError(f"storage bytes hold an unexpected persistent id {pid!r}")
        _, elem, key, _, numel, _ = pid
        if not isinstance(elem, int) or not isinstance(numel, int) or numel < 0:
            raise UnsafeSnapshotError(f"storage {key!r} declares a bad size {numel!r}")
        self.declared[str(key)] = max(self.declared.get(str(key), 0), numel * elem)
        return None


def _bound_legacy_storages(b: bytes) -> None:
    """Refuse storage bytes whose storages declare more bytes than ``b`` holds (before torch allocates)."""
    fh = io.BytesIO(b)
    scan = _StorageScan(fh)
    for _ in range(3):  # magic number, protocol version, sys info: plain values
        scan.load()
    scan.load()  # the storage itself, as persistent ids
    total = sum(scan.declared.values())
    if total > len(b):
        raise UnsafeSnapshotError(
            f"a storage declares {total} bytes but its record holds {len(b)}: the snapshot is damaged or "
            "hostile (nothing was allocated)"
        )


def _load_storage_bytes(b: bytes):
    """``torch.storage._load_from_bytes`` without its unrestricted ``torch.load``, bounded by ``len(b)``."""
    from lcm.checkpoints import verify_zip

    if not isinstance(b, (bytes, bytearray)):
        raise UnsafeSnapshotError(f"storage bytes expected, got {type(b).__name__}")
    if bytes(b[:4]) == b"PK\x03\x04":
        verify_zip(io.BytesIO(b), "a storage record of the snapshot")  # sizes bounded, CRCs checked
    else:
        try:
            _bound_legacy_storages(bytes(b))
        except UnsafeSnapshotError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as err:
            raise UnsafeSnapshotError(f"unreadable storage record in the snapshot: {err}") from err
    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _rebuild_tensor_v2(
    storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafeSnapshotError(f"tensor rebuild from a {type(storage).__name__}, not a storage")
    dtype = storage.dtype if isinstance(storage, torch.TypedStorage) else torch.uint8
    raw = storage._untyped_storage if isinstance(storage, torch.TypedStorage) else storage
    # a view must lie inside its storage: Tensor.set_ would otherwise grow the storage to fit it
    avail = raw.nbytes() // torch._utils._element_size(dtype)
    problem = view_problem(offset, size, stride, avail, overlap_ok=True, max_dims=_MAX_DIMS)
    if problem is not None:
        raise UnsafeSnapshotError(f"{problem}: the snapshot is damaged or hostile (nothing was allocated)")
    return torch.empty(0, dtype=dtype).set_(raw, offset, tuple(size), tuple(stride))


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

# what the networks of lcm.architectures.stylegan2 support (released models: <= 1024 px, <= 512 channels)
_INT_RANGES = {
    "z_dim": (0, 4096), "c_dim": (0, 100_000), "w_dim": (1, 4096), "img_channels": (1, 16),
    "channel_base": (1, 1 << 20), "channel_max": (1, 4096), "num_fp16_res": (0, 16),
    "num_layers": (1, 32), "embed_features": (1, 4096), "layer_features": (1, 4096), "cmap_dim": (1, 4096),
    "mbstd_group_size": (1, 1 << 16), "mbstd_num_channels": (0, 64),
}  # fmt: skip
_MAX_RESOLUTION = 4096


def _check_config(cls: type, kwargs: dict, state: dict, what: str) -> None:
    """Refuse init kwargs outside what our networks support or that disagree with the stored tensors,
    before anything is built (so a file cannot make the loader build millions of layers)."""

    def bad(msg: str):
        return ValueError(
            f"{what}: {msg}; refusing to build it (a damaged or hostile file, or another model)"
        )

    if not isinstance(kwargs, dict):
        raise bad(f"init kwargs are a {type(kwargs).__name__}, not a dict")
    nested = {k: v for k, v in kwargs.items() if k.endswith("_kwargs")}
    flat = dict(kwargs)
    for k, v in nested.items():
        if v is None:
            continue
        if not isinstance(v, dict):
            raise bad(f"{k} is a {type(v).__name__}, not a dict")
        flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
    for key, v in flat.items():
        name = key.rsplit(".", 1)[-1]
        if name in _INT_RANGES and v is not None:
            lo, hi = _INT_RANGES[name]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise bad(f"{key}={v!r} is outside [{lo}, {hi}]")
    res = kwargs.get("img_resolution")
    low = 4 if cls is sg2.Generator else 8
    if (
        isinstance(res, bool)
        or not isinstance(res, int)
        or not low <= res <= _MAX_RESOLUTION
        or res & (res - 1)
    ):
        raise bad(f"img_resolution={res!r} is not a power of two in [{low}, {_MAX_RESOLUTION}]")
    base = {**kwargs, **(kwargs.get("synthesis_kwargs") or {})}.get("channel_base", 32768)
    if isinstance(base, int) and base < res:
        raise bad(f"channel_base={base} gives no channels at {res} px (channel_base // resolution = 0)")
    # the stored tensors: blocks per resolution and mapping layers must be the ones the kwargs build
    log2 = res.bit_length() - 1
    if cls is sg2.Generator:
        want = {f"synthesis.b{2**i}" for i in range(2, log2 + 1)}
        have = {".".join(k.split(".")[:2]) for k in state if k.startswith("synthesis.b")}
    else:
        want = {f"b{2**i}" for i in range(2, log2 + 1)}
        have = {k.split(".")[0] for k in state if k.startswith("b") and k.split(".")[0][1:].isdigit()}
    if want != have:
        raise bad(f"img_resolution={res} needs blocks {sorted(want)}, the stored tensors hold {sorted(have)}")
    if cls is sg2.Generator or kwargs.get("c_dim"):
        layers = (kwargs.get("mapping_kwargs") or {}).get("num_layers", 8)
        stored = {k.split(".")[1] for k in state if k.startswith("mapping.fc")}
        if stored != {f"fc{i}" for i in range(layers)}:
            raise bad(
                f"mapping num_layers={layers}, but the stored tensors hold {len(stored)} mapping layers"
            )


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
    if record.init_args:
        raise ValueError(
            f"snapshot {what} ({record.class_name}) has positional init args; expected kwargs only"
        )
    state = record_state_dict(record)
    _check_config(cls, record.state.get("_init_kwargs", {}), state, f"snapshot {what}")
    try:
        with torch.device("meta"):
            net = cls(**record.init_kwargs)
    except TypeError as err:
        raise ValueError(
            f"snapshot {what} ({record.class_name}) has init kwargs this StyleGAN2-ADA implementation "
            f"does not take (a StyleGAN3 / StyleGAN-XL snapshot?): {err}"
        ) from err
    check_finite(state, f"snapshot {what}")
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
    obj = read_torch_file(path, "StyleGAN2 state-dict file")
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
    check_finite(g_state, f"{str(path)!r} G")
    _check_config(sg2.Generator, config, g_state, f"{str(path)!r} G config")
    with torch.device("meta"):
        g = sg2.Generator(**config)
    _load_strict(g, g_state, f"{str(path)!r} G")
    d = None
    if d_state is not None and d_config is not None:
        _check_config(sg2.Discriminator, d_config, d_state, f"{str(path)!r} D config")
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
    from lcm.checkpoints import sniff

    path = Path(path)
    if path.suffix == ".pkl" and sniff(path) != "zip":
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
    if file.is_pickle_snapshot() or "config" in file.options:
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
