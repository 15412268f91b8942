"""The output folder's bookkeeping: ``run.json`` pins what a run computes (a resumed run must compute the
same), ``rows/<name>.json`` marks a finished image, ``failed/<name>.json`` one that could not be restored."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from datamodules.io.atomic import atomic_write_bytes
from inversion.cli.items import Item

__all__ = ["fail_path", "file_id", "pin", "row_path", "unpin_if_empty"]


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


def pin(opts, task: str, prior) -> None:
    """Record what this run computes in ``<output>/run.json``; a resumed run must compute the same.

    ``opts``: the run's :class:`~inversion.cli.options.RestoreOptions` (its operator on the run's device),
    ``task``: the task name, ``prior``: the loaded prior. ``config`` (the method's effective
    configuration, defaults included) and ``prior_info`` are recorded for the report and follow from the
    compared keys.
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
    info = {
        "config": asdict(method_config(opts.method, opts.options)),
        "prior_info": _prior_info(opts.prior, prior),
    }
    path = out / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in run if old.get(k) != json.loads(json.dumps(run[k])))
        if diff:
            raise ValueError(
                f"output folder {str(out)!r} holds a run with other {', '.join(diff)} (see its run.json): "
                "its finished images would be mixed with this run's; choose another --output or delete it"
            )
        return
    atomic_write_bytes(path, json.dumps({**run, **info}, indent=1, default=str).encode())


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
