"""Real face photos that ship inside installed packages, cropped to the face and resized (default 64 px).

Public-domain / CC0 photographs, found in the installed packages' folders (``importlib.util.find_spec``,
which imports nothing), each cropped by a fixed square box ``(left, top, right, bottom)`` in the
source's pixels around the head (hair to chin, a little background, as the DigiFace-1M face DCGAN
``dcgan-faces-64`` frames its faces), then resized with Lanczos:

* ``grace_hopper``: Rear Admiral Grace Hopper (US Navy photograph, public domain), matplotlib's
  ``mpl-data/sample_data/grace_hopper.jpg`` (512x600), box (120, 80, 400, 360);
* ``astronaut``: astronaut Eileen Collins (NASA, public domain), scikit-image's ``data/astronaut.png``
  (512x512), box (140, 15, 310, 185);
* ``cameraman``: scikit-image's ``data/camera.png`` (512x512, CC0 by the photographer Lav Varshney),
  grey (repeated to RGB for a colour prior) and in profile: the hardest of the three, box
  (135, 45, 295, 205).

scikit-image is a development dependency (``pip install scikit-image``): without it only the matplotlib
photo is listed (with a warning).
"""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["FACES", "FacesDataset", "Face", "face_path"]


@dataclass(frozen=True)
class Face:
    name: str
    package: str  # the installed package (import name) that ships the photo
    pip: str  # its pip name
    file: str  # the photo's path inside the package folder
    box: tuple[int, int, int, int]  # (left, top, right, bottom), square, in the source's pixels


FACES = (
    Face(
        "grace_hopper",
        "matplotlib",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        (120, 80, 400, 360),
    ),
    Face("astronaut", "skimage", "scikit-image", "data/astronaut.png", (140, 15, 310, 185)),
    Face("cameraman", "skimage", "scikit-image", "data/camera.png", (135, 45, 295, 205)),
)


def face_path(face: Face) -> Path | None:
    """The photo's file in its installed package, or None when the package (or the file) is missing."""
    try:
        spec = importlib.util.find_spec(face.package)
    except (ImportError, ValueError):
        return None
    for d in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(d) / face.file).is_file():
            return Path(d) / face.file
    return None


def _crop(path: Path, box: tuple[int, int, int, int], resolution: int, channels: int) -> torch.Tensor:
    with Image.open(path) as im:
        w, h = im.size
        if not (0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h):
            raise ValueError(f"{str(path)!r} ({w}x{h}) is not the photo the crop box {box} was made for")
        im = im.convert("RGB" if channels == 3 else "L").crop(box)
        im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr.copy())
    return x.permute(2, 0, 1) if x.dim() == 3 else x[None]


class FacesDataset(torch.utils.data.Dataset):
    """The face photos above as ``{"image": (C, R, R) in [0, 1], "index": i, "label": -1, "name": str}``.

    Args:
        resolution: output side (default 64, the face DCGAN's).
        channels: 3 (RGB; grey photos repeated) or 1 (luminance).
        limit: at most this many photos.

    Raises:
        FileNotFoundError: none of the photos' packages is installed.
    """

    def __init__(self, resolution: int = 64, channels: int = 3, limit: int | None = None):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if not 8 <= int(resolution) <= 512:
            raise ValueError(f"resolution must lie in [8, 512], got {resolution}")
        found = [(f, face_path(f)) for f in FACES]
        missing = sorted({f.pip for f, p in found if p is None})
        self.faces = [(f, p) for f, p in found if p is not None]
        if not self.faces:
            raise FileNotFoundError(f"no face photo found: install {' and '.join(missing)} (pip install ...)")
        if missing:
            warnings.warn(
                f"faces: {len(FACES) - len(self.faces)} photo(s) skipped, their package is not installed "
                f"(pip install {' '.join(missing)})",
                stacklevel=2,
            )
        if limit is not None:
            self.faces = self.faces[: max(0, int(limit))]
        self.resolution, self.channels = int(resolution), channels

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict:
        face, path = self.faces[i]
        image = _crop(path, face.box, self.resolution, self.channels)
        return {"image": image, "index": torch.tensor(i), "label": torch.tensor(-1), "name": face.name}
