"""The third bad-input catalogue (issue 31), the CLI side: in-range starts that were the truth, runs that
mixed in one folder, resumes across a changed operator or prior file, FIFOs, interrupted runs, long names
and the CLI's one-line errors. One test (or a few) per item; each failed before its fix.

====  ======================================================  ==========================================
item  test                                                    bad input
====  ======================================================  ==========================================
4     test_no_method_start_is_a_held_out_latent               ``--input prior_samples``, seeds seed + i
4     test_one_csgm_step_on_prior_samples_is_not_at_truth     one CSGM step on ``prior_samples``
5     test_a_run_folder_has_one_owner                         a second run into a folder in use
6     test_resume_across_another_operator_state_is_refused    ``box_size`` 0.3, resumed with 0.5
7     test_resume_after_the_named_prior_file_changed          ``$GENPRIOR_PRIORS`` names another file
10    test_fifo_named_png_is_skipped                          ``mkfifo in/z.png`` (inversion, lcm data)
12    test_sigterm_during_a_restoration_exits_non_zero         ``kill -TERM`` during a CSGM fit
12    test_sigterm_during_lcm_fit_exits_non_zero               ``kill -TERM`` during ``lcm fit``
13    test_long_input_names_are_restored                      a 248-character ``.png``, 255 ``.jpg``
14    test_cli_errors_are_one_line                            ``--output`` a file; ``--debug``
14    test_cli_values_that_failed_deep_in_torch               seed 2**64, ``--device cuda:0``, no GPU
14    test_mask_paths_that_point_the_wrong_way                text file, folder, loop, FIFO, all hole
-     test_minor_float_tiff_faces_folder_picked_class         float TIFF 0-255, ./faces, picked class
11    test_compare_output_in_a_third_run_is_refused           ``compare A B --output C``, C a run
14    test_compare_same_folder_relative_and_absolute          ``--input in`` and ``--input /abs/in``
====  ======================================================  ==========================================
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_bad_inputs_2 import _with_alarm  # fn(), or a failure after a time (a FIFO blocks)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _argv(src, out, op: str = "Denoising", extra=()) -> list[str]:
    return [
        "--prior", "lcm.toy:tiny_prior", "--operator.class_path", f"inversion.operators.{op}",
        *(["--operator.init_args.sigma", "0"] if op == "Denoising" else []),
        "--input", str(src), "--output", str(out), "--progress", "false",
        "--options", "{csgm_steps: 1, restarts: 1}", *extra,
    ]  # fmt: skip


# -- 4 ------------------------------------------------------------------------------------------------
def test_no_method_start_is_a_held_out_latent():
    """Reproduction: ``python -m inversion --input prior_samples --prior dcgan-faces-64 --method csgm``:
    held-out sample i was drawn with seed ``2**40 + i``, and torch's CPU generator keeps 32 bits of a seed,
    so it was the start of image i (seed 0 + i). No start of the first images, for any base seed a run may
    take and with restarts, may equal a held-out latent."""
    from inversion.cli.samples import held_out_latents
    from inversion.methods import init_latents
    from lcm.toy import tiny_prior

    prior = tiny_prior()
    n = 8
    held = held_out_latents(prior, n)
    for base in (0, 1, 2**32, 2**40, 2**63 - 2 * n):
        starts = init_latents(prior, [base + i for i in range(n)], per_image=4)
        dist = (starts[:, None] - held[None]).abs().amax(dim=-1)  # (starts, held out)
        assert float(dist.min()) > 1e-3, f"base seed {base}: a start equals a held-out latent"


def test_one_csgm_step_on_prior_samples_is_not_at_truth(tmp_path):
    """Reproduction: one CSGM step on ``--input prior_samples`` gave 155 dB (the start was the truth)."""
    import csv

    from inversion import cli

    out = tmp_path / "o"
    cli.main(_argv("prior_samples", out, extra=["--limit", "3"]))
    with open(out / "metrics.csv") as f:
        psnr = [float(r["psnr"]) for r in csv.DictReader(f)]
    assert len(psnr) == 3 and max(psnr) < 60, psnr


def _images(folder: Path, n: int = 2, seed: int = 0) -> Path:
    from datamodules.io.images import save_png
    from lcm.toy import blob_images

    for i, img in enumerate(blob_images(n, generator=torch.Generator().manual_seed(seed))):
        save_png(img, folder / f"img{i}.png")
    return folder


# -- 5 ------------------------------------------------------------------------------------------------
def test_a_run_folder_has_one_owner(tmp_path):
    """Reproduction: two ``python -m inversion`` runs started into one ``--output`` at the same moment (csgm
    and iagan): both exit 0, run.json says csgm, every row is IAGAN's. A run into a folder another live run
    holds is refused naming it; the lock file of a run that died blocks nothing."""
    from inversion import cli

    src, out = _images(tmp_path / "in"), tmp_path / "o"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out / '.run.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'pid {os.getpid()} (the other run)'.encode())\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            RuntimeError, match=rf"in use by another run \(pid {holder.pid} \(the other run\)"
        ):
            cli.main(_argv(src, out))
        assert not (out / "run.json").exists() and not (out / "rows").exists()
    finally:
        holder.kill()
        holder.wait()
    cli.main(_argv(src, out))  # the holder died: its lock file is stale and blocks nothing
    assert len(list((out / "rows").glob("*.json"))) == 2


# -- 6, 7 ---------------------------------------------------------------------------------------------
def test_resume_across_another_operator_state_is_refused(tmp_path):
    """Reproduction: a run with inpainting ``box_size: 0.3``, resumed into the same ``--output`` with
    ``box_size: 0.5``, appended the results of another operator (run.json pinned ``repr(operator)``, which
    leaves the box out). Also: compare refuses runs of the same task name but another box."""
    from inversion import cli
    from inversion.cli import report

    src = _images(tmp_path / "in")
    box = ["--operator.init_args.mask_kind", "center", "--operator.init_args.box_size"]
    a = cli.main(_argv(src, tmp_path / "a", "Inpainting", [*box, "0.3", "--limit", "1"]))
    with pytest.raises(ValueError, match=r"operator_state.box_size: 0.3 -> 0.5"):
        cli.main(_argv(src, tmp_path / "a", "Inpainting", [*box, "0.5"]))
    assert len(list((a / "rows").glob("*.json"))) == 1
    b = cli.main(_argv(src, tmp_path / "b", "Inpainting", [*box, "0.5", "--limit", "1"]))
    with pytest.raises(ValueError, match=r"box_size: 0.3 -> 0.5"):
        report.compare([a, b], tmp_path / "cmp")


def test_resume_after_the_named_prior_file_changed(tmp_path, monkeypatch):
    """Reproduction: ``--prior mine`` with ``$GENPRIOR_PRIORS`` naming G1.pth, interrupted, resumed after the
    file names G2.pth: accepted, two priors' results in one run (the name alone was pinned)."""
    import lcm.pretrained as pretrained
    from inversion import cli
    from tests.lcm.test_dcgan import _state, tutorial_generator

    monkeypatch.setattr(pretrained, "_REGISTRY", dict(pretrained._REGISTRY))
    monkeypatch.setattr(pretrained, "_ENV_READ", set())
    for k in (1, 2):
        torch.manual_seed(k)
        torch.save(_state(tutorial_generator(10, 4, 3, 32)), tmp_path / f"G{k}.pth")
    src, out = _images(tmp_path / "in"), tmp_path / "o"

    def run(weights: str, *extra):
        env = tmp_path / f"priors_{weights}.yaml"
        env.write_text(f"mine: {{path: {weights}}}\n")
        monkeypatch.setenv("GENPRIOR_PRIORS", str(env))
        pretrained._ENV_READ.clear()  # as a new process reads it
        argv = _argv(src, out, extra=extra)
        return cli.main([*argv[:1], "mine", *argv[2:]])

    run("G1.pth", "--limit", "1")
    with pytest.raises(ValueError, match=r"prior_file: 'sha256:[0-9a-f]+' -> 'sha256:[0-9a-f]+'"):
        run("G2.pth")
    run("G1.pth")  # the same file again: resumed
    assert len(list((out / "rows").glob("*.json"))) == 2


