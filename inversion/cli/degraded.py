"""``python -m inversion --degraded true``: restore the measurements a user has (one file per image in
``--input``), with no ground truth unless ``--truth DIR`` gives it. The task preset's operator says what
the files are:

* super-resolution: low-resolution photos (the prior's side divided by the factor);
* colorization: grey photos (a colour photo is taken to grey with the operator's weights, with a note);
* inpainting: the photo and its hole -- a mask file of ``--masks DIR`` with the same relative name (or
  the same name with another image extension), one mask file ``--masks FILE`` for all, else the
  transparent pixels of an RGBA photo (also where a
  ``--masks`` folder has no file for it), else the preset's own mask (noted). White = pixels to fill
  (LaMa's convention); a mask must be the photo's size, binary, with a hole (else that image fails,
  before any fit, and the others go on);
* denoising / deblurring (and other image-shaped operators): the noisy / blurred photo;
* compressed sensing: ``.npy`` / ``.pt`` files of the ``m`` measurements; a sidecar ``<stem>.json``
  (written by the benchmark mode, :mod:`inversion.cli.measurements`) names the operator state that
  made them, and a preset whose operator differs is refused for that file.

Photos of another size are framed by :mod:`datamodules.degraded`'s rule (centre square, resized; a note
per image in ``metrics.csv``'s ``note`` column and on stderr). ``framed/<name>``: for super-resolution
and inpainting, the restoration pasted back into the photo's frame (SR: the photo up-sampled bicubically
to the restoration's scale, its centre square replaced; inpainting: the photo at its size with only the
hole filled); colorization, compressed sensing and denoising write none (the restoration has no frame
beyond the prior's square, or its resolution is below the photo's). A sidecar's ``key`` is used as the
image's seed key, so feeding a benchmark run's ``measurements/`` back starts from the same latents.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from datamodules.degraded import Frame, frame_image, paste_back, read_mask, read_photo
from datamodules.io.images import IMAGE_EXTENSIONS, list_image_files, load_image, save_png
from inversion.cli.items import Item, output_name, path_key
from inversion.cli.measurements import operator_state, read_sidecar
from inversion.cli.runner import Runner
from inversion.cli.writer import Restored, RunWriter
from inversion.operators import Colorization, CompressedSensing, Inpainting, SuperResolution

__all__ = ["ARRAY_EXTENSIONS", "Measured", "degraded_items", "load_measurements", "runner_for"]

ARRAY_EXTENSIONS = (".npy", ".pt")
MAX_ARRAY_BYTES = 1 << 28  # a measurement file larger than this is refused


@dataclass
class Measured:
    """One user file as the restoration needs it."""

    y: torch.Tensor  # (1, ...) as operator.A returns it
    op: object  # the operator of this image (inpainting: with its own mask)
    truth: torch.Tensor | None = None  # (1, C, H, W) from --truth
    note: str = ""
    photo: torch.Tensor | None = None  # the photo in the paste-back frame's resolution
    frame: Frame | None = None  # where the restoration goes in ``photo``
    keep: torch.Tensor | None = None  # (H, W) inpainting: 1 = kept pixels of ``photo``


def _find(folder: Path, rel: str) -> Path | None:
    """``folder/rel``, or the same relative path with another image extension."""
    p = folder / rel
    if p.is_file():
        return p
    stem = rel.rsplit(".", 1)[0]
    for ext in IMAGE_EXTENSIONS:
        for e in (ext, ext.upper()):
            if (folder / (stem + e)).is_file():
                return folder / (stem + e)
    return None


def _list(folder: Path, arrays: bool, recursive: bool, exclude: tuple) -> list[Path]:
    if not arrays:
        return list_image_files(folder, recursive=recursive, exclude=exclude)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in ARRAY_EXTENSIONS)


def degraded_items(opts, prior, operator) -> list[Item]:
    """The measurement files of ``opts.input`` as items whose ``load()`` returns a :class:`Measured`."""
    folder = Path(opts.input)
    arrays = isinstance(operator, CompressedSensing)
    exclude = tuple(opts.excluded())
    if opts.masks is not None and Path(opts.masks).is_dir():
        exclude += (Path(opts.masks),)
    files = _list(folder, arrays, opts.recursive, exclude)
    if not files:
        kind = ", ".join(ARRAY_EXTENSIONS) if arrays else ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(f"--degraded input folder {opts.input!r} holds no measurement files ({kind})")
    if opts.limit is not None:
        files = files[: int(opts.limit)]
    items, seen = [], {}
    for i, p in enumerate(files):
        rel = p.relative_to(folder).as_posix()
        name = rel.rsplit(".", 1)[0] + ".png" if arrays else output_name(rel)
        if name in seen:
            raise ValueError(f"{seen[name]!r} and {rel!r} would both be restored as {name!r}: rename one")
        seen[name] = rel
        side = read_sidecar(p) or {}
        key = side.get("key")
        key = int(key) if isinstance(key, int) and 0 <= key < 2**31 else path_key(rel)
        items.append(
            Item(
                i,
                name,
                (lambda p=p, rel=rel, s=side: _measure(p, rel, s, opts, prior, operator)),
                -1,
                rel,
                key,
            )
        )
    return items


def _truth(opts, rel: str, shape) -> torch.Tensor | None:
    if opts.truth is None:
        return None
    p = _find(Path(opts.truth), rel)
    if p is None:
        raise FileNotFoundError(f"--truth {opts.truth!r} has no image for {rel!r} (same relative name)")
    return load_image(p, resolution=shape[1], channels=shape[0])[None]


def _measure(path: Path, rel: str, side: dict, opts, prior, operator) -> Measured:
    shape = tuple(prior.image_shape)
    m = load_measurements(path, rel, side, opts.masks, shape, operator)
    m.truth = _truth(opts, rel, shape)
    return m


def load_measurements(path, rel: str, side: dict, masks, shape, operator) -> Measured:
    """Read one measurement file for ``operator`` and a prior of image ``shape`` (the Python side of
    ``--degraded true``: ``restore(m.y, m.op, prior)``). ``side``: its sidecar (may be empty)."""
    c, h, _ = shape
    if isinstance(operator, CompressedSensing):
        return _cs(Path(path), side, operator)
    if isinstance(operator, SuperResolution):
        lr = h // operator.factor
        photo = read_photo(path, c)
        x, f = frame_image(photo.image, lr)
        scale = h / f.side  # the restoration's pixels per photo pixel
        big = _resize(photo.image, round(f.width * scale), round(f.height * scale))
        fb = Frame(big.shape[2], big.shape[1], round(f.left * scale), round(f.top * scale), h, h)
        return Measured(x[None], operator, note=f.note, photo=big, frame=fb)
    if isinstance(operator, Inpainting):
        return _inpainting(Path(path), rel, masks, c, h, operator)
    if isinstance(operator, Colorization):
        photo = read_photo(path, None)
        x, f = frame_image(photo.image, h)
        note = f.note
        if x.shape[0] == 3 and float((x - x.mean(0, keepdim=True)).abs().max()) > 1.5 / 255:
            note = "; ".join(filter(None, [note, "colour photo: taken to grey with the operator's weights"]))
            with torch.no_grad():
                y = operator.A(x[None])
        else:
            y = x[:1][None]
        return Measured(y, operator, note=note)
    photo = read_photo(path, c)
    x, f = frame_image(photo.image, h)
    return Measured(x[None], operator, note=f.note)


def _resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    if tuple(image.shape[-2:]) == (height, width):
        return image
    from PIL import Image

    from datamodules.degraded import _tensor

    a = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pil = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    return _tensor(np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC)))


def _inpainting(path: Path, rel: str, masks, c: int, h: int, operator: Inpainting) -> Measured:
    photo = read_photo(path, c)
    _, hh, ww = photo.image.shape
    keep, where = None, ""
    mp = None
    if masks is not None:
        mp = _find(Path(masks), rel) if Path(masks).is_dir() else Path(masks)
        if mp is None and photo.alpha is None:
            raise FileNotFoundError(f"--masks {masks!r} has no mask for {rel!r} (same relative name)")
    if mp is not None:
        keep, where = read_mask(mp, ww, hh), f"mask {mp.name}"
    elif photo.alpha is not None:
        keep, where = (photo.alpha >= 0.5).float(), "transparent pixels"
        if keep.all():
            raise ValueError(f"{rel!r} has an alpha channel but no transparent pixel: no hole to fill")
    x, f = frame_image(photo.image, h)
    if keep is None:  # the preset's own mask, on the framed image
        note = "; ".join(filter(None, [f.note, "no mask given: the preset's mask"]))
        return Measured(x[None] * operator.mask_for(x[None]), operator, note=note)
    kf, _ = frame_image(keep[None], h, nearest=True)
    kf = (kf[0] >= 0.5).float()
    if kf.all() or not kf.any():
        raise ValueError(f"the hole of {rel!r} ({where}) is {'lost' if kf.all() else 'all'} after framing")
    op = copy.deepcopy(operator)
    op.set_mask(kf.to(x)[None, None])
    note = "; ".join(filter(None, [f.note, f"hole: {where}"]))
    return Measured(x[None] * kf, op, note=note, photo=photo.image, frame=f, keep=keep)


def _cs(path: Path, side: dict, op: CompressedSensing) -> Measured:
    if path.stat().st_size > MAX_ARRAY_BYTES:
        raise ValueError(f"{path.name!r} is larger than {MAX_ARRAY_BYTES} bytes: not a measurement file")
    if path.suffix.lower() == ".npy":
        try:
            a = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        except ValueError as e:
            raise ValueError(f"cannot read {path.name!r} as a numeric .npy array: {e}") from e
    else:
        from lcm.checkpoints import read_torch_file  # CRCs, views within the stored bytes, weights_only

        a = read_torch_file(path, "measurement file", "cpu")
        if not isinstance(a, torch.Tensor):
            raise ValueError(f"{path.name!r} holds a {type(a).__name__}, not a tensor of measurements")
        a = a.float()
    want = op.num_measurements
    if a.numel() != want or a.dim() > 2:
        raise ValueError(f"{path.name!r} holds {tuple(a.shape)} values; this operator makes ({want},)")
    state = side.get("operator")
    if isinstance(state, dict):
        mine = operator_state(op)
        diff = [k for k in ("ratio", "kind", "seed", "image_shape") if state.get(k) != mine.get(k)]
        if diff:
            raise ValueError(
                f"{path.name!r} was measured by an operator with other {', '.join(diff)} "
                f"({', '.join(f'{k}={state.get(k)!r}' for k in diff)}; this preset has "
                f"{', '.join(f'{k}={mine.get(k)!r}' for k in diff)}): use the preset that made it"
            )
    if not torch.isfinite(a).all():
        raise ValueError(f"{path.name!r} holds NaN or Inf values")
    return Measured(a.reshape(1, -1), op)


class DegradedWriter(RunWriter):
    """Writes what :class:`RunWriter` writes (no ``measurements/``; ``truth/`` only with ``--truth``) and
    ``framed/<name>``, the restoration pasted back into its photo's frame."""

    def __init__(self, out: Path, measured: dict[str, Measured]):
        super().__init__(out)
        self.measured = measured

    def write_extra(self, batch: Restored, i: int) -> None:
        m = self.measured.get(batch.items[i].name)
        if m is not None and m.photo is not None and m.frame is not None:
            framed = paste_back(batch.restored[i].cpu(), m.photo, m.frame, m.keep)
            save_png(framed, self.out / "framed" / batch.items[i].name)


