"""The bad-input catalogue: each case that once lost data, hung or passed silently, one test per row.

====  =========================================================  =======================================
item  test                                                       bad input
====  =========================================================  =======================================
1     test_output_names_are_unique_for_any_input_names           a.png, a.PNG, a.jpg, a_png.png, ...
2     test_restore_rejects_a_y_of_the_wrong_shape                y that broadcasts (inpainting, CS)
3     test_one_loader_reads_every_kind_of_file_right             16-bit, palette, LA, RGBA, EXIF, aspect
3     test_cli_and_training_loader_agree                         the two loaders, pixel for pixel
4     test_symlink_loops_count_each_file_once                    symlink loops in a folder
5     test_non_utf8_file_name_gets_metrics_and_grid              a non-UTF-8 file name
6     test_errors_hitting_every_image_fail_before_it             options / operator failing every image
6     test_a_run_that_restored_nothing_fails_unpinned            all fail: exit non-zero, no run.json
7     test_limit_must_be_positive                                --limit 0 / --limit -1
7     test_output_inside_input_is_not_read_back                  --output inside (or equal to) --input
7     test_files_added_between_runs_keep_their_seeds             files added between runs
9     test_non_finite_y_or_lr_is_named_up_front                  NaN / Inf in y, NaN learning rate
10    test_bad_labels_and_restarts_are_rejected                  bad labels, restarts <= 0
10    test_relabelled_checkpoint_kind_is_a_value_error           checkpoint kind relabelled
11    test_sub_folders_are_named_or_restored                     sub-folders (note, --recursive)
11    test_corrupt_checkpoint_advice_is_honest                   advice names no deleted checkpoint
12    test_conditional_critic_starts_at_the_unconditional_scale  conditional critic's first GP
====  =========================================================  =======================================

Item 8 of issue 16 (the demo's step count) is covered with the demo. Shard processes outliving a killed
parent (item 11) go with the torch.distributed launcher.
"""

from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inversion import cli
from lcm.toy import TinyGenerator, blob_images, tiny_prior


def _task(tmp_path: Path, operator: str = "init_args: {factor: 2, kernel: box}", options: str = "") -> Path:
    cfg = tmp_path / "task.yaml"
    cfg.write_text(
        "task: sr2\noperator:\n  class_path: inversion.operators.SuperResolution\n"
        f"  {operator}\noptions: {{csgm_steps: 2, restarts: 1{options}}}\n"
    )
    return cfg


def _args(src, out, cfg, *extra):
    return [
        "--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src),
        "--output", str(out), "--method", "csgm", "--progress", "false", "--num_threads", "1", *extra,
    ]  # fmt: skip


def _blobs(folder: Path, names: list[str], seed: int = 0) -> None:
    x = blob_images(len(names), generator=torch.Generator().manual_seed(seed))
    folder.mkdir(parents=True, exist_ok=True)
    for name, img in zip(names, x, strict=True):
        fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8), "L").save(folder / name, format=fmt)


def _rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


# -- 1 ------------------------------------------------------------------------------------------
def test_output_names_are_unique_for_any_input_names(tmp_path):
    src = tmp_path / "in"
    names = ["a.png", "a.PNG", "a.jpg", "a_png.png", "a.jpg.png", "a_jpg.png", "b.png.png"]
    _blobs(src, names)
    items = cli.list_items(str(src), (1, 16, 16))
    outs = [it.name for it in items]
    assert len(set(outs)) == len(names) and len({o.lower() for o in outs}) == len(names), outs
    assert all(o.endswith(".png") for o in outs)
    assert "a.png" in outs and "a_png.png" in outs  # plain png names are kept
    out = tmp_path / "out"
    cli.main(_args(src, out, _task(tmp_path)))
    rows = _rows(out)
    assert sorted(r["name"] for r in rows) == sorted(outs)
    assert sorted(str(p.relative_to(out / "restored")) for p in (out / "restored").rglob("*.png")) == sorted(
        outs
    )


# -- 2 ------------------------------------------------------------------------------------------
def test_restore_rejects_a_y_of_the_wrong_shape():
    from inversion.methods import restore
    from inversion.operators import CompressedSensing, Inpainting

    prior = tiny_prior()
    with pytest.raises(ValueError, match=r"y has shape \(2, 1, 1, 1\).*\(2, 1, 16, 16\)"):
        restore(torch.rand(2, 1, 1, 1), Inpainting("center"), prior, csgm_steps=1, restarts=1)
    cs = CompressedSensing(0.25, kind="gaussian")
    with pytest.raises(ValueError, match=r"y has shape \(2, 1\).*\(2, 64\)"):
        restore(torch.rand(2, 1), cs, prior, csgm_steps=1, restarts=1)
    with pytest.raises(ValueError, match="x_true"):
        restore(torch.rand(2, 1, 16, 16), Inpainting("center"), prior, x_true=torch.rand(2, 1, 8, 8))


