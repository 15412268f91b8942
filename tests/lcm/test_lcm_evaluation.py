"""Validation / test / predict of the priors: held-out reconstruction and offline Fréchet distance
(``lcm.evaluation``) through ``python -m lcm validate|test|predict -c configs/lcm/<each>.yaml``."""

from pathlib import Path

import pytest
import torch

from lcm import GLO
from lcm.cli import cli_main
from lcm.evaluation import FrechetTracker, fit_latents, reconstruction_scores

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _small(tmp_path: Path, kind: str) -> list[str]:
    args = [
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={tmp_path}",
        f"--checkpoint.dirpath={tmp_path / 'ck'}",
        "--model.init_args.width=4",
        "--model.init_args.sample_every_n_steps=0",
        "--model.init_args.val_fit_steps=3",
        "--model.init_args.val_fd_images=6",
        "--data.init_args.limit_train=8",
        "--data.init_args.limit_val=6",
        "--data.init_args.limit_test=5",
        "--data.init_args.batch_size=4",
    ]
    if kind == "wgangp":
        args += ["--model.init_args.critic_width=4", "--model.init_args.latent_dim=8"]
    if kind == "lcm":
        args += ["--model.init_args.hidden=[4]", "--model.init_args.latent_shape=[4,8,8]"]
    return args


@pytest.mark.skipif(not FASHION.exists(), reason="Fashion-MNIST not installed (dataset-fashion-mnist)")
@pytest.mark.parametrize("kind", ["wgangp", "glo", "lcm"])
def test_validate_test_predict_from_a_checkpoint(kind, tmp_path):
    config = str(ROOT / "configs" / "lcm" / f"{kind}.yaml")
    small = _small(tmp_path, kind)
    # fit validates every 2 batches; ModelCheckpoint keeps the best by the validation PSNR
    cli = cli_main(
        ["fit", "-c", config, *small, "--trainer.max_steps=4", "--trainer.val_check_interval=2",
         "--checkpoint.monitor=val/psnr", "--checkpoint.mode=max", "--checkpoint.save_top_k=1",
         "--checkpoint.every_n_train_steps=2"]
    )  # fmt: skip
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best and Path(best).is_file() and cli.trainer.checkpoint_callback.best_model_score is not None
    ckpt = str(tmp_path / "ck" / "last.ckpt")
    for stage in ("validate", "test"):
        cli = cli_main([stage, "-c", config, *small, f"--ckpt_path={ckpt}"])
        metrics = cli.trainer.callback_metrics
        prefix = "val" if stage == "validate" else "test"
        assert {f"{prefix}/psnr", f"{prefix}/lap_l1", f"{prefix}/fd"} <= set(metrics)
        assert torch.isfinite(metrics[f"{prefix}/fd"]) and float(metrics[f"{prefix}/fd"]) >= 0
        assert 0 < float(metrics[f"{prefix}/psnr"]) < 60
    out = tmp_path / "samples_out"
    cli_main(["predict", "-c", config, *small, f"--ckpt_path={ckpt}", f"--samples.output_dir={out}"])
    pngs = sorted(p.name for p in out.glob("0*.png"))
    assert pngs == [f"{i:06d}.png" for i in range(5)]
    assert (out / "grid.png").is_file()


class _Flat(torch.nn.Module):
    def forward(self, x):
        return [x.flatten(1)[:, :, None, None]]


def test_frechet_tracker_small_for_same_distribution_large_for_other():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 1, 2, 2, generator=g) * 0.5
    tracker = FrechetTracker(64, _Flat())
    tracker.add_real(real)
    tracker.add_real(real)  # capped at max_images
    assert tracker.count == 64
    same = tracker.compute(lambda k: torch.rand(k, 1, 2, 2, generator=g) * 0.5)
    tracker.add_real(real)
    other = tracker.compute(lambda k: torch.rand(k, 1, 2, 2, generator=g) * 0.5 + 0.5)
    assert float(same) < 0.05 < float(other)
    assert tracker.count == 0 and FrechetTracker(4, _Flat()).compute(lambda k: real[:k]) is None


def test_latent_fit_improves_reconstruction_and_leaves_the_generator_alone():
    torch.manual_seed(0)
    model = GLO(1, 16, num_images=4, latent_dim=8, width=4, pca_init=False).eval()
    prior = model.to_prior()
    x = prior(prior.sample_latent(3, generator=torch.Generator().manual_seed(5))).detach()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # as in Lightning's validation loop
        _, r0 = fit_latents(prior, x, 0, generator=torch.Generator().manual_seed(1))
        _, r1 = fit_latents(prior, x, 60, generator=torch.Generator().manual_seed(1))
    assert float(reconstruction_scores(r1, x)["psnr"]) > float(reconstruction_scores(r0, x)["psnr"]) + 3
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="steps"):
        fit_latents(prior, x, -1)
