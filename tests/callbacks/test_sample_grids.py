"""callbacks.SampleGrids: prior-training sample grids written by a callback at the module's interval, each
step once, from the module's state after its own batch-end hook (GLO / LCM update their table there)."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from callbacks import SampleGrids
from datamodules.io.images import load_image


class Counting(pl.LightningModule):
    """``sample_images`` shows how many batch-end hooks have run (as a grey level)."""

    def __init__(self, every: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.sample_every_n_steps = every
        self.hooks = 0

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.hooks += 1

    def sample_images(self, n):
        return torch.full((n, 1, 2, 2), self.hooks / 10)


def _fit(tmp_path, module, steps, **kw):
    trainer = pl.Trainer(
        max_steps=steps, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[SampleGrids(**kw)],
    )  # fmt: skip
    trainer.fit(module, DataLoader(torch.zeros(16, 1), batch_size=2))


def test_sample_grids_at_the_modules_interval_after_its_batch_end_hook(tmp_path):
    _fit(tmp_path, Counting(every=2), 5, n=4)
    files = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert files == ["samples_step0000002.png", "samples_step0000004.png", "samples_step0000005.png"]
    for name, hooks in zip(files, (2, 4, 5), strict=True):
        grid = load_image(tmp_path / "samples" / name)
        assert grid.shape[-2:] == (2 * 2 + 3 * 2, 2 * 2 + 3 * 2)  # 2 x 2 tiles of 2 px, padding 2
        assert abs(float(grid[:, 2, 2].mean()) - hooks / 10) < 1 / 255  # the module's hook had run


def test_sample_grids_own_interval_and_none(tmp_path):
    _fit(tmp_path / "a", Counting(every=2), 3, every_n_steps=0)
    assert not (tmp_path / "a" / "samples").exists()
    _fit(tmp_path / "b", Counting(every=0), 3, every_n_steps=3, n=1)
    assert sorted(p.name for p in (tmp_path / "b" / "samples").iterdir()) == ["samples_step0000003.png"]
    with pytest.raises(ValueError, match="every_n_steps"):
        SampleGrids(every_n_steps=-1)
