"""The `faces` input (real face photos from installed packages) and `prior_samples` (the in-range set)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from datamodules import faces as F
from inversion import cli
from inversion.cli.samples import held_out_samples
from lcm.architectures import dcgan

HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None


def test_faces_input_yields_64px_rgb_face_crops():
    items = cli.list_items("faces", (3, 64, 64))
    assert len(items) == (3 if HAVE_SKIMAGE else 1)
    assert items[0].name == "faces_00_grace_hopper.png"
    for it in items:
        x = it.load()
        assert x.shape == (3, 64, 64) and x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and float(x.std()) > 0.05  # a real photo
    assert len(cli.list_items("faces", (3, 64, 64), limit=1)) == 1
    gray = F.FacesDataset(resolution=32, channels=1)[0]["image"]
    assert gray.shape == (1, 32, 32)


@pytest.mark.skipif(not HAVE_SKIMAGE, reason="scikit-image not installed (a dev dependency)")
def test_the_grey_photo_is_repeated_to_rgb_and_the_crop_is_the_documented_box():
    ds = F.FacesDataset()
    cam = next(i for i, (f, _) in enumerate(ds.faces) if f.name == "cameraman")
    x = ds[cam]["image"]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    from PIL import Image

    face, path = ds.faces[0]
    with Image.open(path) as im:
        want = im.convert("RGB").crop(face.box).resize((64, 64), Image.Resampling.LANCZOS)
    got = (ds[0]["image"].permute(1, 2, 0) * 255).round().to(torch.uint8)
    assert torch.equal(got, torch.from_numpy(np.array(want)))


def test_faces_without_their_packages_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(F, "face_path", lambda face: None)
    with pytest.raises(FileNotFoundError, match="install matplotlib"):
        F.FacesDataset()


def test_a_crop_box_outside_the_photo_is_refused(monkeypatch, tmp_path):
    from PIL import Image

    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    monkeypatch.setattr(F, "face_path", lambda face: tmp_path / "small.png")
    with pytest.raises(ValueError, match="not the photo the crop box"):
        F.FacesDataset()[0]


def test_prior_samples_input_is_the_priors_held_out_samples():
    torch.manual_seed(0)
    prior = dcgan.dcgan_prior(dcgan.DCGANGenerator([6, 8, 4, 3]).eval())
    items = cli.list_items("prior_samples", prior.image_shape, limit=3, prior=prior)
    assert [it.name for it in items] == [f"prior_sample_{i:02d}.png" for i in range(3)]
    x = torch.stack([it.load() for it in items])
    torch.testing.assert_close(x, held_out_samples(prior, 3))
    torch.testing.assert_close(x[2:], held_out_samples(prior, 1, start=2))  # independent of n
    # no method's start: restore() seeds from small integers
    from inversion.methods import init_latents

    with torch.no_grad():
        starts = prior(init_latents(prior, range(16)))
    assert all(float((starts - s).flatten(1).abs().amax(dim=1).min()) > 1e-3 for s in x)  # per start
    with pytest.raises(ValueError, match="needs the prior"):
        cli.list_items("prior_samples", prior.image_shape)
