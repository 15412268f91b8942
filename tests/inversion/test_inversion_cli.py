"""``python -m inversion``: folder restoration, metrics.csv, resume, bad images, 2-process split."""

from __future__ import annotations

import csv

import pytest
import torch

from inversion import cli


@pytest.fixture()
def folder(make_task_folder):
    op = "  class_path: inversion.operators.SuperResolution\n"
    op += "  init_args: {factor: 2, kernel: box, sigma: 0.02}\n"
    return make_task_folder(4, 9, op, "{csgm_steps: 6, restarts: 2, iagan_steps: 4}", task="sr2")


def _args(src, cfg, out, *extra):
    return [
        "--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src),
        "--output", str(out), "--method", "iagan", "--progress", "false", "--num_threads", "1", *extra,
    ]  # fmt: skip


def _rows(out):
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_folder_cli_writes_outputs_resumes_and_lists_bad_images(folder, tmp_path, monkeypatch):
    src, cfg = folder
    out = tmp_path / "out"
    cli.main(_args(src, cfg, out))
    rows = _rows(out)
    assert [r["name"] for r in rows] == [f"img{i}.png" for i in range(4)]
    assert {r["method"] for r in rows} == {"iagan"} and {r["task"] for r in rows} == {"sr2"}
    assert all(
        float(r["psnr"]) > 0 and -1 <= float(r["ssim"]) <= 1 and float(r["residual"]) >= 0 for r in rows
    )
    for sub in ("restored", "degraded"):
        assert sorted(p.name for p in (out / sub).iterdir()) == [f"img{i}.png" for i in range(4)]
    assert (out / "grid.png").is_file()
    failures = (out / "failures.txt").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith("broken.png\t")

    # resume: drop one finished image's record; a rerun restores that image only
    (out / "rows" / "img2.json").unlink()
    kept = {n: (out / "restored" / n).stat().st_mtime_ns for n in ("img0.png", "img1.png", "img3.png")}
    import inversion.methods as methods

    calls = []
    real = methods.restore
    monkeypatch.setattr(methods, "restore", lambda *a, **k: calls.append(1) or real(*a, **k))
    cli.main(_args(src, cfg, out))
    assert len(calls) == 1
    assert {n: (out / "restored" / n).stat().st_mtime_ns for n in kept} == kept
    again = _rows(out)
    assert [r["name"] for r in again] == [r["name"] for r in rows]
    assert float(again[2]["psnr"]) == pytest.approx(float(rows[2]["psnr"]), abs=1e-5)  # same seed, same image


def test_cli_rejects_bad_arguments(folder, tmp_path):
    src, cfg = folder
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        cli.main(_args(src, cfg, tmp_path / "o", "--prior", str(tmp_path / "missing.ckpt")))
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        cli.main(_args(tmp_path / "nope", cfg, tmp_path / "o"))
    with pytest.raises(ValueError, match="method"):
        cli.main(_args(src, cfg, tmp_path / "o", "--method", "magic"))
    with pytest.raises(ValueError, match="csgm_stepz"):  # before any image is tried
        cli.main(_args(src, cfg, tmp_path / "o2", "--options", "{csgm_stepz: 3}"))
    assert not (tmp_path / "o2" / "rows").exists()


def test_resume_refuses_a_different_run_and_same_stem_files_keep_apart(folder, tmp_path):
    src, cfg = folder
    from PIL import Image

    Image.open(src / "img1.png").save(src / "img1.bmp")  # same stem as img1.png
    out = tmp_path / "out"
    cli.main(_args(src, cfg, out, "--limit", "4"))  # broken.png, img0.png, img1.bmp, img1.png
    names = sorted(p.name for p in (out / "restored").iterdir())
    assert "img1.png" in names and "img1.bmp.png" in names
    with pytest.raises(ValueError, match="method"):
        cli.main(_args(src, cfg, out, "--method", "csgm", "--options", "{csgm_steps: 6, restarts: 2}"))
    with pytest.raises(ValueError, match="seed"):
        cli.main(_args(src, cfg, out, "--seed", "5"))
    assert len(_rows(out)) == 3
    cli.main(_args(src, cfg, out, "--limit", "5"))  # a larger limit resumes the same run
    assert len(_rows(out)) == 4


@pytest.mark.slow
def test_two_process_run_splits_images_and_matches_one_process(folder, tmp_path):
    src, cfg = folder
    one, two = tmp_path / "one", tmp_path / "two"
    cli.main(_args(src, cfg, one))
    cli.main(_args(src, cfg, two, "--devices", "2"))
    import json

    shards = {json.loads((two / "rows" / f"img{i}.json").read_text())["shard"] for i in range(4)}
    assert shards == {0, 1}
    r1, r2 = _rows(one), _rows(two)
    assert [r["name"] for r in r1] == [r["name"] for r in r2]
    for a, b in zip(r1, r2, strict=True):
        for k in ("psnr", "ssim", "residual"):
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-6, abs=1e-7)
    assert (two / "failures.txt").read_text().startswith("broken.png\t")


def test_every_preset_parses_and_builds_its_operator():
    from pathlib import Path

    from inversion.methods import available_methods
    from inversion.operators import Operator

    root = Path(__file__).resolve().parents[2] / "configs" / "inversion"
    tasks, method_presets = sorted(root.glob("*.yaml")), sorted((root / "methods").glob("*.yaml"))
    assert len(tasks) >= 8 and len(method_presets) >= 2
    parser = cli.build_parser()
    for task in tasks:
        for extra in [[], *(["--config", str(m)] for m in method_presets)]:
            argv = ["--config", str(task), *extra, "--prior", "lcm.toy:tiny_prior"]
            init = parser.instantiate_classes(parser.parse_args(argv))
            assert isinstance(init.operator, Operator), task.name
            assert init.task == task.stem
            assert init.method in available_methods()  # csgm, iagan, dgp, ... (plug-ins register)


def test_per_image_masks_follow_the_image_index():
    from inversion.operators import Inpainting

    op = Inpainting("boxes", box_size=0.25, per_image=True, seed=3)
    batch = op.mask_for(torch.zeros(4, 1, 16, 16))
    op.mask_for(torch.zeros(1, 1, 16, 16))  # fills the operator's cache for batch size 1
    for i in range(4):
        assert torch.equal(cli.operator_for(op, i).mask_for(torch.zeros(1, 1, 16, 16))[0], batch[i])


def test_batched_folder_run_matches_one_image_at_a_time(folder, tmp_path):
    src, cfg = folder
    one, four = tmp_path / "one", tmp_path / "four"
    cli.main(_args(src, cfg, one, "--batch_size", "1"))
    cli.main(_args(src, cfg, four, "--batch_size", "4"))
    a, b = _rows(one), _rows(four)
    assert [r["name"] for r in a] == [r["name"] for r in b] and len(a) == 4
    for ra, rb in zip(a, b, strict=True):
        assert float(ra["psnr"]) == pytest.approx(float(rb["psnr"]), abs=1e-3)
    assert (
        (four / "failures.txt").read_text().startswith("broken.png\t")
    )  # the bad file did not sink its batch
