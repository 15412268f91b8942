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
    """A tutorial-layout DCGAN generator state dict (nz 4, ``width``, 3 channels) of ``view`` tensors."""
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


def test_biggan_width_read_from_a_small_tensor_builds_nothing_the_file_does_not_fill(tmp_path):
    """The BigGAN loader read ``ch`` from ``output_layer.2.weight`` (3 x ch x 3 x 3) and built the whole
    network before the strict load: that one tensor at ch = 512 (55 KB) asked for 7.7 GB of parameters
    (ch = 2048: ~124 GB). Now the configuration is built on the meta device and checked first."""
    import resource

    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    g = dict(ref["G"])
    g["output_layer.2.weight"] = torch.randn(3, 512, 3, 3)
    path, before = _save(tmp_path / "G_ema.pth", g), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"does not match the BigGAN architecture.*wrong-shape"):
        lcm.load_prior(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 2**21, f"the refused file made the process peak grow by {grown_kib} KiB"


def test_user_torch_files_go_through_the_checked_reader(tmp_path):
    """A CS measurement ``.pt`` of ``--degraded true`` and a CRI classifier checkpoint were read with a bare
    ``torch.load``: a stride-0 view of 2**20 x 2**10 floats over one stored value loaded (4 GB asked)."""
    from inversion.cli.degraded import _cs
    from inversion.cri.classifier import load_classifier
    from inversion.operators import CompressedSensing

    bomb = _save(tmp_path / "y.pt", _zeros(2**20, 2**10))
    with pytest.raises(ValueError, match="overlaps itself"):
        _cs(bomb, {}, CompressedSensing(0.5, image_shape=[1, 8, 8]))
    with pytest.raises(ValueError, match="overlaps itself"):
        load_classifier(
            _save(
                tmp_path / "cls.ckpt",
                {"genprior_cri_classifier": 1, "state_dict": {"w": _zeros(2**20, 2**10)}},
            )
        )


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


# -- 2: a class_path imports nothing before its type is checked -------------------------------------
def _cli(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "args",
    [
        ["-m", "inversion", "--prior", "lcm.toy:tiny_prior", "--operator.class_path", "{}"],
        ["-m", "lcm", "fit", "-c", str(ROOT / "configs/lcm/wgangp.yaml"), "--model.class_path", "{}"],
        ["-m", "lcm", "fit", "-c", str(ROOT / "configs/lcm/wgangp.yaml"), "--trainer.callbacks", "{}"],
    ],
    ids=["operator", "model", "callbacks"],
)
def test_class_path_imports_nothing_before_its_type_is_checked(tmp_path, args):
    """``python -m inversion --operator.class_path evilop.Foo`` with an ``evilop.py`` in the current folder
    imported it (a marker file appeared) before "not a subclass of Operator"; ``this.Foo`` printed the Zen
    of Python. (``lcm fit``: ``--model.class_path``, ``--data.class_path``, ``--trainer.callbacks``,
    ``--trainer.logger`` the same.)"""
    marker = tmp_path / "MARKER"
    (tmp_path / "evilop.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Foo:\n    pass\n")
    for name in ("evilop.Foo", "this.Foo", "inversion.__main__.Foo"):
        done = _cli([a.replace("{}", name) for a in args], tmp_path)
        assert done.returncode != 0
        assert "not allowed" in done.stderr and name in done.stderr, done.stderr[-2000:]
        assert "Beautiful is better than ugly" not in done.stdout + done.stderr
    assert not marker.exists()


def test_class_paths_of_our_packages_still_resolve(tmp_path):
    """The gate lets genprior's own classes (and Lightning's loggers) through, in configs and flags."""
    from inversion.cli.parser import build_parser
    from inversion.operators import Inpainting

    parser = build_parser()
    cfg = parser.parse_args(["--prior", "x", "--config", str(ROOT / "configs/inversion/inpaint_center.yaml")])
    assert isinstance(parser.instantiate_classes(cfg).operator, Inpainting)
    from lcm.cli import cli_main

    cli = cli_main(
        ["-c", str(ROOT / "configs/lcm/wgangp.yaml"), f"--trainer.default_root_dir={tmp_path}",
         f"--checkpoint.dirpath={tmp_path / 'ck'}"],
        run=False,
    )  # fmt: skip
    assert type(cli.model).__name__ == "WGANGP" and cli.trainer.logger is not None
    # a package of the user's own, allowed from Python
    from lcm.configs import allow_class_paths

    (tmp_path / "my_ops_i31").mkdir()
    (tmp_path / "my_ops_i31" / "__init__.py").write_text(
        "from inversion.operators import Denoising\n\nclass Mine(Denoising):\n    pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        allow_class_paths("my_ops_i31")
        cfg = parser.parse_args(["--prior", "x", "--operator", "my_ops_i31.Mine", "--operator.sigma", "0"])
        assert type(parser.instantiate_classes(cfg).operator).__name__ == "Mine"
    finally:
        sys.path.remove(str(tmp_path))


# -- 3: YAML alias bombs ---------------------------------------------------------------------------
_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_config_alias_bomb_is_refused(tmp_path):
    """A 363-byte ``--config`` of nested aliases ("billion laughs", 9**9 values) took 5 GB and printed a
    580 MB error: now the parser refuses it, naming the aliases, before anything is expanded."""
    from inversion.cli.parser import build_parser

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_BOMB)
    assert len(_BOMB) < 400
    parser = build_parser()
    parser.exit_on_error = False  # jsonargparse: raise instead of exiting
    with pytest.raises(Exception, match="aliases .* expand it to more than 100000"):
        _with_alarm(10, lambda: parser.parse_args(["--config", str(bomb), "--prior", "x"]))
    big = tmp_path / "big.yaml"
    big.write_text("prior: x\n" + "#" * (2 << 20))
    with pytest.raises(Exception, match="more than the 1048576 a config may have"):
        parser.parse_args(["--config", str(big)])
    from lcm.configs import load_yaml

    assert load_yaml("a: &a [1, 2]\nb: *a\n", "x") == {"a": [1, 2], "b": [1, 2]}  # a few aliases are fine


def test_priors_file_alias_bomb_is_refused(tmp_path, monkeypatch):
    """A 410-byte ``$GENPRIOR_PRIORS`` file of nested aliases took 1.1 GB."""
    bomb = tmp_path / "priors.yaml"
    bomb.write_text(_BOMB + "mine: {path: netG.pth, description: *i}\n")
    monkeypatch.setenv("GENPRIOR_PRIORS", str(bomb))
    with pytest.raises(ValueError, match=r"\$GENPRIOR_PRIORS file .*priors\.yaml.*aliases"):
        _with_alarm(10, lcm.list_priors)


# -- 7 (names): a named prior is what its name says ------------------------------------------------
def _generator_file(path: Path) -> Path:
    from lcm.architectures.dcgan import DCGANGenerator

    torch.manual_seed(0)
    return _save(path, DCGANGenerator([4, 8, 3]).state_dict())


def test_priors_file_cannot_replace_a_builtin_or_drop_a_critic(tmp_path, monkeypatch):
    """A ``$GENPRIOR_PRIORS`` entry ``dcgan-faces-64: {path: mine.pth}`` silently replaced the built-in
    prior; ``critc: netD.pth`` (a typo) dropped the critic without a word."""
    _generator_file(tmp_path / "mine.pth")
    env = tmp_path / "priors.yaml"
    monkeypatch.setenv("GENPRIOR_PRIORS", str(env))
    env.write_text("dcgan-faces-64: {path: mine.pth}\n")
    with pytest.raises(ValueError, match="'dcgan-faces-64' would replace the prior of that name"):
        lcm.list_priors()
    env.write_text("mine: {path: mine.pth, critc: netD.pth}\n")
    with pytest.raises(ValueError, match=r"entry 'mine' has unknown keys \['critc'\]"):
        lcm.list_priors()
    env.write_text("mine: {path: mine.pth}\n")
    assert lcm.load_prior("mine").image_shape == (3, 8, 8)
    other = tmp_path / "other.yaml"  # the variable now names another file: the old file's names go
    other.write_text("theirs: {path: mine.pth}\n")
    monkeypatch.setenv("GENPRIOR_PRIORS", str(other))
    assert "theirs" in lcm.list_priors() and "mine" not in lcm.list_priors()


def test_a_file_named_like_a_prior_does_not_take_its_place(tmp_path, monkeypatch):
    """A file named ``dcgan-faces-64`` in the current folder was loaded in place of the named prior."""
    from inversion.cli.prior import load_prior_spec

    monkeypatch.chdir(tmp_path)
    _generator_file(tmp_path / "dcgan-faces-64")
    for load in (lcm.load_prior, load_prior_spec):
        with pytest.raises(
            ValueError, match="both a registered prior .* pass './dcgan-faces-64' for the file"
        ):
            load("dcgan-faces-64")
    assert lcm.load_prior("./dcgan-faces-64").image_shape == (3, 8, 8)  # the file, said so


# -- 9: lcm fit --ckpt_path checks the checkpoint ---------------------------------------------------
def test_fit_resume_from_bit_rotted_last_ckpt_is_refused(tmp_path):
    """``python -m lcm fit --ckpt_path last`` resumed from a ``last.ckpt`` with a flipped byte and exited
    0 (Lightning's loader skipped our CRC check)."""
    from tests.test_bad_inputs_2 import _fit, _flip_in_largest_member

    if not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    config = ROOT / "configs" / "lcm" / "wgangp.yaml"
    last = _fit(config, tmp_path, 2)
    member = _flip_in_largest_member(last)
    with pytest.raises(ValueError, match=rf"checkpoint \(--ckpt_path\).*last\.ckpt.*{member}.*CRC"):
        _fit(config, tmp_path, 4, "last")


# -- 14 (loader / config side): errors that came from deep inside YAML, the file system, torch ----
def test_priors_file_errors_name_the_file_and_the_variable(tmp_path, monkeypatch):
    """Malformed ``$GENPRIOR_PRIORS`` YAML raised a bare ScannerError naming neither the file nor the
    variable; a directory, a symlink loop or a FIFO there said "does not exist"."""
    bad = tmp_path / "priors.yaml"
    bad.write_text("mine: {path: [unclosed\n")
    monkeypatch.setenv("GENPRIOR_PRIORS", str(bad))
    with pytest.raises(ValueError, match=r"\$GENPRIOR_PRIORS file '.*priors\.yaml' is not valid YAML"):
        lcm.list_priors()
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, match in ((tmp_path, "which is a directory"), (loop, "cannot be opened"), (fifo, "a FIFO")):
        monkeypatch.setenv("GENPRIOR_PRIORS", str(path))
        with pytest.raises(ValueError, match=rf"\$GENPRIOR_PRIORS names .*{match}"):
            _with_alarm(5, lcm.list_priors)


def _tiny_restore_inputs():
    from inversion.operators import Denoising
    from lcm.toy import tiny_prior

    prior = tiny_prior(channels=1)
    op = Denoising(sigma=0.0)
    y = op(torch.rand(2, *prior.image_shape))
    return prior, op, y


def test_restore_and_run_stages_refuse_a_missing_prior_and_bad_starts():
    """``restore()`` / ``run_stages`` with ``prior=None`` or a path string raised AttributeError; a
    float64 / int / meta / NaN ``latent_init`` failed inside torch (or started from NaN); ``restore()``
    with a batch of 0 failed in ``torch.cat``."""
    from inversion import restore
    from inversion.engine import run_stages

    prior, op, y = _tiny_restore_inputs()
    for bad in (None, "netG.pth"):
        with pytest.raises(ValueError, match="prior=lcm.load_prior|prior must be an lcm.Prior"):
            restore(y, op, bad, csgm_steps=1, restarts=1)
        with pytest.raises(ValueError, match="prior must be an lcm.Prior"):
            run_stages(bad, op, y, torch.zeros(2, 4), [{"iterations": 1}])
    z = prior.sample_latent(2)
    stage = [{"iterations": 1, "lr": 0.1}]
    for start, match in (
        (z.double(), "torch.float64, the prior computes in torch.float32"),
        (z.long(), "torch.int64, the prior computes in torch.float32"),
        (torch.empty(z.shape, device="meta"), "latent_init is on meta"),
        (torch.full_like(z, float("nan")), "NaN / Inf"),
    ):
        with pytest.raises(ValueError, match=match):
            run_stages(prior, op, y, start, stage)
    with pytest.raises(ValueError, match="batch of 0"):
        restore(y[:0], op, prior, csgm_steps=1, restarts=1)


def test_restore_refuses_int8_labels():
    """``restore()`` with int8 labels failed inside ``embedding`` ("Expected tensor for argument #1
    'indices' to have one of the following scalar types: Long, Int")."""
    from inversion import restore
    from inversion.operators import Denoising
    from lcm.architectures import biggan

    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    big = biggan.biggan_prior(biggan.build_generator(ref["G"]))
    y = Denoising(0.0)(torch.rand(2, *big.image_shape))
    with pytest.raises(ValueError, match=r"labels are torch.int8: pass class indices as labels.long\(\)"):
        labels = torch.tensor([0, 1], dtype=torch.int8)
        restore(y, Denoising(0.0), big, labels=labels, csgm_steps=1, restarts=1)
