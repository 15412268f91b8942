"""``--degraded true``: the benchmark mode's ``measurements/`` fed back restore as the benchmark did
(PSNR within 0.3 dB), runs without truth, and a folder of mixed real-photo formats."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from inversion import cli

OPS = {
    "sr4": "  class_path: inversion.operators.SuperResolution\n  init_args: {factor: 4}\n",
    "inpaint": "  class_path: inversion.operators.Inpainting\n  init_args: {box_size: 0.4}\n",
    "cs": "  class_path: inversion.operators.CompressedSensing\n  init_args: {ratio: 0.3, kind: fourier}\n",
}


def _run(cfg, src, out, *extra):
    cli.main([
        "--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src), "--output", str(out),
        "--method", "csgm", "--progress", "false", "--num_threads", "1", "--batch_size", "1", *extra,
    ])  # fmt: skip
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _mean(rows, k):
    return sum(float(r[k]) for r in rows) / len(rows)


@pytest.mark.parametrize("task", ["sr4", "inpaint", "inpaint_rgb_masks", "cs"])
def test_measurements_fed_back_restore_as_the_benchmark(make_task_folder, tmp_path, task):
    src, cfg = make_task_folder(3, 5, OPS[task.split("_")[0]], "{csgm_steps: 30, restarts: 1}")
    (src / "broken.png").unlink()
    bench = _run(cfg, src, tmp_path / "bench")
    meas = tmp_path / "bench" / "measurements"
    extra = []
    if task == "inpaint_rgb_masks":  # the hole only in the mask files: the photos lose their alpha
        for p in meas.glob("*.png"):
            Image.open(p).convert("RGB").save(p)
        extra = ["--masks", str(meas / "masks")]
    truth = str(tmp_path / "bench" / "truth")
    back = _run(cfg, meas, tmp_path / "back", "--degraded", "true", "--truth", truth, *extra)
    assert len(back) == 3
    assert abs(_mean(back, "psnr") - _mean(bench, "psnr")) < 0.3
    none = _run(cfg, meas, tmp_path / "none", "--degraded", "true", *extra)
    assert "psnr" not in none[0] and float(none[0]["residual"]) >= 0
    for sub in ("restored", "residual", "degraded"):
        assert all((tmp_path / "none" / sub / r["name"]).is_file() for r in none)
    cli.main(["compare", str(tmp_path / "none"), str(tmp_path / "back"), "--output", str(tmp_path / "cmp")])
    assert (tmp_path / "cmp" / "report.html").stat().st_size > 1000


def test_mixed_real_photos_restore_once_upright_and_a_bad_mask_fails_alone(tmp_path):
    src, masks = tmp_path / "photos", tmp_path / "masks"
    src.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    rgb = (rng.random((30, 20, 3)) * 255).astype(np.uint8)
    ex = Image.Exif()
    ex[0x0112] = 6  # orientation 6: shown rotated by 90 degrees
    Image.fromarray(rgb).save(src / "a_exif.jpg", exif=ex)
    Image.fromarray((rng.random((24, 24)) * 65535).astype(np.uint16)).save(src / "b_16bit.png")
    Image.fromarray(rgb).convert("P").save(src / "c_palette.png")
    rgba = np.dstack([rgb[:20], np.full((20, 20), 255, np.uint8)])
    rgba[6:12, 6:12, 3] = 0
    Image.fromarray(rgba).save(src / "d_rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(src / "e_grey.jpg")
    hole = np.zeros((30, 20), np.uint8)
    hole[10:18, 5:12] = 255
    Image.fromarray(hole.T.copy()).save(masks / "a_exif.png")  # the upright photo is 20 tall, 30 wide
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(masks / "b_16bit.png")  # no hole: that image fails
    Image.fromarray(hole).save(masks / "c_palette.png")
    Image.fromarray(hole[:20]).save(masks / "e_grey.png")  # wrong size for the 30x20 grey photo
    cfg = tmp_path / "task.yaml"
    cfg.write_text("operator:\n" + OPS["inpaint"] + "options: {csgm_steps: 5, restarts: 1}\n")
    rows = _run(cfg, src, tmp_path / "out", "--degraded", "true", "--masks", str(masks))
    assert sorted(r["name"] for r in rows) == ["a_exif.jpg.png", "c_palette.png", "d_rgba.png"]
    fails = (tmp_path / "out" / "failures.txt").read_text()
    assert (
        "b_16bit.png" in fails
        and "no hole" in fails
        and "e_grey.jpg" in fails
        and "is 20x20, its photo is 20x30" in fails
    )
    notes = {r["name"]: r["note"] for r in rows}
    assert "30x20 photo" in notes["a_exif.jpg.png"] and "transparent" in notes["d_rgba.png"]
    framed = Image.open(tmp_path / "out" / "framed" / "a_exif.jpg.png")
    assert framed.size == (30, 20)  # upright (EXIF applied), pasted back at the photo's size


def test_colorization_measurements_fed_back_restore_as_the_benchmark(tmp_path):
    import torch

    from datamodules.io.images import save_png
    from inversion.cli.prior import register_prior_factory
    from lcm.toy import blob_images, tiny_prior

    register_prior_factory("test:rgb_tiny", lambda: tiny_prior(channels=3))
    src = tmp_path / "in"
    for i, img in enumerate(blob_images(3, channels=3, generator=torch.Generator().manual_seed(2))):
        save_png(img, src / f"c{i}.png")
    cfg = tmp_path / "task.yaml"
    cfg.write_text("operator:\n  class_path: inversion.operators.Colorization\noptions: {csgm_steps: 30}\n")
    args = ["--prior", "test:rgb_tiny"]
    bench = _run(cfg, src, tmp_path / "bench", *args)
    assert Image.open(tmp_path / "bench" / "measurements" / "c0.png").mode == "L"  # the grey photo
    truth = str(tmp_path / "bench" / "truth")
    back = _run(cfg, tmp_path / "bench" / "measurements", tmp_path / "back", *args, "--degraded", "true",
                "--truth", truth)  # fmt: skip
    assert abs(_mean(back, "psnr") - _mean(bench, "psnr")) < 0.3
