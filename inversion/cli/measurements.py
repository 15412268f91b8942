"""The benchmark mode's ``measurements/`` folder: each image's measurement ``y`` as a user would have it,
so that the folder can be fed back with ``--degraded true`` (:mod:`inversion.cli.degraded`).

* super-resolution: the low-resolution PNG; colorization: the grey PNG; denoising / deblurring: the
  noisy / blurred PNG (8-bit, values clipped to [0, 1]);
* inpainting: an RGBA PNG whose hole is transparent, and ``masks/<name>`` (white = pixels to fill);
* compressed sensing: ``<stem>.npy`` (float32, the ``m`` measurements) -- the operator state that made
  it is in the sidecar.

Every file has a sidecar ``<stem>.json``: the image's seed ``key`` (so that a degraded-mode run starts
from the same latents) and the operator's state (class, ``repr``; compressed sensing: ratio, kind,
seed, image shape, number of measurements -- its matrix / frequency mask follows from them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from datamodules.io.atomic import atomic_write_bytes
from datamodules.io.images import png_bytes, save_png
from inversion.operators import CompressedSensing, Inpainting

__all__ = ["MEASUREMENTS", "operator_state", "read_sidecar", "write_measurement"]

MEASUREMENTS = "measurements"


def operator_state(op) -> dict:
    """What a measurement file needs to be read back: the operator's class and ``repr``, and for
    compressed sensing the values that rebuild its matrix / mask."""
    state = {"class": type(op).__name__, "repr": repr(op)}
    if isinstance(op, CompressedSensing):
        state.update(
            ratio=op.ratio, kind=op.kind, seed=op.seed, sigma=op.sigma,
            image_shape=list(op._built) if op._built else None, num_measurements=op.num_measurements,
        )  # fmt: skip
    return state


def write_measurement(out: Path, name: str, key: int, y: torch.Tensor, op, x: torch.Tensor) -> None:
    """Write image ``name``'s measurement ``y`` (one row) under ``out/measurements`` (atomically)."""
    from PIL import Image

    folder = Path(out) / MEASUREMENTS
    stem = name[:-4]
    if isinstance(op, CompressedSensing):
        buf = _npy(y[0].detach().cpu().float().numpy())
        atomic_write_bytes(folder / f"{stem}.npy", buf)
    elif isinstance(op, Inpainting):
        keep = op.mask_for(x)[0, 0].detach().cpu()
        rgb = y[0].detach().cpu().clamp(0, 1)
        rgb = rgb.expand(3, -1, -1) if rgb.shape[0] == 1 else rgb
        a = (torch.cat([rgb, keep[None]]) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        atomic_write_bytes(folder / name, png_bytes(Image.fromarray(np.ascontiguousarray(a), "RGBA")))
        save_png((1 - keep)[None], folder / "masks" / name)
    elif y.dim() == 4:  # SR, colorization, denoising, blur: an image
        save_png(y[0].clamp(0, 1), folder / name)
    else:
        return
    side = {"key": int(key), "operator": operator_state(op)}
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(side).encode())


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def read_sidecar(path: Path) -> dict | None:
    """The sidecar of a measurement file (``<stem>.json`` beside it), None when there is none."""
    side = path.with_name(path.name.rsplit(".", 1)[0] + ".json")
    if not side.is_file() or side.stat().st_size > 1 << 20:
        return None
    try:
        d = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None