class DegradedRunner(Runner):
    """Reads every file first (a bad file fails before any fit; the others go on), then restores them."""

    def __init__(self, job, out: Path, batch_size: int = 1, progress: bool = False):
        self.measured: dict[str, Measured] = {}
        super().__init__(job, DegradedWriter(out, self.measured), batch_size, progress)
        if isinstance(job.operator, Inpainting):  # a mask per image: one image per fit
            self.batch_size = 1

    def run(self, todo: list[Item]) -> None:
        good = []
        for it in todo:
            try:
                m = it.load()
            except Exception as e:
                self.writer.write_failure(it, e)
                continue
            if m.note:
                print(f"[inversion] {it.name}: {m.note}", file=sys.stderr)
            self.measured[it.name] = m
            good.append(Item(it.index, it.name, (lambda m=m: m), it.label, it.source, it.key))
        super().run(good)

    def _load(self, it: Item):
        return it.load()

    def _measure(self, batch):
        ms = [m for _, m in batch]
        dev = self.job.device
        y = torch.cat([m.y.to(dev) for m in ms])
        truth = None
        if all(m.truth is not None for m in ms):
            truth = torch.cat([m.truth.to(dev) for m in ms])
        return [m.op for m in ms], y, truth

    def restore(self, batch) -> Restored:
        res = super().restore(batch)
        res.y = None  # the measurements are the input files: no measurements/ folder
        for rec, (_, m) in zip(res.records, batch, strict=True):
            rec["note"] = m.note
        return res


def runner_for(opts, job, out: Path, batch_size: int, progress: bool) -> Runner:
    """The runner of a run: :class:`DegradedRunner` with ``--degraded true``, else :class:`Runner`."""
    if opts.degraded:
        return DegradedRunner(job, out, batch_size, progress)
    return Runner(job, RunWriter(out), batch_size, progress)
