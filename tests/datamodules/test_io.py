"""datamodules.io, the bottom layer for files: importable without Lightning, atomic writes fsync before the
rename and leave the target untouched on error, one PNG writer for tensors and PIL images."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from datamodules.io.atomic import atomic_write, atomic_write_bytes
from datamodules.io.images import load_image, png_bytes, save_png, to_pil

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module", ["datamodules.io.images", "datamodules.io.grid", "datamodules.io.html", "datamodules.io.atomic"]
)
def test_file_layer_does_not_import_lightning(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if 'lightning' in m))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"{module} imports Lightning: {out.stdout.strip()}"


def test_datamodules_package_is_lazy_but_exports_its_classes():
    code = (
        "import sys, datamodules; assert 'pytorch_lightning' not in sys.modules; "
        "from datamodules import FashionMNISTDataset, ImageFolderDataModule; "
        "assert 'pytorch_lightning' in sys.modules; print(FashionMNISTDataset.__module__)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "datamodules.fashion_mnist"
    import datamodules

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        datamodules.Nope  # noqa: B018


def test_atomic_write_fsyncs_the_file_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    path = atomic_write_bytes(tmp_path / "sub" / "a.bin", b"hello")
    assert path.read_bytes() == b"hello" and oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert events[:2] == ["fsync", "replace"]  # the data reaches the disk before it replaces the target
    assert events.count("fsync") == 2  # and the folder entry after the rename


def test_atomic_write_leaves_the_target_and_no_temporary_file_on_error(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_save_png_takes_tensors_and_pil_images_alike_and_round_trips(tmp_path):
    x = torch.rand(3, 5, 7)
    a = save_png(x, tmp_path / "a.png")
    b = save_png(to_pil(x), tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes() == png_bytes(x)
    assert torch.equal(load_image(a), (x * 255).round() / 255)
    gray = save_png(torch.rand(1, 4, 4), tmp_path / "g.png")
    assert load_image(gray).shape == (1, 4, 4)
    with pytest.raises(ValueError, match="C in \\(1, 3\\)"):
        save_png(torch.rand(2, 4, 4), tmp_path / "bad.png")
