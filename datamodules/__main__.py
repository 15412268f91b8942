"""Command line: ``python -m datamodules preview --out outputs/datasets.png [--n 64]``.

Writes one PNG with a grid of samples from each built-in dataset (and optionally an image folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from datamodules._common import seeded_generator
from datamodules.emoji import DEFAULT_FONT as EMOJI_FONT
from datamodules.emoji import EmojiDataModule
from datamodules.fashion_mnist import DEFAULT_DATA_DIR as FASHION_DIR
from datamodules.fashion_mnist import FashionMNISTDataModule
from datamodules.image_folder import ImageFolderDataModule
from datamodules.io.grid import image_grid
from datamodules.io.images import save_png


def sample_grid(datamodule, n: int, seed: int) -> torch.Tensor:
    """A grid of ``n`` seeded random training images as RGB.

    Shape:
        (3, H, W) float32 in [0, 1].
    """
    datamodule.setup("fit")
    dataset = datamodule.train_set
    picks = torch.randperm(len(dataset), generator=seeded_generator(seed, 7))[:n].tolist()
    images = torch.stack([dataset[i]["image"] for i in picks])
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    nrow = max(1, round(len(picks) ** 0.5))
    return image_grid(images, nrow, padding=2, pad_value=0.5)


def _panel(title: str, grid: torch.Tensor, scale: int) -> Image.Image:
    array = grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array).resize(
        (grid.shape[2] * scale, grid.shape[1] * scale), Image.Resampling.NEAREST
    )
    panel = Image.new("RGB", (image.width, image.height + 18), (255, 255, 255))
    ImageDraw.Draw(panel).text((4, 3), title, fill=(0, 0, 0))
    panel.paste(image, (0, 18))
    return panel


def preview(
    out: str,
    n: int = 64,
    resolution: int = 32,
    seed: int = 0,
    scale: int = 2,
    folder: str | None = None,
    fashion_dir: str = FASHION_DIR,
    font_path: str = EMOJI_FONT,
) -> Path:
    """Writes side-by-side sample grids of the built-in datasets (and ``folder``) to ``out`` (PNG, atomic).

    A built-in dataset whose files are missing is skipped with a message naming the fix.
    """
    builders = [
        (
            "Fashion-MNIST",
            lambda: FashionMNISTDataModule(
                resolution=resolution,
                resize_mode="pad" if resolution >= 28 else "resize",
                seed=seed,
                data_dir=fashion_dir,
            ),
        ),
        ("Noto Color Emoji", lambda: EmojiDataModule(resolution=resolution, seed=seed, font_path=font_path)),
    ]
    if folder:
        builders.append(
            (
                f"folder {folder}",
                lambda: ImageFolderDataModule(folder, resolution=resolution, seed=seed, split="all"),
            )
        )
    panels = []
    for name, build in builders:
        try:
            grid = sample_grid(build(), n, seed)
        except FileNotFoundError as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
            continue
        panels.append(_panel(f"{name} ({resolution}x{resolution})", grid, scale))
    if not panels:
        raise SystemExit("no dataset is available: install the data packages named above or pass their paths")
    gap = 8
    sheet = Image.new(
        "RGB",
        (sum(p.width for p in panels) + gap * (len(panels) - 1), max(p.height for p in panels)),
        "white",
    )
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + gap
    path = save_png(sheet, out)
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a PNG grid of samples from each built-in dataset")
    p.add_argument("--out", default="outputs/datasets.png", help="PNG path (default: %(default)s)")
    p.add_argument("--n", type=int, default=64, help="samples per dataset (default: %(default)s)")
    p.add_argument("--resolution", type=int, default=32, help="image side (default: %(default)s)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the split and the samples (default: %(default)s)"
    )
    p.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling (default: %(default)s)")
    p.add_argument("--folder", default=None, help="also preview this image folder")
    p.add_argument(
        "--fashion-dir", default=FASHION_DIR, help="Fashion-MNIST idx files (default: %(default)s)"
    )
    p.add_argument("--font", default=EMOJI_FONT, help="colour emoji font (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.scale < 1:
        parser.error("--n and --scale must be >= 1")
    preview(
        args.out, args.n, args.resolution, args.seed, args.scale, args.folder, args.fashion_dir, args.font
    )


if __name__ == "__main__":
    main()
