"""The one reader of torch files for every checkpoint path (Lightning ``.ckpt``, BigGAN ``.pth``, priors).

:func:`read_torch_file` (use it instead of ``torch.load`` for any checkpoint):

* a file that is neither a zip archive (torch's format since 1.6) nor a pickle (torch's legacy format) is
  refused as "not a checkpoint" before torch sees it;
* every member of a zip archive is read once and its CRC-32 checked (a flipped byte names the file and the
  member), and each member's stored size is bounded by the file's size;
* the file is loaded with ``torch.load(weights_only=True)`` (no code from the file runs);
* every floating-point weight and buffer is checked finite: NaN / Inf is refused at load, naming the tensor
  (for a Lightning checkpoint: the tensors of its ``state_dict``; callback states such as a
  ``ModelCheckpoint``'s ``inf`` best score are not weights).

:func:`sniff` tells a torch zip / legacy pickle / anything else apart from the first bytes only (so that a
``.ckpt`` renamed ``.pkl`` is read as the checkpoint it is).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["CheckpointError", "check_finite", "read_torch_file", "sniff", "verify_zip"]

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


def check_finite(tensors: Any, what: str) -> None:
    """Refuse NaN / Inf in any floating-point tensor of ``tensors`` (nested containers), naming the first."""
    for name, t in _tensors(tensors):
        if (t.is_floating_point() or t.is_complex()) and t.numel() and not bool(torch.isfinite(t).all()):
            bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
            raise CheckpointError(
                f"{what}: tensor {name!r} holds {bad} values: the weights are broken (a diverged or damaged "
                "run); load an earlier checkpoint"
            )


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
    weights = obj.get("state_dict", obj) if isinstance(obj, Mapping) else obj
    check_finite(weights, label)
    return obj
