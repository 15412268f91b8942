"""Callbacks: MSE-threshold stop (scripted losses, as Lightning's own tests do) and image-grid logging."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader

from callbacks import ImageGridLogger, MSEThresholdStop
from inversion.engine import quiet_lightning, run_stages
from inversion.methods import init_latents
from inversion.operators import Inpainting
from inversion.stages import Stage
from lcm.toy import blob_images, tiny_prior


class _Scripted(pl.LightningModule):
    """Logs a scripted measurement MSE, one value per epoch (= one engine step)."""

    def __init__(self, values):
        super().__init__()
        self.values = values
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        self.log("measurement_mse_max", self.values[self.current_epoch], on_epoch=True, on_step=False)
        return (self.w - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(values, cb):
    model = _Scripted(values)
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=len(values),
            callbacks=[cb],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, DataLoader([0], batch_size=1))
    return trainer


@pytest.mark.parametrize(
    ("values", "stop_epoch"),
    [
        # plateaus that the default EarlyStopping patience (3) would stop on do not stop it
        ([0.5, 0.5, 0.5, 0.5, 0.5, 0.1, 0.004, 0.001, 0.0005], 6),
        ([0.5, 0.2, 0.005, 0.001], 2),  # inclusive threshold
        ([0.5, 0.4, 0.3, 0.2], None),  # never reached: runs to the end
    ],
)
def test_mse_threshold_stop_ends_fit_at_the_right_step(values, stop_epoch):
    trainer = _fit(values, MSEThresholdStop(threshold=5e-3))
    cb = trainer.callbacks[0]
    if stop_epoch is None:
        assert trainer.current_epoch == len(values) and cb.stopped_epoch == 0
    else:
        assert cb.stopped_epoch == stop_epoch
        assert trainer.current_epoch == stop_epoch + 1


def test_mse_threshold_stop_rejects_bad_threshold():
    with pytest.raises(ValueError, match="threshold"):
        MSEThresholdStop(threshold=0.0)


def test_threshold_stop_ends_an_engine_fit_once_every_image_is_below():
    prior = tiny_prior(seed=1, latent_dim=4)
    op = Inpainting("center", box_size=0.25)
    x = blob_images(2, generator=torch.Generator().manual_seed(2))
    z0 = init_latents(prior, [0, 1])
    full = run_stages(prior, op, op.A(x), z0, [Stage(iterations=60, latent_lr=0.1)])
    thr = float(full.history[20].max())  # every image is at or below this by step 20
    fit = run_stages(
        prior, op, op.A(x), z0, [Stage(iterations=60, latent_lr=0.1)], callbacks=[MSEThresholdStop(thr)]
    )
    stop = int((full.history.max(dim=1).values <= thr).nonzero()[0])
    assert fit.history.shape[0] == stop + 2  # the steps run, plus the final iterate scored at the end
    assert torch.equal(fit.history[: stop + 1], full.history[: stop + 1])


def test_image_grid_logger_writes_png_and_gif(tmp_path):
    prior = tiny_prior(seed=1, latent_dim=4)
    op = Inpainting("center", box_size=0.25)
    x = blob_images(3, generator=torch.Generator().manual_seed(2))
    cb = ImageGridLogger(tmp_path, every_n_steps=4, name="fit", gif=True, max_images=2)
    run_stages(prior, op, op.A(x), init_latents(prior, [0, 1, 2]), [Stage(iterations=10)], callbacks=[cb])
    assert cb.steps == [1, 5, 9, 10]
    png = Image.open(tmp_path / "fit.png")
    assert png.size == (2 * 17 + 1, 4 * 17 + 1)
    gif = Image.open(tmp_path / "fit.gif")
    assert gif.n_frames == 4
    assert not list(tmp_path.glob("*.tmp"))
