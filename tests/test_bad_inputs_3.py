"""The third bad-input catalogue (issue 31), loader and config side: hostile loaders, imports before type
checks, alias bombs, weights that bypassed the checks, unchecked resumes, named priors that were replaced,
errors from deep inside torch / YAML. One test (or a few) per item; each failed before its fix; the
reproduction is in each docstring. (The run-folder / CLI items are in test_bad_inputs_3_cli.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lcm
from tests.test_bad_inputs_2 import _Hang, _wgan_ckpt, _with_alarm

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]


def _zeros(*shape: int) -> torch.Tensor:
    """A stride-0 view: ``shape`` elements over one stored float."""
    return torch.zeros(1).expand(*shape)


def _dcgan_state(width: int, view=torch.zeros) -> dict[str, torch.Tensor]:
    """A tutorial-layout DCGAN generator state dict (nz 4, ``width``, 3 channels), tensors made by ``view``."""
    return {
        "main.0.weight": view(4, width, 4, 4),
        "main.1.weight": view(width),
        "main.1.bias": view(width),
        "main.1.running_mean": view(width),
        "main.1.running_var": view(width) if view is not torch.zeros else torch.ones(width),
        "main.1.num_batches_tracked": torch.tensor(0),
        "main.3.weight": view(width, 3, 4, 4),
    }


# -- 1: every loader allocates only what the stored bytes justify ----------------------------------
def test_dcgan_stride0_views_are_refused_before_building(tmp_path):
    """A 13 KB DCGAN file of stride-0 views at width 2048 loaded as all-zero weights at 2.3 GB resident
    (8192: ~34 GB): ``torch.save({"main.0.weight": torch.zeros(1).expand(100, 2048, 4, 4), ...})``."""
    path = tmp_path / "netG.pth"
    torch.save(_dcgan_state(2048, _zeros), path)
    assert path.stat().st_size < 20_000
    with pytest.raises(ValueError, match=r"main\.\d\.\w+.*overlaps itself.*hostile|overlaps itself"):
        lcm.load_prior(path)
    lcm.load_prior(_save(tmp_path / "ok.pth", _dcgan_state(8)))  # a stored one loads


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_views_past_or_sharing_their_storage_are_refused(tmp_path):
    """Views of one stored tensor declaring more than it holds (two overlapping slices), and the legacy
    (non-zip) format, are refused the same way; a tensor under two names (tied weights) is not."""
    w = torch.randn(8, 4)
    with pytest.raises(ValueError, match="declare 160 bytes over 128 stored"):
        lcm.load_prior(_save(tmp_path / "a.pth", {"main.0.weight": w, "other": w[:2]}))
    legacy = tmp_path / "legacy.pth"
    torch.save(_dcgan_state(512, _zeros), legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="overlaps itself"):
        lcm.load_prior(legacy)
    from lcm.checkpoints import read_torch_file

    tied = read_torch_file(_save(tmp_path / "tied.pt", {"a": w, "b": w}))
    assert torch.equal(tied["a"], tied["b"])


def test_lightning_hyper_parameters_are_bounded_and_checked_before_building(tmp_path):
    """A 19 KB ``.ckpt`` with ``hyper_parameters.mapping_layers: 10**6`` built for 34 s to 4.9 GB; one
    within bounds (40) that the stored tensors do not fill is refused before anything is built."""
    path = _wgan_ckpt(tmp_path / "last.ckpt")
    ckpt = torch.load(path, weights_only=True)
    for layers, match in ((10**6, r"mapping_layers=1000000 is outside \[0, 64\]"), (40, "80 missing")):
        ckpt["hyper_parameters"]["mapping_layers"] = layers
        torch.save(ckpt, path)
        with pytest.raises(ValueError, match=match):
            _with_alarm(5, lambda: lcm.load_prior(path))
    ckpt["hyper_parameters"]["width"] = 2**40
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="width=1099511627776 is outside"):
        lcm.load_prior(path)
    assert _Hang  # (the alarm turns a build that runs on into a failure, not a hang)


def test_biggan_embedding_declared_as_stride0_view_is_refused(tmp_path):
    """A 1 MB BigGAN file declaring ``shared.weight`` for 2**23 classes (a stride-0 view) passed at 4.6 GB
    (2**18 rows here: the old loader then builds a 128 MB embedding)."""
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    g = dict(ref["G"])
    g["shared.weight"] = _zeros(2**18, g["shared.weight"].shape[1])
    with pytest.raises(ValueError, match=r"size \(262144, 128\).*overlaps itself"):
        lcm.load_prior(_save(tmp_path / "G_ema.pth", g))


def test_finite_check_does_not_copy_a_stride0_view():
    """The finite-weights check itself allocated 8 GB for a stride-0 tensor and failed with a bare
    RuntimeError: now the view is named before any copy (2**40 elements over one float)."""
    from lcm.checkpoints import check_finite

    with pytest.raises(ValueError, match=r"'w'.*overlaps itself"):
        check_finite({"w": torch.full((1,), float("nan")).expand(2**20, 2**20)}, "state")


# -- 8: the weight checks see every key and refuse what is no float weight -------------------------
def test_nan_under_netG_state_dict_beside_state_dict_is_refused(tmp_path):
    """``{"netG_state_dict": <NaN weights>, "state_dict": {}}`` loaded (only ``state_dict`` was checked)
    and every image then failed after its fit; ``G`` the same."""
    bad = _dcgan_state(8)
    bad["main.0.weight"] = torch.randn(4, 8, 4, 4)
    bad["main.0.weight"][0, 0, 0, 0] = float("nan")
    for key in ("netG_state_dict", "G"):
        path = _save(tmp_path / f"{key}.pth", {key: bad, "state_dict": {}})
        with pytest.raises(ValueError, match=rf"'{key}\.main\.0\.weight' holds NaN"):
            lcm.load_prior(path)


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("main.1.running_var", -torch.ones(8), "running variance.*negative"),
        ("main.0.weight", torch.ones(4, 8, 4, 4, dtype=torch.int32), "torch.int32, not a floating-point"),
        ("main.0.weight", torch.ones(4, 8, 4, 4, dtype=torch.bool), "torch.bool, not a floating-point"),
        ("main.1.bias", torch.ones(8, dtype=torch.complex64), "torch.complex64, not a floating-point"),
    ],
)
def test_negative_variances_and_non_float_weights_are_refused(tmp_path, key, value, match):
    """Negative BatchNorm running variances and int / bool / complex weights loaded silently (cast to
    float by ``load_state_dict``)."""
    state = _dcgan_state(8)
    state[key] = value
    with pytest.raises(ValueError, match=match):
        lcm.load_prior(_save(tmp_path / "netG.pth", state))
