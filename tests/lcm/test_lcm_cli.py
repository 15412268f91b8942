"""``python -m lcm``: every config under configs/lcm parses and runs (shrunk), and a CLI run
checkpoints, loads as a prior and resumes from ``last``."""

from pathlib import Path

import pytest
import torch
import yaml

from lcm import load_prior
from lcm.cli import cli_main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "lcm").glob("*.yaml"))
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def _shrink(cfg: dict, tmp_path: Path) -> list[str]:
    args = [
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
        f"--checkpoint.dirpath={tmp_path / 'ck'}",
        "--model.init_args.width=4",
        "--model.init_args.sample_every_n_steps=0",
        "--data.init_args.limit_train=8",
        "--data.init_args.batch_size=4",
    ]
    if cfg["model"]["class_path"].endswith("WGANGP"):
        args += ["--model.init_args.critic_width=4", "--model.init_args.latent_dim=8"]
    return args


def test_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {"wgangp", "wgangp_cond", "glo", "lcm"} <= names
    assert any("emoji" in n for n in names)


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_runs_fast_dev_run(config, tmp_path):
    cfg = yaml.safe_load(config.read_text())
    data = cfg["data"]["class_path"]
    if "FashionMNIST" in data and not FASHION.exists():
        pytest.skip(f"Fashion-MNIST not installed at {FASHION.parent} (Debian package dataset-fashion-mnist)")
    if "Emoji" in data and not EMOJI_FONT.exists():
        pytest.skip(f"emoji font {EMOJI_FONT} missing (Debian package fonts-noto-color-emoji)")
    cli = cli_main(["-c", str(config), *_shrink(cfg, tmp_path), "--trainer.fast_dev_run=1"], run=False)
    # channels / resolution are linked from the datamodule
    assert cli.model.image_shape == (
        cli.datamodule.channels,
        cli.datamodule.resolution,
        cli.datamodule.resolution,
    )
    assert cli.model.hparams.get("num_classes", 0) == cfg["model"]["init_args"].get("num_classes", 0)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step >= 1


def test_cli_fit_checkpoint_load_prior_and_resume(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed_everything": 0,
                "model": {
                    "class_path": "lcm.LCM",
                    "init_args": {
                        "latent_shape": [4, 4, 4],
                        "noise_shape": [2, 2, 2],
                        "hidden": [4],
                        "width": 4,
                        "sample_every_n_steps": 2,
                        "optimizer": "adam",
                        "lr": 0.003,
                    },
                },
                "data": {"class_path": "test_lcm_modules.TinyData", "init_args": {"n": 8}},
                "trainer": {
                    "max_steps": 4,
                    "accelerator": "cpu",
                    "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path),
                    "logger": False,
                },
                "checkpoint": {"dirpath": str(tmp_path / "ck"), "every_n_train_steps": 3},
            }
        )  # fmt: skip
    )
    cli_main(["fit", "-c", str(config)])
    last = tmp_path / "ck" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    # last.ckpt is written when training stops, not only at the periodic save (step 3)
    assert ckpt["global_step"] == 4 and ckpt["genprior_kind"] == "lcm"
    assert ckpt["hyper_parameters"]["num_images"] == 8
    assert list((tmp_path / "samples").glob("*.png"))  # sample grids were written
    prior = load_prior(last, image_shape=(1, 16, 16))
    assert prior(prior.sample_latent(2)).shape == (2, 1, 16, 16)
    cli = cli_main(["fit", "-c", str(config), "--trainer.max_steps=7", "--ckpt_path=last"])
    assert cli.trainer.global_step == 7
    assert torch.load(last, weights_only=True)["global_step"] == 7