# -- 11, 14 (compare) ---------------------------------------------------------------------------------
def test_compare_output_in_a_third_run_is_refused(tmp_path, monkeypatch):
    """Reproduction: ``python -m inversion compare A B --output C`` with C a third run's folder replaced
    C's report.html. Also: the same folder given as ``in`` and as ``/abs/in`` was "restored different
    images (only in the first: [], only in the second: [])"."""
    from inversion import cli
    from inversion.cli import report

    src = _images(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    a = cli.main(_argv("in", tmp_path / "a"))
    b = cli.main(_argv(str(src), tmp_path / "b", extra=["--seed", "1"]))
    c = cli.main(_argv(src, tmp_path / "c", extra=["--seed", "2"]))
    before = (c / "report.html").read_bytes()
    for inside in (c, c / "sub"):
        with pytest.raises(ValueError, match="run folder .* has a run.json"):
            report.compare([a, b], inside)
    assert (c / "report.html").read_bytes() == before
    assert report.compare([a, b], tmp_path / "cmp").is_file()  # one folder, two spellings


# -- 10 -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_png_is_skipped(tmp_path, capsys):
    """Reproduction: ``mkfifo in/z.png; python -m inversion --input in ...`` (and a training folder holding
    it) blocked in ``Image.open`` for ever. Non-regular files are skipped with a note, never opened."""
    from datamodules.image_folder import ImageFolderDataset
    from datamodules.io.images import load_image
    from inversion import cli

    src = _images(tmp_path / "in")
    os.mkfifo(src / "z.png")
    out = _with_alarm(60, lambda: cli.main(_argv(src, tmp_path / "o")))
    assert sorted(p.name for p in (out / "rows").glob("*.json")) == ["img0.json", "img1.json"]
    assert "are not regular files (a FIFO" in capsys.readouterr().err
    ds = _with_alarm(60, lambda: ImageFolderDataset(src, split="all", resolution=16, channels=1))
    assert len(ds) == 2
    with pytest.raises(ValueError, match="not a regular file"):
        _with_alarm(10, lambda: load_image(src / "z.png"))


# -- 13 -----------------------------------------------------------------------------------------------
def test_long_input_names_are_restored(tmp_path):
    """Reproduction: an input named with 248 characters: the atomic write's temporary name
    (``.<name>.<random>.tmp``) passed NAME_MAX, and the whole run crashed having restored nothing, with no
    failures.txt. A 255-character ``.jpg`` (output ``<name>.png``, 259) gets a shorter unique name."""
    from PIL import Image

    from inversion import cli

    src = _images(tmp_path / "in", 1)
    png, jpg = "a" * 244 + ".png", "b" * 251 + ".jpg"
    Image.new("L", (16, 16), 90).save(src / png)
    Image.new("RGB", (16, 16), (20, 90, 200)).save(src / jpg)
    out = cli.main(_argv(src, tmp_path / "o"))
    names = [r["name"] for r in (json.loads(p.read_text()) for p in (out / "rows").glob("*.json"))]
    assert sorted(names)[0] == png and len(names) == 3
    short = [n for n in names if n.startswith("b")]
    assert len(short) == 1 and len(short[0]) <= 250 and short[0].endswith(".png")
    assert (out / "restored" / short[0]).is_file() and (out / "failures.txt").read_text() == ""


# -- 12 -----------------------------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _term_when(proc: subprocess.Popen, ready, timeout: float = 240) -> tuple[int, str]:
    """SIGTERM ``proc`` once ``ready()``; its exit code and stderr."""
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() - t0 < timeout, "never got ready"
        time.sleep(0.2)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_sigterm_during_a_restoration_exits_non_zero(tmp_path):
    """Reproduction: ``kill -TERM`` of ``python -m inversion`` during a fit: exit 0 with 1 of 6 images done
    and no message (Lightning ends the fit in a SystemExit without a code). Exit 143, the finished images
    kept and said, and a rerun resumes."""
    src, out = _images(tmp_path / "in", 6), tmp_path / "o"
    argv = _argv(src, out, extra=["--batch_size", "1", "--num_threads", "1"])
    argv[argv.index("--options") + 1] = "{csgm_steps: 4000, restarts: 1}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "inversion", *argv],
        cwd=tmp_path,
        env=_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    rc, err = _term_when(proc, lambda: any((out / "rows").glob("*.json")))
    done = len(list((out / "rows").glob("*.json")))
    assert rc == 143, err[-2000:]
    assert f"interrupted by SIGTERM: {done} of 6 images finished" in err and 1 <= done < 6
    assert "Traceback" not in err and not (out / "metrics.csv").exists()


def test_sigterm_during_lcm_fit_exits_non_zero(tmp_path):
    """Reproduction: ``kill -TERM`` of ``python -m lcm fit``: exit 0 and no training.json. Exit 143, and
    training.json written saying not done."""
    import yaml

    src = _images(tmp_path / "in", 8)
    config = tmp_path / "tiny.yaml"
    model = {"latent_shape": [4, 4, 4], "noise_shape": [2, 2, 2], "hidden": [4], "width": 4,
             "sample_every_n_steps": 0, "optimizer": "adam", "lr": 0.003}  # fmt: skip
    data = {"root": str(src), "resolution": 16, "channels": 1, "batch_size": 4, "split": "all"}
    trainer = {"max_steps": 10**6, "accelerator": "cpu", "enable_progress_bar": False,
               "default_root_dir": str(tmp_path / "run"), "logger": False}  # fmt: skip
    config.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "model": {"class_path": "lcm.LCM", "init_args": model},
        "data": {"class_path": "datamodules.ImageFolderDataModule", "init_args": data},
        "trainer": trainer,
        "checkpoint": {"dirpath": str(tmp_path / "ck"), "every_n_train_steps": 5},
    }))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "lcm", "fit", "-c", str(config)],
        cwd=tmp_path, env=_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rc, err = _term_when(proc, lambda: any((tmp_path / "ck").glob("*.ckpt")))
    assert rc == 143, err[-2000:]
    assert "interrupted by SIGTERM at step" in err
    status = json.loads((tmp_path / "run" / "training.json").read_text())
    assert status["done"] is False and status["global_step"] >= 5


