"""The one reader of torch files for every checkpoint path (Lightning ``.ckpt``, BigGAN ``.pth``, priors).

:func:`read_torch_file` (use it instead of ``torch.load`` for any checkpoint):

* a file that is neither a zip archive (torch's format since 1.6) nor a pickle (torch's legacy format) is
  refused as "not a checkpoint" before torch sees it;
* every member of a zip archive is read once and its CRC-32 checked (a flipped byte names the file and the
  member), and each member's stored size is bounded by the file's size;
* before ``torch.load`` allocates anything, the file's pickle is read by an inert scanner
  (:func:`check_views`): every tensor view must lie inside the bytes its storage has in the file, must not
  overlap itself (no stride-0 "expanded" views: a 13 KB file cannot declare gigabytes of weights), and the
  views together may not declare more bytes than the file stores;
* the file is loaded with ``torch.load(weights_only=True)`` (no code from the file runs);
* every weight is checked (:func:`check_finite`): NaN / Inf, a ``weight`` / ``bias`` / BatchNorm statistic
  that is not floating-point (int, bool, complex), or a negative BatchNorm ``running_var`` is refused,
  naming the tensor (for a Lightning checkpoint: the tensors of its ``state_dict``; callback states such as
  a ``ModelCheckpoint``'s ``inf`` best score are not weights; any other file: every tensor in it, whatever
  key holds it).

:func:`sniff` tells a torch zip / legacy pickle / anything else apart from the first bytes only (so that a
``.ckpt`` renamed ``.pkl`` is read as the checkpoint it is).
"""

from __future__ import annotations

import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["CheckpointError", "check_finite", "check_views", "read_torch_file", "sniff", "verify_zip"]

_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as it is (damaged, not a checkpoint, non-finite weights)."""


def sniff(path: str | os.PathLike) -> Literal["zip", "pickle", "other"]:
    """What the file's first bytes say it is: a zip archive, a pickle (protocol 2+), or something else."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80" and 2 <= (head[1:2] or b"\0")[0] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    return "other"


def verify_zip(source, what: str) -> None:
    """Read every member of the zip ``source`` (a path or a binary file object) and check its CRC-32.

    Raises:
        CheckpointError: a member whose bytes do not match its CRC (naming ``what`` and the member), a
        member that claims more bytes than the archive holds, or an archive that is no readable zip.
    """
    try:
        if isinstance(source, (str, os.PathLike)):
            size = os.path.getsize(source)
        else:
            size = source.seek(0, os.SEEK_END)
            source.seek(0)
        with zipfile.ZipFile(source) as zf:
            for info in zf.infolist():
                if info.compress_size > size:
                    raise CheckpointError(
                        f"{what}: zip member {info.filename!r} claims {info.compress_size} bytes, more than "
                        f"the whole file ({size} bytes): the file is damaged"
                    )
                try:
                    with zf.open(info) as member:
                        while member.read(_CHUNK):
                            pass
                except zipfile.BadZipFile as err:  # "Bad CRC-32 for file ..."
                    raise CheckpointError(
                        f"{what} is damaged: zip member {info.filename!r} does not match its CRC-32 ({err}); "
                        "re-copy the file from where it was written"
                    ) from err
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{what} is not a readable torch file (truncated or corrupt?): a damaged zip archive ({err}); "
            "re-copy it from where it was written"
        ) from err


def _tensors(obj: Any, prefix: str = ""):
    """``(name, tensor)`` for every tensor in nested dicts / lists / tuples."""
    if isinstance(obj, torch.Tensor):
        yield prefix or "<tensor>", obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


_MAX_DIMS = 32
# parameters and BatchNorm statistics by name (plain, spectral-norm ``_orig``): these must be real floats
_WEIGHT = re.compile(r"(?:^|.*\.)(?:weight|bias|running_mean|running_var)(?:_orig)?")


