"""The one grid helper (datamodules.io.grid): make_grid layout, nearest upscaling, frames, captions."""

import pytest
import torch
from PIL import Image

from datamodules.io.grid import image_grid, save_image_grid


def test_nearest_upscaling_keeps_pixels_and_layout():
    x = torch.rand(3, 1, 4, 4)
    g = image_grid(x, nrow=2, padding=1, scale=3)
    assert g.shape == (3, 2 * 13 + 1, 2 * 13 + 1)  # RGB (make_grid); 12 px tiles, 1 px pad
    tile = g[:, 1:13, 1:13]
    torch.testing.assert_close(tile[:, ::3, ::3], x[0].expand(3, -1, -1))  # 3x3 blocks
    torch.testing.assert_close(tile[:, 2::3, 2::3], x[0].expand(3, -1, -1))
    assert g[:, 14:, 14:].eq(1.0).all()  # the empty fourth cell is padding (white)
    assert image_grid(x, nrow=3, min_size=64).shape[-1] == 3 * (64 + 2) + 2  # auto scale 16


def test_frames_captions_and_atomic_png(tmp_path):
    x = torch.zeros(2, 1, 8, 8)
    path = save_image_grid(
        x, tmp_path / "g" / "grid.png", nrow=2, frame_colors=[(255, 0, 0), (0, 0, 255)], captions=["a", "b"]
    )
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.height == 2 + 8 + 4 + 16 + 2
        assert im.getpixel((3, 3)) == (255, 0, 0) and im.getpixel((2 + 12 + 2 + 1, 3)) == (0, 0, 255)
        assert im.getpixel((6, 6)) == (0, 0, 0)  # the image inside the frame
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]
    with pytest.raises(ValueError, match="frame_colors has 1"):
        image_grid(x, frame_colors=[(0, 0, 0)])
    with pytest.raises(ValueError, match="non-empty"):
        image_grid(torch.zeros(0, 1, 4, 4))