# -- 3 ------------------------------------------------------------------------------------------
def _kinds(folder: Path) -> dict[str, tuple[str, torch.Tensor]]:
    """One file per kind and what it must load as: (file name, expected (C, 8, 8) tensor at channels=3)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    # 16-bit gray at 40000/65535
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(folder / "deep.png")
    out["16-bit"] = ("deep.png", torch.full((3, 8, 8), 40000 / 65535))
    # palette with a transparent entry: index 1 (red) is transparent -> white background
    p = Image.new("P", (8, 8), 0)
    p.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    p.paste(1, (0, 0, 8, 4))
    p.info["transparency"] = 1
    p.save(folder / "palette.png", transparency=1)
    exp = torch.zeros(3, 8, 8)
    exp[2] = 1.0
    exp[:, :4] = 1.0
    out["palette"] = ("palette.png", exp)
    # gray + alpha: gray 0 at alpha 128 -> half way to white
    la = np.stack([np.zeros((8, 8), np.uint8), np.full((8, 8), 128, np.uint8)], -1)
    Image.fromarray(la, "LA").save(folder / "la.png")
    out["gray+alpha"] = ("la.png", torch.full((3, 8, 8), 1 - 128 / 255))
    # RGBA: red hidden under alpha 0 must not show
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    Image.fromarray(rgba, "RGBA").save(folder / "hidden.png")
    out["RGBA"] = ("hidden.png", torch.ones(3, 8, 8))
    # EXIF orientation 6 (rotate 90 CW to display): stored 8 wide x 16 high, left half bright
    arr = np.zeros((16, 8, 3), np.uint8)
    arr[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(folder / "rotated.png", exif=exif.tobytes())
    # displayed: 16 wide x 8 high, top half bright; centre crop 8x8 keeps the top-half split
    exp = torch.zeros(3, 8, 8)
    exp[:, :4] = 1.0
    out["EXIF"] = ("rotated.png", exp)
    # non-square 24 x 8: a bright centre third; centre crop (not squash) gives an all-bright square
    wide = np.zeros((8, 24, 3), np.uint8)
    wide[:, 8:16] = 255
    Image.fromarray(wide).save(folder / "wide.png")
    out["aspect"] = ("wide.png", torch.ones(3, 8, 8))
    return out


def test_one_loader_reads_every_kind_of_file_right(tmp_path):
    from datamodules.io.images import load_image

    for kind, (name, expected) in _kinds(tmp_path).items():
        got = load_image(tmp_path / name, resolution=8, channels=3)
        assert got.shape == (3, 8, 8), kind
        assert torch.allclose(got, expected, atol=1.5 / 255), f"{kind}: {got.mean((1, 2))}"


def test_cli_and_training_loader_agree(tmp_path):
    from datamodules import ImageFolderDataset
    from datamodules.io.images import load_image

    _kinds(tmp_path / "in")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 20, 3), dtype=np.uint8)).save(
        tmp_path / "in" / "noise.png"
    )
    ds = ImageFolderDataset(str(tmp_path / "in"), resolution=8, channels=3)
    items = cli.list_items(str(tmp_path / "in"), (3, 8, 8))
    assert [Path(f).name for f in ds.files] == sorted(p.name for p in (tmp_path / "in").iterdir())
    for i, f in enumerate(ds.files):
        assert torch.equal(ds[i]["image"], load_image(f, resolution=8, channels=3)), f.name
        assert torch.equal(ds[i]["image"], items[i].load()), f.name


# -- 4 ------------------------------------------------------------------------------------------
class _Hang(Exception):
    pass


def _with_alarm(seconds, fn):
    def boom(*_):
        raise _Hang(f"still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_symlink_loops_count_each_file_once(tmp_path):
    from datamodules.image_folder import ImageFolderDataModule, candidate_files

    root = tmp_path / "imgs"
    _blobs(root / "cls", ["a.png", "b.png"])
    os.symlink(".", root / "cls" / "self")
    assert len(_with_alarm(10, lambda: candidate_files(root))) == 2
    os.symlink("..", root / "cls" / "up")
    os.symlink("cls", root / "alias")
    files = _with_alarm(10, lambda: candidate_files(root))
    assert [f.name for f in files] == ["a.png", "b.png"]
    dm = ImageFolderDataModule(str(root), split="all", resolution=8, channels=1)
    dm.setup("test")
    assert len(dm.test_set) == 2


# -- 5 ------------------------------------------------------------------------------------------
def test_non_utf8_file_name_gets_metrics_and_grid(tmp_path):
    src = tmp_path / "in"
    _blobs(src, ["ok.png"])
    raw = os.path.join(os.fsencode(src), b"caf\xe9.png")  # latin-1 name, not valid UTF-8
    try:
        with open(raw, "wb") as f:
            f.write((src / "ok.png").read_bytes())
    except OSError:
        pytest.skip("this file system refuses non-UTF-8 names")
    out = tmp_path / "out"
    cli.main(_args(src, out, _task(tmp_path)))
    assert (out / "grid.png").is_file()
    rows = _rows(out)
    assert len(rows) == 2
    assert os.fsencode(rows[0]["name"]) == b"caf\xe9.png"  # the name on disk, byte for byte
    assert os.path.exists(os.path.join(os.fsencode(out / "restored"), b"caf\xe9.png"))


# -- 6 ------------------------------------------------------------------------------------------
def test_errors_hitting_every_image_fail_before_it(tmp_path):
    src = tmp_path / "in"
    _blobs(src, ["a.png", "b.png"])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="csgm_steps"):
        cli.main(_args(src, out, _task(tmp_path, options=", csgm_steps: 0")))
    assert not (out / "run.json").exists() and not (out / "failed").exists()
    with pytest.raises(ValueError, match="factor"):  # 16x16 images, factor 3
        cli.main(_args(src, out, _task(tmp_path, operator="init_args: {factor: 3, kernel: box}")))
    assert not (out / "run.json").exists() and not (out / "failed").exists()
    cli.main(_args(src, out, _task(tmp_path)))  # the corrected run is not refused
    assert len(_rows(out)) == 2


def test_a_run_that_restored_nothing_fails_unpinned(tmp_path, monkeypatch):
    src = tmp_path / "in"
    _blobs(src, ["a.png", "b.png"])
    out = tmp_path / "out"
    import inversion.methods as methods

    real = methods.restore

    def broken(*a, **k):
        raise RuntimeError("simulated failure of every image")

    monkeypatch.setattr(methods, "restore", broken)
    with pytest.raises(RuntimeError, match="no image was restored"):  # python -m inversion exits 1
        cli.main(_args(src, out, _task(tmp_path)))
    assert not (out / "run.json").exists()
    assert len((out / "failures.txt").read_text().splitlines()) == 2
    monkeypatch.setattr(methods, "restore", real)
    cli.main(_args(src, out, _task(tmp_path, options=", csgm_lr: 0.05")))  # other options: not refused
    assert len(_rows(out)) == 2 and (out / "failures.txt").read_text() == ""


# -- 7 ------------------------------------------------------------------------------------------
def test_limit_must_be_positive(tmp_path):
    src = tmp_path / "in"
    _blobs(src, ["a.png", "b.png"])
    for bad in ("0", "-1"):
        with pytest.raises(ValueError, match="limit"):
            cli.main(_args(src, tmp_path / f"o{bad}", _task(tmp_path), "--limit", bad))


def test_output_inside_input_is_not_read_back(tmp_path):
    src = tmp_path / "in"
    _blobs(src, ["a.png", "b.png"])
    out = src / "results"
    cli.main(_args(src, out, _task(tmp_path), "--recursive", "true"))
    cli.main(_args(src, out, _task(tmp_path), "--recursive", "true"))
    assert sorted(r["name"] for r in _rows(out)) == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="output"):
        cli.main(_args(src, src, _task(tmp_path)))


def test_files_added_between_runs_keep_their_seeds(tmp_path):
    src = tmp_path / "in"
    _blobs(src, ["b.png", "d.png"])
    out = tmp_path / "out"
    cfg = _task(tmp_path)
    cli.main(_args(src, out, cfg))
    first = {r["name"]: r for r in _rows(out)}
    _blobs(src, ["a.png", "c.png"], seed=1)  # sort before and between the first files
    cli.main(_args(src, out, cfg))
    rows = _rows(out)
    assert [r["name"] for r in rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert [int(r["index"]) for r in rows] == [0, 1, 2, 3]  # no duplicate or stale indices
    fresh = tmp_path / "fresh"
    cli.main(_args(src, fresh, cfg))  # a fresh run over all four gives the first files the same result
    again = {r["name"]: r for r in _rows(fresh)}
    for name in ("b.png", "d.png"):
        assert float(again[name]["psnr"]) == pytest.approx(float(first[name]["psnr"]), abs=1e-5)


# -- 9 ------------------------------------------------------------------------------------------
def test_non_finite_y_or_lr_is_named_up_front():
    from inversion.methods import restore
    from inversion.operators import Inpainting

    prior, op = tiny_prior(), Inpainting("center")
    y = op(torch.rand(2, 1, 16, 16))
    for bad in (float("nan"), float("inf")):
        z = y.clone()
        z[1, 0, 3, 3] = bad
        with pytest.raises(ValueError, match=r"^y contains (NaN|Inf)"):
            restore(z, op, prior, csgm_steps=1, restarts=1)
    with pytest.raises(ValueError, match="csgm_lr"):
        restore(y, op, prior, csgm_steps=1, restarts=1, csgm_lr=float("nan"))


# -- 10 -----------------------------------------------------------------------------------------
def test_bad_labels_and_restarts_are_rejected():
    from inversion.methods import restore
    from inversion.operators import Denoising
    from lcm.prior import Prior

    torch.manual_seed(0)
    cond = Prior(TinyGenerator().eval(), "gaussian", (8,), (1, 16, 16), num_classes=3)
    op = Denoising(0.0)
    y = op(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"labels.*\[0, 3\)"):
        restore(y, op, cond, labels=torch.tensor([0, 3]), csgm_steps=1, restarts=1)
    with pytest.raises(ValueError, match="labels"):
        restore(y, op, cond, labels=torch.tensor([0.5, 1.0]), csgm_steps=1, restarts=1)
    with pytest.raises(ValueError, match="unconditional"):
        restore(y, op, tiny_prior(), labels=torch.tensor([0, 1]), csgm_steps=1, restarts=1)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="restarts"):
            restore(y, op, tiny_prior(), csgm_steps=1, restarts=bad)
    restore(y, op, cond, labels=torch.tensor([0, 2]), csgm_steps=1, restarts=1)  # valid labels pass


def test_relabelled_checkpoint_kind_is_a_value_error(tmp_path):
    from lcm import load_prior
    from lcm.modules import WGANGP

    module = WGANGP(latent_dim=8, width=4, critic_width=4, resolution=8, channels=1)
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "genprior_kind": "glo",  # relabelled
    }
    torch.save(ckpt, tmp_path / "x.ckpt")
    with pytest.raises(ValueError, match="glo"):
        load_prior(tmp_path / "x.ckpt")


# -- 11 -----------------------------------------------------------------------------------------
def test_sub_folders_are_named_or_restored(tmp_path, capsys):
    src = tmp_path / "in"
    _blobs(src, ["a.png"])
    _blobs(src / "sub", ["b.png"])
    out = tmp_path / "flat"
    cli.main(_args(src, out, _task(tmp_path)))
    assert [r["name"] for r in _rows(out)] == ["a.png"]
    err = capsys.readouterr().err
    assert "1 image file(s) in sub-folders" in err and "--recursive" in err
    deep = tmp_path / "deep"
    cli.main(_args(src, deep, _task(tmp_path), "--recursive", "true"))
    assert [r["name"] for r in _rows(deep)] == ["a.png", "sub/b.png"]
    assert (deep / "restored" / "sub" / "b.png").is_file()


def test_corrupt_checkpoint_advice_is_honest(tmp_path):
    from lcm import load_prior

    bad = tmp_path / "last.ckpt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError) as err:
        load_prior(bad)
    assert "periodic" not in str(err.value) and "re-copy" in str(err.value)


# -- 12 -----------------------------------------------------------------------------------------
def test_conditional_critic_starts_at_the_unconditional_scale():
    from lcm.losses import gradient_penalty
    from lcm.networks import Critic

    g = torch.Generator().manual_seed(0)
    real = torch.rand(16, 1, 32, 32, generator=g) * 2 - 1
    fake = torch.rand(16, 1, 32, 32, generator=g) * 2 - 1
    labels = torch.randint(0, 10, (16,), generator=g)
    gps, norms = {}, {}
    for k in (0, 10):  # the configs' critic: width 16 at 32x32
        torch.manual_seed(1)
        critic = Critic(1, 32, width=16, num_classes=k)
        lab = labels if k else None
        gps[k] = float(gradient_penalty(critic, real, fake, lab, generator=torch.Generator().manual_seed(2)))
        x = ((real + fake) / 2).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x, lab).sum() if k else critic(x).sum(), x)
        norms[k] = float(grad.flatten(1).norm(dim=1).mean())
    # configs/lcm/wgangp_cond.yaml reported a penalty of 3.4e4 at step 2 (gradient norm ~60x too large)
    assert 1 / 3 < norms[10] / norms[0] < 3, norms
    assert gps[10] < 10 * max(gps[0], 1.0), gps