def view_problem(
    offset: Any, size: Any, stride: Any, backed: int, overlap_ok: bool = False, max_dims: int = _MAX_DIMS
) -> str | None:
    """What is wrong with a view ``(offset, size, stride)`` of a storage backed by ``backed`` elements:
    out of range, reaching past the storage, or overlapping itself (stride 0; allowed with ``overlap_ok``,
    as the StyleGAN unpickler always has) or of more than ``max_dims`` dimensions; None if it is sound."""
    numbers = (offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else None
    if (
        numbers is None
        or len(size) != len(stride)
        or len(size) > max_dims
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers)
    ):
        return f"a tensor view with offset {offset!r}, size {size!r}, stride {stride!r}"
    if not math.prod(size):
        return None
    reach = 0  # the highest element the dimensions taken so far reach; each next stride must pass it
    for n, st in sorted(((n, st) for n, st in zip(size, stride, strict=True) if n > 1), key=lambda d: d[1]):
        if st <= reach and not overlap_ok:
            return (
                f"a tensor view of size {tuple(size)} with stride {tuple(stride)} overlaps itself (a "
                f"stride-0 or expanded view: {math.prod(size)} elements declared over far fewer stored ones)"
            )
        reach += (n - 1) * st
    if offset + reach >= backed:
        return (
            f"a tensor view of size {tuple(size)} (offset {offset}, stride {tuple(stride)}) reaches element "
            f"{offset + reach} of a storage of {backed} stored elements"
        )
    return None


class _Opaque:
    """What every object but a tensor view becomes while a file is scanned (inert, accepts anything)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Opaque()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


class _StoredStorage:
    def __init__(self, key: str, itemsize: int, backed: int):
        self.key, self.itemsize, self.backed = key, itemsize, backed


class _ViewScanner(pickle.Unpickler):
    """Reads a torch pickle without building anything: storages become their stored sizes, tensor views
    are checked against them (:func:`view_problem`), every other object is :class:`_Opaque`."""

    def __init__(self, fh, what: str, stored: Any):
        super().__init__(fh)
        self.what, self.stored = what, stored  # stored(key, declared_bytes) -> backed bytes
        self.storages: dict[str, int] = {}
        self.views: set[tuple] = set()
        self.view_bytes = 0

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild
        if module == "torch" and name.endswith("Storage") and name != "UntypedStorage":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dtype = getattr(torch, name, None)
                dtype = getattr(dtype, "dtype", None)
            if isinstance(dtype, torch.dtype):
                return dtype
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return _Opaque

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.what}: unexpected persistent id {pid!r} (not a torch storage)")
        dtype, key, numel = pid[1], str(pid[2]), pid[4]
        itemsize = torch.empty(0, dtype=dtype).element_size() if isinstance(dtype, torch.dtype) else 1
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self.what}: storage {key!r} declares {numel!r} elements")
        backed = self.stored(key, numel * itemsize)
        self.storages[key] = backed
        return _StoredStorage(key, itemsize, backed // itemsize)

    def _rebuild(self, storage, offset, size, stride, *rest):
        if not isinstance(storage, _StoredStorage):
            raise CheckpointError(f"{self.what}: a tensor rebuilt from a {type(storage).__name__}")
        size, stride = tuple(size) if isinstance(size, (tuple, list)) else size, stride
        stride = tuple(stride) if isinstance(stride, (tuple, list)) else stride
        problem = view_problem(offset, size, stride, storage.backed)
        if problem:
            raise CheckpointError(
                f"{self.what}: {problem}: the file is damaged or hostile (refused before anything was "
                "allocated)"
            )
        view = (storage.key, offset, size, stride)
        if view not in self.views:  # the same view under two names (tied weights) is stored once
            self.views.add(view)
            self.view_bytes += math.prod(size) * storage.itemsize
        return _Opaque()


def check_views(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a torch file whose tensors declare more than its stored bytes (see the module docstring),
    reading only its pickle: nothing the file declares is allocated.

    Raises:
        CheckpointError: a view outside its storage, an overlapping (stride-0) view, a storage that
        declares more bytes than the file holds, or views that together declare more than is stored.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        if sniff(path) == "zip":
            with zipfile.ZipFile(path) as zf:
                names = {n.rsplit("/data/", 1)[-1]: zf.getinfo(n) for n in zf.namelist() if "/data/" in n}
                pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if len(pkl) != 1:
                    raise CheckpointError(f"{what}: a zip archive without one data.pkl: not a torch file")

                def stored(key: str, declared: int) -> int:
                    info = names.get(key)
                    if info is None or declared > info.file_size:
                        have = "none" if info is None else f"{info.file_size} bytes"
                        raise CheckpointError(
                            f"{what}: storage {key!r} declares {declared} bytes, the file stores {have}: "
                            "the file is damaged or hostile"
                        )
                    return info.file_size

                with zf.open(pkl[0]) as fh:
                    scan = _ViewScanner(fh, what, stored)
                    scan.load()
        else:  # torch's legacy format: magic, protocol, sys_info, then the object (storages after it)
            with open(path, "rb") as fh:
                for _ in range(3):
                    _ViewScanner(fh, what, lambda key, declared: 0).load()
                scan = _ViewScanner(fh, what, lambda key, declared: declared)
                scan.load()
                if sum(scan.storages.values()) > size:
                    raise CheckpointError(
                        f"{what}: its storages declare {sum(scan.storages.values())} bytes, more than the "
                        f"whole file ({size} bytes): the file is damaged or hostile"
                    )
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - a pickle the scanner cannot read is no torch file we read
        raise CheckpointError(f"{what} is not a readable torch file (truncated or corrupt?): {err}") from err
    stored_bytes = sum(scan.storages.values())
    if scan.view_bytes > stored_bytes:
        raise CheckpointError(
            f"{what}: its tensors declare {scan.view_bytes} bytes over {stored_bytes} stored ones (views "
            "that share their storage): the file is damaged or hostile (refused before anything was "
            "allocated)"
        )


def check_finite(tensors: Any, what: str) -> None:
    """Refuse broken weights in ``tensors`` (nested containers), naming the first: an overlapping
    (stride-0) view (checked first: nothing is copied), NaN / Inf, a ``weight`` / ``bias`` / BatchNorm
    statistic that is not a real floating-point tensor, or a negative ``running_var``."""
    for name, t in _tensors(tensors):
        if t.device.type == "meta":
            raise CheckpointError(f"{what}: tensor {name!r} holds no data (a meta tensor)")
        backed = t.untyped_storage().nbytes() // max(t.element_size(), 1)
        problem = view_problem(t.storage_offset(), tuple(t.shape), tuple(t.stride()), backed)
        if problem:
            raise CheckpointError(f"{what}: tensor {name!r}: {problem}: the file is damaged or hostile")
        if _WEIGHT.fullmatch(name.rsplit("[", 1)[0]) and (not t.is_floating_point() or t.is_complex()):
            raise CheckpointError(
                f"{what}: tensor {name!r} is {t.dtype}, not a floating-point weight: the file is damaged "
                "or not a network's weights"
            )
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
            raise CheckpointError(
                f"{what}: tensor {name!r} holds {bad} values: the weights are broken (a diverged or damaged "
                "run); load an earlier checkpoint"
            )
        if name.endswith("running_var") and t.numel() and bool((t < 0).any()):
            raise CheckpointError(
                f"{what}: tensor {name!r} (a BatchNorm running variance) holds negative values: the weights "
                "are damaged; load an earlier checkpoint"
            )


# a Lightning checkpoint's entries that are not weights (a ModelCheckpoint's ``inf`` best score, ...)
_LIGHTNING_KEYS = ("pytorch-lightning_version", "genprior_kind", "global_step", "epoch")


def checked_weights(obj: Any) -> Any:
    """The tensors of ``obj`` that are weights: a Lightning checkpoint's ``state_dict``, else all of it."""
    if isinstance(obj, Mapping) and "state_dict" in obj and any(k in obj for k in _LIGHTNING_KEYS):
        return obj["state_dict"]
    return obj