# -- 14 (CLI side) ------------------------------------------------------------------------------------
def test_cli_errors_are_one_line(tmp_path):
    """Reproduction: ``python -m inversion --output notes.txt ...`` (a file): a FileExistsError traceback.
    Every CLI error for a user mistake is one line naming the problem and the fix; ``--debug`` (or
    ``GENPRIOR_DEBUG=1``) shows the traceback."""
    src = _images(tmp_path / "in", 1)
    (tmp_path / "notes.txt").write_text("not a folder")

    def run(*extra, env=()):
        argv = _argv(src, tmp_path / "notes.txt", extra=extra)
        return subprocess.run(
            [sys.executable, "-m", "inversion", *argv], cwd=tmp_path, env={**_env(), **dict(env)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    plain = run()
    lines = plain.stderr.strip().splitlines()
    assert plain.returncode == 2 and len(lines) == 1, plain.stderr[-2000:]
    assert lines[0].startswith("[inversion] error: --output") and "is a file, not a folder" in lines[0]
    for debug in (run("--debug"), run(env={"GENPRIOR_DEBUG": "1"})):
        assert (
            debug.returncode != 0
            and "Traceback" in debug.stderr
            and "is a file, not a folder" in debug.stderr
        )


def test_cli_values_that_failed_deep_in_torch(tmp_path):
    """Reproduction: ``--seed 18446744073709551616`` ("Overflow when unpacking long long" in the first
    fit), ``--device cuda:0`` on a machine without a GPU (torch's driver error)."""
    from inversion import cli

    src = _images(tmp_path / "in", 1)
    for flag in ("--seed", "--noise_seed"):
        with pytest.raises(ValueError, match=rf"{flag} must be an integer in \[0, 2\*\*63"):
            cli.main(_argv(src, tmp_path / "o", extra=[flag, str(2**64)]))
    if not torch.cuda.is_available():
        with pytest.raises(
            ValueError, match=r"--device 'cuda:0': no CUDA GPU is visible here; use --device cpu"
        ):
            cli.main(_argv(src, tmp_path / "o", extra=["--device", "cuda:0"]))
    with pytest.raises(ValueError, match=r"--device 'gpu7' is not a device"):
        cli.main(_argv(src, tmp_path / "o", extra=["--device", "gpu7"]))
    assert not (tmp_path / "o" / "run.json").exists()


def test_mask_paths_that_point_the_wrong_way(tmp_path):
    """Reproduction: ``mask_path:`` a text file (a bare PIL ``UnidentifiedImageError``), a folder, a symlink
    loop, a FIFO (each "does not exist", the FIFO blocking where it was opened); an all-white mask (all
    hole) was accepted without a word."""
    from PIL import Image

    from inversion.operators.masks import load_mask_image

    (tmp_path / "mask.txt").write_text("white = hole\n")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo.png")
    for name, match in (
        ("mask.txt", "is not an image PIL can read"),
        ("folder", "is a folder, not a mask image"),
        ("loop", "is a symlink loop"),
        ("fifo.png", r"is not a regular file \(a FIFO"),
        ("missing.png", "does not exist"),
    ):
        with pytest.raises((ValueError, OSError), match=match):
            _with_alarm(10, lambda name=name: load_mask_image(str(tmp_path / name), 8, 8))
    Image.new("L", (8, 8), 255).save(tmp_path / "white.png")
    with pytest.warns(UserWarning, match="is all hole"):
        assert not load_mask_image(str(tmp_path / "white.png"), 8, 8).any()


def test_minor_float_tiff_faces_folder_picked_class(tmp_path, monkeypatch, capsys):
    """Reproduction (minor items): a float TIFF with values in 0-255 loaded all white (taken as [0, 1] and
    clipped); ``--input faces`` with a ``./faces`` folder of one's own photos restored the built-in faces
    without a word; the class DGP's pick gave an unlabelled image was not recorded."""
    import numpy as np
    from PIL import Image

    from datamodules.io.images import load_image
    from inversion import cli
    from inversion.cli.prior import PRIOR_FACTORIES
    from lcm.prior import Prior
    from lcm.toy import TinyGenerator

    a = np.linspace(0, 200, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(a, "F").save(tmp_path / "f.tif")
    x = load_image(tmp_path / "f.tif")
    torch.testing.assert_close(x[0], torch.from_numpy(np.round(a) / 255.0).float(), atol=1 / 255, rtol=0)
    monkeypatch.chdir(tmp_path)
    from lcm.toy import tiny_prior

    for name in ("faces", "prior_samples"):
        (tmp_path / name).mkdir()
    prior = tiny_prior()
    assert cli.list_items("prior_samples", prior.image_shape, limit=1, prior=prior)[0].source == ""
    err = capsys.readouterr().err
    assert "--input prior_samples is the built-in split; the folder ./prior_samples here is not read" in err

    def cond():
        torch.manual_seed(0)
        return Prior(TinyGenerator().eval(), "gaussian", (8,), (1, 16, 16), num_classes=3)

    monkeypatch.setitem(PRIOR_FACTORIES, "cond3", cond)
    src = _images(tmp_path / "in", 1)
    argv = _argv(
        src, tmp_path / "o", extra=["--options", "{csgm_steps: 1, restarts: 1, label_candidates: 2}"]
    )
    out = cli.main([argv[0], "cond3", *argv[2:]])
    rec = json.loads((out / "rows" / "img0.json").read_text())
    assert rec["label_picked"] is True and 0 <= rec["label"] < 3
