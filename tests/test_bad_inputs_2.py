"""The second bad-input catalogue (issue 25): hostile and damaged files, silent label loss, errors that
pointed the wrong way. One test (or a few) per item; each failed before its fix.

====  ======================================================  ==========================================
item  test                                                    bad input
====  ======================================================  ==========================================
1     test_snapshot_view_larger_than_its_storage_is_refused   a 2**28-element view of 4 elements
1     test_snapshot_storage_larger_than_its_bytes_is_refused  a storage of 2**28 elements in 16 bytes
1     test_snapshot_architecture_arguments_are_bounded        num_layers 10**7, img_resolution 2**40
2     test_a_config_cannot_name_code_to_run                   ``prior: "os:getpid"`` in a preset
3     test_damaged_zip_member_is_named                        a byte flipped in last.ckpt / G_ema.pth
4     test_critic_with_a_snapshot_prior_is_not_ignored        ``critic=`` with a ``.pkl`` prior
5     test_labels_csv_*                                       headers, unmatched names, BOM, duplicates
6     test_compare_refuses_other_tasks_and_output_in_a_run    other tasks; --output in a run folder
7     test_resumed_fit_is_bit_identical                       ``lcm fit`` killed, resumed (WGAN-GP, GLO)
8     test_errors_point_the_right_way_*                       NaN buffer, random bytes, missing D key
9     test_class_conditional_stylegan_synthesizes_w_alone     ``synthesize(ws)`` with c_dim > 0
10    test_lightning_noise_is_silenced                        the demo's console
====  ======================================================  ==========================================
"""

from __future__ import annotations

import io
import signal
import sys
import time
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import lcm

DATA = Path(__file__).parent / "data"


class _Hang(Exception):
    pass