def read_torch_file(
    path: str | os.PathLike, what: str = "checkpoint", map_location: str | torch.device | None = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)`` of a checked file (see the module docstring).

    Args:
        path: the file.
        what: what the file should be, for the messages (``"prior checkpoint"``, ``"BigGAN generator"``).
        map_location: as for ``torch.load``.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError (a ValueError): not a torch file, a damaged zip member, objects ``weights_only``
        refuses, or non-finite weights.
    """
    path = Path(path)
    label = f"{what} {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{label} does not exist (or is not a file)")
    kind = sniff(path)
    if kind == "other":
        raise CheckpointError(
            f"{label} is not a checkpoint (not a zip / pickle torch file): its first bytes are no torch "
            "format; check the path"
        )
    if kind == "zip":
        verify_zip(path, label)
    check_views(path, label)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise CheckpointError(
                f"{label} holds objects that torch.load(weights_only=True) refuses (not plain tensors and "
                f"containers), so it is not a checkpoint this project writes or reads ({err})"
            ) from err
        raise CheckpointError(f"{label} is not a readable torch file (truncated or corrupt?): {err}") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{label} is not a readable torch file (truncated or corrupt?): re-copy it from where it was "
            f"written: {err}"
        ) from err
    check_finite(checked_weights(obj), label)
    return obj
