"""The inputs of a run: a folder's image files or a built-in test split, each with a unique output name
and a seed key that does not depend on the other inputs."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from datamodules.io.images import load_image

__all__ = ["BUILTIN", "Item", "list_items", "output_name"]

BUILTIN = ("fashion_mnist", "emoji", "faces", "prior_samples")
PRIOR_SAMPLES = 8  # images of the `prior_samples` input (held-out samples of --prior; --limit takes fewer)


@dataclass
class Item:
    index: int
    name: str
    load: Callable[[], torch.Tensor]
    label: int = -1
    source: str = ""  # the relative path of a folder file (labels CSV lookup)
    key: int = -1  # seed offset: the index for built-in splits, a hash of the relative path for folders

    def __post_init__(self):
        if self.key < 0:
            self.key = self.index


def output_name(rel: str) -> str:
    """The output name of an input file at relative path ``rel``: unique for any set of input names.

    ``rel`` is kept when it ends in ``.png`` and what precedes that is not itself an image name
    (``a.png``, ``a_png.png``); otherwise ``.png`` is appended (``a.PNG.png``, ``a.jpg.png``,
    ``a.jpg.png.png``). Two inputs never share an output, and a name depends on its own file only. A
    file name longer than :data:`NAME_BYTES` bytes is cut to 200 and given the path's key
    (``<cut>.<key>.png``), so that the outputs' names fit the file system.
    """
    from datamodules.io.images import IMAGE_EXTENSIONS

    name = rel if rel.endswith(".png") and not rel[:-4].lower().endswith(IMAGE_EXTENSIONS) else rel + ".png"
    return _within_name_max(name, rel)


NAME_BYTES = 250  # an output's file name, so that rows/<stem>.json (one byte more) fits NAME_MAX (255)


def _within_name_max(name: str, rel: str) -> str:
    """``name``, or where its last part is longer than :data:`NAME_BYTES` bytes, that part cut and made
    unique by the input's path key: ``<first 200 bytes>.<key>.png``."""
    head, _, last = name.rpartition("/")
    if len(os.fsencode(last)) <= NAME_BYTES:
        return name
    cut = last[:200]
    while len(os.fsencode(cut)) > 200:  # whole characters only
        cut = cut[:-1]
    short = f"{cut}.{path_key(rel):08x}.png"
    return f"{head}/{short}" if head else short


def path_key(rel: str) -> int:
    """A stable 31-bit number of a relative path (its seed offset; independent of the other files)."""
    return int.from_bytes(hashlib.sha256(os.fsencode(rel)).digest()[:4], "big") >> 1


def list_items(
    source: str,
    image_shape: tuple[int, int, int],
    limit: int | None = None,
    recursive: bool = False,
    exclude: tuple[str | os.PathLike, ...] = (),
    prior=None,
) -> list[Item]:
    """The images to restore: a folder's image files (sorted by relative path), or a built-in test split.

    A folder's sub-folders are searched with ``recursive`` (else their images are counted and named in
    a note); folders in ``exclude`` (an output folder inside the input) are never read.
    """
    _note_builtin_over_folder(source)
    if source == "faces":  # real face photos from installed packages (datamodules.faces)
        return _face_items(image_shape, limit)
    if source == "prior_samples":  # the prior's own held-out samples: the in-range set
        return _prior_sample_items(prior, limit)
    if source in BUILTIN:
        return _builtin_items(source, image_shape[1], limit)
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"input {source!r} is neither a folder nor one of the built-in splits {BUILTIN}"
        )
    from datamodules.io.images import IMAGE_EXTENSIONS, list_image_files

    files = list_image_files(folder, recursive=recursive, exclude=exclude)
    if not recursive and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        nested = len(list_image_files(folder, exclude=exclude, quiet=True)) - len(files)
        if nested:
            print(
                f"[inversion] note: {nested} image file(s) in sub-folders of {source} are not restored; "
                "pass --recursive true to include them",
                file=sys.stderr,
            )
    if not files:
        raise ValueError(f"input folder {source!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if limit is not None:
        files = files[:limit]
    c, h, _ = image_shape

    def file_loader(p):
        return lambda: load_image(p, resolution=h, channels=c)

    rels = [p.relative_to(folder).as_posix() for p in files]
    names = [output_name(r) for r in rels]
    # a case-insensitive output file system would merge A.png and a.png: tell those apart by their path
    folded = Counter(n.casefold() for n in names)
    names = [
        n if folded[n.casefold()] == 1 else f"{n[:-4]}.{path_key(r):08x}.png"
        for n, r in zip(names, rels, strict=True)
    ]
    return [
        Item(i, name, file_loader(p), source=r, key=path_key(r))
        for i, (p, r, name) in enumerate(zip(files, rels, names, strict=True))
    ]


def _note_builtin_over_folder(source: str) -> None:
    """``--input faces`` is the built-in split even where a folder ``./faces`` exists: say which is used."""
    if source in BUILTIN and Path(source).is_dir():
        print(
            f"[inversion] note: --input {source} is the built-in split; the folder ./{source} here is not "
            f"read (pass --input ./{source} to restore its images)",
            file=sys.stderr,
        )


def _face_items(image_shape: tuple[int, int, int], limit: int | None) -> list[Item]:
    from datamodules.faces import FacesDataset

    c, h, _ = image_shape
    faces = FacesDataset(resolution=h, channels=3 if c == 3 else 1, limit=limit)
    return [
        Item(i, f"faces_{i:02d}_{face.name}.png", (lambda i=i: faces[i]["image"]))
        for i, (face, _) in enumerate(faces.faces)
    ]


def _prior_sample_items(prior, limit: int | None) -> list[Item]:
    from inversion.cli.samples import held_out_samples

    if prior is None:
        raise ValueError("input 'prior_samples' needs the prior")
    n = PRIOR_SAMPLES if limit is None else min(int(limit), PRIOR_SAMPLES)
    return [
        Item(i, f"prior_sample_{i:02d}.png", (lambda i=i: held_out_samples(prior, 1, i)[0])) for i in range(n)
    ]


def _builtin_items(source: str, h: int, limit: int | None) -> list[Item]:
    """The test split of a built-in dataset at resolution ``h`` (its index is its seed key)."""
    if source == "fashion_mnist":
        from datamodules import FashionMNISTDataset

        mode = "pad" if h >= 28 else "resize"
        ds = FashionMNISTDataset("test", resolution=h, resize_mode=mode, limit=limit)
    else:
        from datamodules import EmojiDataset

        ds = EmojiDataset("test", resolution=h, limit=limit)

    def loader(i):
        return lambda: ds[i]["image"]

    return [Item(i, f"{source}_{i:05d}.png", loader(i), int(ds[i]["label"])) for i in range(len(ds))]