def _with_alarm(seconds, fn):
    """``fn()``, or _Hang after ``seconds`` (a loader that builds for minutes fails the test fast)."""

    def on_alarm(*_):
        raise _Hang(f"still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- hand-built snapshot pickles -----------------------------------------------------------------
def _snapshot(tmp_path: Path, g_state: dict, init_kwargs: dict, name: str = "snap.pkl") -> Path:
    """A StyleGAN2-ADA-format pickle: ``{"G_ema": persistence record(init_kwargs, g_state)}``."""
    from tests.lcm.test_stylegan2 import snapshot_pickle

    state = {"_parameters": g_state, "_buffers": {}, "_modules": {}, "_init_kwargs": init_kwargs}
    return snapshot_pickle(tmp_path / name, state)


def _storage_bytes(numel: int = 4) -> bytes:
    """A float storage as NVIDIA's pickles carry it (``torch.storage._load_from_bytes`` of a legacy save)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated: the snapshots hold them all the same
        torch.save(torch.arange(float(numel)).storage(), buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


class _View:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage_bytes: bytes, size: tuple, stride: tuple, offset: int = 0):
        self.args = (_Storage(storage_bytes), offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Storage:
    def __init__(self, b: bytes):
        self.b = b

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.b,))


TINY = {
    "z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 8, "img_channels": 1,
    "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 16, "channel_max": 4},
}  # fmt: skip


# -- 1 ------------------------------------------------------------------------------------------
def test_snapshot_view_larger_than_its_storage_is_refused(tmp_path):
    from lcm.architectures.snapshot import read_snapshot

    path = _snapshot(tmp_path, {"w": _View(_storage_bytes(4), (2**28,), (1,))}, TINY)
    assert path.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"reaches element .* of a storage of 4"):
        read_snapshot(path)  # before: the storage was grown to 1 GiB to fit the view
    assert time.perf_counter() - t0 < 5
    # a negative stride / size is no view of the storage either
    path = _snapshot(tmp_path, {"w": _View(_storage_bytes(4), (4,), (-1,))}, TINY, "neg.pkl")
    with pytest.raises(ValueError, match="tensor view"):
        read_snapshot(path)


def test_snapshot_storage_larger_than_its_bytes_is_refused(tmp_path):
    from lcm.architectures.snapshot import read_snapshot

    raw = _storage_bytes(4)
    # the pickled numel, BININT1 4 -> BININT 2**28: the file declares a 1 GiB storage over 16 bytes
    pos = raw.index(b"K\x04", raw.index(b"cpu"))
    hostile = raw[:pos] + b"J" + (2**28).to_bytes(4, "little") + raw[pos + 2 :]
    path = _snapshot(tmp_path, {"w": _View(hostile, (4,), (1,))}, TINY)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="declares .* bytes"):
        read_snapshot(path)
    assert time.perf_counter() - t0 < 5


def _tiny_state():
    from lcm.architectures import stylegan2 as sg2

    torch.manual_seed(0)
    g = sg2.Generator(**TINY)
    return g, {k: v.clone() for k, v in g.state_dict().items()}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"mapping_kwargs": {"num_layers": 10**7}}, "num_layers"),
        ({"img_resolution": 2**40}, "img_resolution"),
        ({"img_resolution": 12}, "img_resolution"),
        ({"img_resolution": 16}, r"needs blocks"),  # in range, but not what the tensors hold
        ({"synthesis_kwargs": {"channel_base": 10**12}}, "channel_base"),
        ({"w_dim": -3}, "w_dim"),
        ({"z_dim": "4"}, "z_dim"),
    ],
)
def test_snapshot_architecture_arguments_are_bounded(tmp_path, change, match):
    _, state = _tiny_state()
    kwargs = {**TINY, **change}
    path = _snapshot(tmp_path, state, kwargs)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match) as err:
        _with_alarm(20, lambda: lcm.load_prior(path))
    assert "refusing to build" in str(err.value)
    assert time.perf_counter() - t0 < 10
    # the untouched kwargs load (the check refuses only what is out of bounds)
    good = _snapshot(tmp_path, state, TINY, "good.pkl")
    assert lcm.load_prior(good).image_shape == (1, 8, 8)


# -- 3 ------------------------------------------------------------------------------------------
def _flip_in_largest_member(path: Path) -> str:
    """Flip one byte in the middle of the file's largest zip member; returns the member's name."""
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    off = info.header_offset
    name_len = int.from_bytes(raw[off + 26 : off + 28], "little")
    extra_len = int.from_bytes(raw[off + 28 : off + 30], "little")
    data = off + 30 + name_len + extra_len
    raw[data + info.compress_size // 2] ^= 0x01  # the low bit of one byte: still a finite float
    path.write_bytes(bytes(raw))
    return info.filename


def _wgan_ckpt(path: Path) -> Path:
    from lcm.modules import WGANGP

    torch.manual_seed(0)
    module = WGANGP(latent_dim=8, width=4, critic_width=4, resolution=8, channels=1)
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "genprior_kind": "wgangp",
        "genprior_format": 1,
    }
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("kind", ["last.ckpt", "G_ema.pth"])
def test_damaged_zip_member_is_named(tmp_path, kind):
    if kind == "last.ckpt":
        path = _wgan_ckpt(tmp_path / "last.ckpt")
    else:
        ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
        path = tmp_path / "G_ema.pth"
        torch.save(ref["G"], path)
    lcm.load_prior(path)  # intact: loads
    member = _flip_in_largest_member(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() == member  # the damage is there to find
    with pytest.raises(ValueError, match="CRC") as err:
        lcm.load_prior(path)
    assert kind in str(err.value) and member in str(err.value)


# -- 8 (files) ----------------------------------------------------------------------------------
def test_errors_point_the_right_way_nan_weights_at_load(tmp_path):
    path = _wgan_ckpt(tmp_path / "nan.ckpt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["generator.blocks.0.2.running_mean"][1] = float("nan")
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"generator\.blocks\.0\.2\.running_mean.*NaN"):
        lcm.load_prior(path)
    ckpt["state_dict"]["generator.blocks.0.2.running_mean"][1] = float("inf")
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="Inf"):
        lcm.load_prior(path)


def test_errors_point_the_right_way_random_bytes_and_renamed_files(tmp_path):
    rnd = tmp_path / "random.ckpt"
    rnd.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy())
    rnd.write_bytes(b"\x13\x37" + rnd.read_bytes())
    with pytest.raises(ValueError, match=r"not a checkpoint \(not a zip / pickle torch file\)"):
        lcm.load_prior(rnd)
    # a Lightning .ckpt renamed .pkl is read as the checkpoint it is, not as a StyleGAN pickle
    ckpt = _wgan_ckpt(tmp_path / "run.ckpt")
    renamed = tmp_path / "run.pkl"
    renamed.write_bytes(ckpt.read_bytes())
    assert lcm.load_prior(renamed).kind == lcm.load_prior(ckpt).kind


def test_errors_point_the_right_way_biggan_d_missing_a_key(tmp_path):
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    torch.save(ref["G"], tmp_path / "G_ema.pth")
    d = dict(ref["D"])
    del d["embed.weight"]
    torch.save(d, tmp_path / "D.pth")
    with pytest.raises(ValueError, match="missing key.*'embed.weight'"):
        lcm.load_prior(tmp_path / "G_ema.pth", critic=tmp_path / "D.pth")


# -- 2 ------------------------------------------------------------------------------------------
def _folder_task(tmp_path: Path, prior: str) -> Path:
    from datamodules.io.images import save_png
    from lcm.toy import blob_images

    src = tmp_path / "in"
    for i, img in enumerate(blob_images(2, generator=torch.Generator().manual_seed(0))):
        save_png(img, src / f"img{i}.png")
    cfg = tmp_path / "task.yaml"
    cfg.write_text(
        f"prior: {prior!r}\noperator:\n  class_path: inversion.operators.Denoising\n"
        "  init_args: {sigma: 0.0}\noptions: {csgm_steps: 1, restarts: 1}\n"
    )
    return cfg


def test_a_config_cannot_name_code_to_run(tmp_path, monkeypatch):
    from inversion import cli

    marker = tmp_path / "imported"
    (tmp_path / "evil_prior_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\ndef make():\n    return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("os:getpid", "evil_prior_module:make"):
        cfg = _folder_task(tmp_path, spec)
        argv = ["--config", str(cfg), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
        with pytest.raises(FileNotFoundError, match="not a registered prior factory"):
            cli.main([*argv, "--progress", "false"])
    assert not marker.exists() and "evil_prior_module" not in sys.modules  # nothing was imported
    # a missing checkpoint whose path holds a colon says "file not found", not ModuleNotFoundError
    with pytest.raises(FileNotFoundError, match=r"'/x/run:1.pkl': file not found"):
        cli.load_prior_spec("/x/run:1.pkl")
    # the built-in factory, and one registered from Python, still work
    from inversion.cli.prior import PRIOR_FACTORIES, register_prior_factory
    from lcm.toy import tiny_prior

    assert cli.load_prior_spec("lcm.toy:tiny_prior").image_shape == (1, 16, 16)
    monkeypatch.setitem(PRIOR_FACTORIES, "mine", lambda: tiny_prior(channels=3))
    assert cli.load_prior_spec("mine").image_shape == (3, 16, 16)
    register_prior_factory("mine", lambda: tiny_prior(channels=1))
    assert cli.load_prior_spec("mine").image_shape == (1, 16, 16)


# -- 4 ------------------------------------------------------------------------------------------
def test_critic_with_a_snapshot_prior_is_not_ignored(tmp_path):
    snap = DATA / "stylegan2ada_tiny.pkl"
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    torch.save(ref["D"], tmp_path / "D.pth")
    with pytest.raises(ValueError, match=r"stylegan2 checkpoint.*options \['critic'\] are not among"):
        lcm.load_prior(snap, critic=tmp_path / "D.pth")
    for prior in (snap, _wgan_ckpt(tmp_path / "w.ckpt")):  # a critic path that does not exist
        with pytest.raises(FileNotFoundError, match="nope.pth"):
            lcm.load_prior(prior, critic=tmp_path / "nope.pth")


# -- 5 ------------------------------------------------------------------------------------------
def _labelled_items(names):
    from inversion.cli import Item

    return [Item(i, n, lambda: None, source=n) for i, n in enumerate(names)]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a.png,1.0\nb.png,2\n", r"line 1: class '1.0' is not an integer"),
        ("a.png,two\nb.png,2\n", r"line 1: class 'two' is not an integer"),
        ("file,class\na.png,1\nb.png,x\n", r"line 3: class 'x'"),
        ("", "holds no 'file,class' rows"),
        ("file,class\n", "holds no 'file,class' rows"),
        ("a.png,1\nb.png,2\na.png,1\n", r"'a.png' is given twice \(lines 1 and 3\)"),
        ("a.png,1\nb.png,2\na.png,2\n", r"'a.png' is given twice"),
    ],
)
def test_labels_csv_rows_are_strict(tmp_path, text, match):
    from inversion import cli

    p = tmp_path / "labels.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        cli.read_labels(p, 5)


def test_labels_csv_names_must_match_inputs(tmp_path):
    from inversion import cli

    p = tmp_path / "labels.csv"
    p.write_bytes("\ufeffa.png,1\nb.png,2\n".encode())  # a UTF-8 byte-order mark before the first name
    labels = cli.read_labels(p, 5)
    items = _labelled_items(["a.png", "b.png"])
    cli.apply_labels(items, labels)
    assert [it.label for it in items] == [1, 2]
    p.write_text("A.PNG,1\nzzz.png,2\nb,3\n")
    with pytest.raises(ValueError, match=r"2 file\(s\) that match no input.*'A.PNG', 'zzz.png'") as err:
        cli.apply_labels(_labelled_items(["a.png", "b.png"]), cli.read_labels(p, 5))
    assert "did you mean 'a.png'" in str(err.value)
    p.write_bytes(b"caf\xe9.png,1\n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match="not UTF-8 text.*line 1"):
        cli.read_labels(p, 5)
    p.write_text("file,class\nb,3\n")  # header by its exact names; a stem matches
    items = _labelled_items(["a.png", "b.png"])
    cli.apply_labels(items, cli.read_labels(p, 5))
    assert [it.label for it in items] == [-1, 3]


def test_labels_a_run_used_are_recorded(tmp_path, monkeypatch):
    from inversion import cli
    from inversion.cli.prior import PRIOR_FACTORIES
    from lcm.prior import Prior
    from lcm.toy import TinyGenerator

    def cond():
        torch.manual_seed(0)
        return Prior(TinyGenerator().eval(), "gaussian", (8,), (1, 16, 16), num_classes=3)

    monkeypatch.setitem(PRIOR_FACTORIES, "cond3", cond)
    cfg = _folder_task(tmp_path, "cond3")
    (tmp_path / "in" / "img2.png").write_bytes((tmp_path / "in" / "img1.png").read_bytes())
    (tmp_path / "labels.csv").write_text("file,class\nimg0.png,2\nimg2.png,1\n")
    out = tmp_path / "out"
    argv = ["--config", str(cfg), "--input", str(tmp_path / "in"), "--output", str(out), "--limit", "2"]
    opts = "{csgm_steps: 1, restarts: 1, label_candidates: 2}"
    cli.main([*argv, "--labels", str(tmp_path / "labels.csv"), "--options", opts, "--progress", "false"])
    used = (out / "labels.csv").read_text().splitlines()
    assert used == ["file,class", "img0.png,2", "img1.png,-1"]  # img2.png: beyond --limit, not an error


# -- 6 ------------------------------------------------------------------------------------------
def _run_folder(make_task_folder, tmp_path, name, operator, task, *extra):
    from inversion import cli

    op = f"  class_path: inversion.operators.{operator}\n"
    src, cfg = make_task_folder(2, 3, op, "{csgm_steps: 2, restarts: 1}", task=task)
    argv = ["--config", str(cfg), "--prior", "lcm.toy:tiny_prior", "--input", str(src)]
    return cli.main([*argv, "--output", str(tmp_path / name), "--progress", "false", *extra])


def test_compare_refuses_other_tasks_and_output_in_a_run(make_task_folder, tmp_path, capsys):
    import shutil

    from inversion import cli
    from inversion.cli import report

    a = _run_folder(make_task_folder, tmp_path, "a", "SuperResolution\n  init_args: {factor: 2}", "sr2")
    b = _run_folder(
        make_task_folder, tmp_path, "b", "Inpainting\n  init_args: {mask_kind: center}", "inpaint"
    )
    with pytest.raises(ValueError, match=r"different tasks.*'sr2'.*'inpaint'"):
        report.compare([a, b], tmp_path / "cmp")
    c = _run_folder(
        make_task_folder, tmp_path, "c", "SuperResolution\n  init_args: {factor: 2}", "sr2", "--seed", "1"
    )
    before = (a / "report.html").read_bytes()
    for inside in (a, a / "sub"):
        with pytest.raises(ValueError, match="inside the compared run"):
            report.compare([a, c], inside)
    with pytest.raises(SystemExit):
        cli.main(["compare", str(a), str(c), "--output", str(c)])
    assert "inside the compared run" in capsys.readouterr().err
    assert (a / "report.html").read_bytes() == before
    report.compare([a, c], tmp_path / "cmp")  # the same task elsewhere: compared
    # -- 8: a killed, unfinished run is named as such (not "restored different images")
    killed = tmp_path / "killed"
    shutil.copytree(c, killed)
    (killed / "metrics.csv").unlink()
    (killed / "rows" / "img1.json").unlink()
    with pytest.raises(ValueError, match=r"'.*killed' is unfinished"):
        report.compare([a, killed], tmp_path / "cmp2")


# -- 8 (run arguments, labels, explore) ----------------------------------------------------------
def test_errors_point_the_right_way_mask_without_hole_and_zero_sizes(make_task_folder, tmp_path):
    from PIL import Image

    from inversion import cli

    Image.new("L", (16, 16), 0).save(tmp_path / "black.png")  # all observed: no hole
    op = (
        "  class_path: inversion.operators.Inpainting\n"
        f"  init_args: {{mask_kind: file, mask_path: {str(tmp_path / 'black.png')!r}}}\n"
    )

    def argv(op: str) -> list[str]:
        src, cfg = make_task_folder(2, 0, op, "{csgm_steps: 1, restarts: 1}")
        return [
            "--config",
            str(cfg),
            "--prior",
            "lcm.toy:tiny_prior",
            "--input",
            str(src),
            "--progress",
            "false",
        ]

    with pytest.raises(ValueError, match="has no hole"):
        cli.main([*argv(op), "--output", str(tmp_path / "o1")])
    assert not (tmp_path / "o1" / "rows").exists()  # refused up front, before any image's fit
    denoise = argv("  class_path: inversion.operators.Denoising\n  init_args: {sigma: 0.0}\n")
    for flag in ("--batch_size", "--num_threads"):
        with pytest.raises(ValueError, match=flag):
            cli.main([*denoise, "--output", str(tmp_path / "o2"), flag, "0"])


def test_errors_point_the_right_way_bool_labels():
    from lcm.architectures import biggan

    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    big = biggan.biggan_prior(biggan.build_generator(ref["G"]))
    style = lcm.load_prior(DATA / "stylegan2ada_cond64_tiny.pkl")
    for prior in (big, style):
        z = prior.sample_latent(2, torch.Generator().manual_seed(0))
        with pytest.raises(ValueError, match="labels is a bool tensor"):
            prior(z, torch.tensor([True, False]))
    from inversion.methods import restore
    from inversion.operators import Denoising

    y = Denoising(0.0)(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        restore(y, Denoising(0.0), style, labels=torch.tensor([True, False]), csgm_steps=1, restarts=1)


def test_errors_point_the_right_way_explore_y():
    from inversion import restore
    from inversion.exploration.eglass import explore
    from inversion.operators import Inpainting
    from lcm.toy import tiny_prior

    prior, op = tiny_prior(), Inpainting("center")
    y = op(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    res = restore(y, op, prior, "csgm", csgm_steps=2, restarts=1)
    few = {"num_solutions": 1, "ks": [1], "etas": [0.1]}
    for bad in (float("nan"), float("inf")):
        z = y.clone()
        z[1, 0, 0, 0] = bad
        with pytest.raises(ValueError, match=r"^y contains (NaN|Inf)"):
            explore(res, op, z, index=1, **few)
        with pytest.raises(ValueError, match=r"^y contains (NaN|Inf)"):
            explore(prior, op, res.latent[1:2], z[1:2], **few)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = explore(res, op, y, index=1, **few)
    assert torch.equal(one.y, y[1:2])  # the row index says
    with pytest.raises(ValueError, match="3 rows for a RestoreResult of 2"):
        explore(res, op, torch.cat([y, y[:1]]), index=1, **few)


# -- 9 ------------------------------------------------------------------------------------------
def test_class_conditional_stylegan_synthesizes_w_alone():
    prior = lcm.load_prior(DATA / "stylegan2ada_cond64_tiny.pkl")
    z = prior.sample_latent(2, torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 3])
    with torch.no_grad():
        w = prior.code(z, labels)  # the class enters here
        x = prior.synthesize(w)  # NVIDIA's synthesis(ws) takes no labels
        assert torch.equal(x, prior.synthesize(w, labels)) and torch.equal(x, prior(z, labels))
        ws = w.unsqueeze(1).expand(-1, prior.generator.num_ws, -1)
        assert torch.allclose(prior.synthesize(ws), x, atol=1e-6)
    with pytest.raises(ValueError, match="class-conditional"):
        prior.code(z)  # the mapping still needs them


# -- 7 ------------------------------------------------------------------------------------------
def _fit(config: Path, root: Path, max_steps: int, ckpt_path: str | None = None) -> Path:
    from lcm.cli import cli_main

    args = [
        "fit", "-c", str(config), "--trainer.logger=false", f"--trainer.default_root_dir={root}",
        f"--checkpoint.dirpath={root / 'ck'}", "--checkpoint.every_n_train_steps=4",
        "--model.init_args.width=4", "--model.init_args.sample_every_n_steps=0",
        "--data.init_args.limit_train=16", "--data.init_args.limit_val=4", "--data.init_args.batch_size=4",
        "--trainer.val_check_interval=3", "--trainer.limit_val_batches=1", "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false", f"--trainer.max_steps={max_steps}",
        "--model.init_args.val_fit_steps=1", "--model.init_args.val_fd_images=0",
    ]  # fmt: skip
    if "wgangp" in config.name:
        args += ["--model.init_args.critic_width=4", "--model.init_args.latent_dim=8"]
    else:
        args += ["--model.init_args.latent_dim=8"]
    if ckpt_path:
        args.append(f"--ckpt_path={ckpt_path}")
    cli_main(args)
    # the newest checkpoint (Lightning writes last-v1.ckpt when it resumes an older file than last.ckpt)
    return max(
        (root / "ck").glob("last*.ckpt"), key=lambda p: torch.load(p, weights_only=True)["global_step"]
    )


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(path, weights_only=True)
    out = {f"state_dict.{k}": v for k, v in ckpt["state_dict"].items()}
    for i, opt in enumerate(ckpt["optimizer_states"]):
        for p, st in opt["state"].items():
            out.update({f"optimizer{i}.{p}.{k}": v for k, v in st.items() if isinstance(v, torch.Tensor)})
    return out


@pytest.mark.parametrize("name", ["wgangp", "glo"])
def test_resumed_fit_is_bit_identical(tmp_path, name):
    """``lcm fit`` killed after step 7 and resumed in its folder with ``--ckpt_path last`` to step 14 ends
    with every weight and optimiser tensor equal to an uninterrupted run's, whether last.ckpt is from the
    end of step 7 or, as after a kill, from the periodic save at step 4 (epochs of 4 batches: both resumes
    start mid-epoch; validation every 3 batches)."""
    from pytorch_lightning.utilities.warnings import PossibleUserWarning

    config = Path(__file__).resolve().parents[1] / "configs" / "lcm" / f"{name}.yaml"
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    whole = _tensors(_fit(config, tmp_path / "whole", 14))
    for start in ("last", "periodic"):
        root = tmp_path / start
        last = _fit(config, root, 7)
        assert torch.load(last, weights_only=True)["global_step"] == 7
        if start == "periodic":  # killed: last.ckpt is the one the periodic save at step 4 wrote
            (periodic,) = (root / "ck").glob("epoch=*.ckpt")
            assert torch.load(periodic, weights_only=True)["global_step"] == 4
            last.write_bytes(periodic.read_bytes())
        with warnings.catch_warnings():
            warnings.simplefilter("error", PossibleUserWarning)  # "dataloader is not resumable" no more
            warnings.filterwarnings("ignore", ".*does not have many workers")
            warnings.filterwarnings("ignore", ".*in eval mode at the start of training")
            warnings.filterwarnings("ignore", ".*log_every_n_steps")
            resumed = _tensors(_fit(config, root, 14, "last"))
        assert sorted(resumed) == sorted(whole)
        differ = [k for k in whole if not torch.equal(whole[k], resumed[k])]
        assert not differ, f"resumed from {start}: {len(differ)} of {len(whole)} tensors differ: {differ[:5]}"


# -- 10 -----------------------------------------------------------------------------------------
def test_lightning_noise_is_silenced(tmp_path, caplog):
    """The demo's ``lcm fit`` console: no litlogger tip, no ModelCheckpoint example for manual
    optimisation, no pytree deprecation, no "not empty" for a fresh folder (its config.yaml is written
    first); a folder that holds checkpoints still gets the warning, and other warnings still show."""
    config = Path(__file__).resolve().parents[1] / "configs" / "lcm" / "wgangp_demo.yaml"
    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    noise = ("litlogger", "manual optimization", "LeafSpec", "exists and is not empty")
    caplog.set_level("INFO")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _fit(config, tmp_path / "fresh", 8)
        warnings.warn("a warning a user should read", UserWarning, stacklevel=1)
    shown = [str(w.message) for w in seen] + [r.getMessage() for r in caplog.records]
    assert not [m for m in shown if any(n in m for n in noise)], [m[:80] for m in shown]
    assert "a warning a user should read" in shown
    old = tmp_path / "old"
    (old / "ck").mkdir(parents=True)
    (old / "ck" / "epoch=0-step=1.ckpt").write_bytes(b"")  # an earlier run's checkpoint: worth a warning
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _fit(config, old, 2)
    assert any("exists and is not empty" in str(w.message) for w in seen)
