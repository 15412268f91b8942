"""A synthetic datamodule for the DDP tests (imported by ``python -m lcm`` subprocesses): the project's
ImageDataModule (EpochShuffle order, which Lightning shards over DDP ranks without reordering)."""

from pathlib import Path

import torch
from pytorch_lightning import Callback

from datamodules._common import ArrayImageDataset, ImageDataModule


class SynthData(ImageDataModule):
    def __init__(self, n: int = 16, batch_size: int = 4, seed: int = 0):
        super().__init__(batch_size, 0, seed)
        self.n, self.channels, self.resolution, self.num_classes = n, 1, 16, 0

    def make_dataset(self, split: str) -> ArrayImageDataset:
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        low = torch.rand(self.n, 1, 4, 4, generator=g)
        images = torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
        images = (images * 255).round().to(torch.uint8)
        return ArrayImageDataset(images, torch.full((self.n,), -1), torch.arange(self.n))


class DumpTable(Callback):
    """Saves this rank's latent table before the first step and at the end of training."""

    def _dump(self, trainer, pl_module, when: str) -> None:
        path = Path(trainer.default_root_dir) / f"table_{when}_rank{trainer.global_rank}.pt"
        torch.save(pl_module.table.all().detach().cpu().clone(), path)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            self._dump(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._dump(trainer, pl_module, "end")
