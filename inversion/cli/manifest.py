"""The output folder's bookkeeping: ``run.json`` pins what a run computes (a resumed run must compute the
same), ``rows/<name>.json`` marks a finished image, ``failed/<name>.json`` one that could not be restored,
``.run.lock`` says which run owns the folder (:func:`own_folder`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path

import torch

from datamodules.io.atomic import atomic_write_bytes
from inversion.cli.items import BUILTIN, Item

__all__ = ["FolderInUse", "fail_path", "file_id", "operator_state", "own_folder", "pin", "row_path",
           "unpin_if_empty"]  # fmt: skip

LOCK = ".run.lock"


class FolderInUse(RuntimeError):
    """Another run holds the output folder's lock."""


@contextlib.contextmanager
def own_folder(out: Path, shared: bool = False):
    """Hold ``<out>/.run.lock`` while a run writes ``out``: two runs in one folder mixed their results
    (issue 31). ``fcntl.flock`` (exclusive; ``shared`` for the ``--shard`` processes of one run): the
    kernel drops it when its process dies, so a lock file left by a killed run never blocks (no stale
    lock); the file only names the owner (pid, host, start time) for the refusal.

    Raises:
        FolderInUse: another live run holds the lock (named in the message).
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): no lock
        yield
        return
    path = Path(out) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = path.read_text(errors="replace").strip() or "another process"
            raise FolderInUse(
                f"output folder {str(out)!r} is in use by another run ({owner}): two runs in one folder mix "
                "their results; wait for it to finish, or choose another --output"
            ) from None
        if not shared:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {stamp}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def row_path(out: Path, item: Item) -> Path:
    """The record of a finished image (names end in .png: one record each)."""
    return out / "rows" / Path(item.name).with_suffix(".json")


def fail_path(out: Path, item: Item) -> Path:
    """The record of an image that could not be read or restored."""
    return out / "failed" / Path(item.name).with_suffix(".json")


def file_id(path) -> str | None:
    """``sha256:<hex>`` of a file, the string itself for anything else, None for None."""
    if path is None or not Path(path).is_file():
        return None if path is None else str(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def input_path(source: str) -> str:
    """A built-in split's name, or the folder's absolute path (``imgs`` and ``/home/me/imgs`` are one)."""
    return str(source) if str(source) in BUILTIN else str(Path(source).resolve())


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        return f"tensor{tuple(t.shape)}:{hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]}"
    if isinstance(v, bool | int | float | str) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def operator_state(op) -> dict:
    """Everything of an operator that changes its measurements: its class, its settings (public
    attributes: ``box_size``, ``ratio``, ``seed``, ...; a ``mask_path`` as its file's hash), its tensors
    (a given mask, buffers) as hashes, and its parts' states (``Composite``)."""
    state: dict = {"class": f"{type(op).__module__}.{type(op).__qualname__}"}
    for k, v in sorted(vars(op).items()):
        if k in ("training", "rows_repeat") or (k.startswith("_") and not isinstance(v, torch.Tensor)):
            continue
        state[k] = file_id(v) if k.endswith("_path") and v is not None else _jsonable(v)
    for name, t in op.state_dict(keep_vars=False).items():
        state[f"buffer:{name}"] = _jsonable(t)
    for name, child in op.named_children():
        state[f"part:{name}"] = operator_state(child)
    return state


def _prior_file(spec: str) -> str | None:
    """The weights file behind a named prior (``lcm.list_priors()``; ``$GENPRIOR_PRIORS`` may point a name
    at another file): its hash, and its critic's."""
    from lcm.pretrained import is_registered, resolve_prior

    if Path(str(spec)).is_file() or not is_registered(str(spec)):
        return None
    weights, critic = resolve_prior(str(spec))
    return file_id(weights) + ("" if critic is None else f" critic {file_id(critic)}")


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict, new: dict, keys) -> list[str]:
    """``key: old -> new`` for each of ``keys`` that differs (nested keys dotted)."""
    out = []
    for k in keys:
        a, b = _flat(old.get(k), k), _flat(json.loads(json.dumps(new.get(k), default=str)), k)
        out += [f"{n}: {a.get(n)!r} -> {b.get(n)!r}" for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
    return out


def pin(opts, task: str, prior) -> None:
    """Record what this run computes in ``<output>/run.json``; a resumed run must compute the same.

    ``opts``: the run's :class:`~inversion.cli.options.RestoreOptions` (its operator on the run's device),
    ``task``: the task name, ``prior``: the loaded prior. Compared on resume: the options, the operator's
    state (:func:`operator_state`), the file behind a named prior and the method's effective
    configuration (defaults included); a run.json written before a key was pinned is not compared on it.
    ``prior_info`` is recorded for the report.

    Raises:
        ValueError: the folder holds a run that computed something else (each difference named).
    """
    from inversion.methods import method_config

    out = Path(opts.output)
    extra = {"critic": file_id(opts.critic), "labels": file_id(opts.labels), **_degraded(opts)}
    run = {
        "prior": file_id(opts.prior),
        "operator": repr(opts.operator),
        "input": str(opts.input),
        "method": opts.method,
        "task": task,
        "seed": opts.seed,
        "noise_seed": opts.noise_seed,
        "options": opts.options or {},
        **{k: v for k, v in extra.items() if v is not None},  # absent in runs without them
    }
    later = {  # pinned since issue 31: compared where the old run.json has them
        "operator_state": operator_state(opts.operator),
        "prior_file": _prior_file(opts.prior),
        "config": asdict(method_config(opts.method, opts.options)),
        "input_path": input_path(opts.input),
    }
    info = {"prior_info": _prior_info(opts.prior, prior)}
    path = out / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = differences(old, run, sorted(run)) + differences(
            old, later, sorted(k for k in later if k in old)
        )
        if diff:
            raise ValueError(
                f"output folder {str(out)!r} holds a run that computed something else ({'; '.join(diff[:4])}"
                f"{'; ...' if len(diff) > 4 else ''}; see its run.json): its finished images would be mixed "
                "with this run's; choose another --output or delete it"
            )
        return
    atomic_write_bytes(path, json.dumps({**run, **later, **info}, indent=1, default=str).encode())


def _degraded(opts) -> dict:
    """``--degraded true`` runs also pin their masks and truth (absent in benchmark runs)."""
    if not getattr(opts, "degraded", False):
        return {}
    return {"degraded": True, "masks": file_id(opts.masks), "truth": opts.truth}


def unpin_if_empty(out: Path) -> None:
    """Nothing restored in this folder: drop ``run.json`` so that a rerun may use other options."""
    if not any((out / "rows").rglob("*.json")):
        (out / "run.json").unlink(missing_ok=True)


def _prior_info(spec: str, pri) -> dict:
    info = {"path": str(spec)}
    if pri is not None:
        info.update(
            kind=type(pri).__name__,
            latent=getattr(pri, "latent_kind", None),
            image_shape=list(pri.image_shape),
            classes=int(getattr(pri, "num_classes", 0) or 0),
        )
    return info
