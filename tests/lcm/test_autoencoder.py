"""The LCM paper's AE baseline (lcm.autoencoder): trains, checkpoints, loads as a prior, restores."""

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from inversion import restore
from inversion.operators import Inpainting
from lcm import load_prior
from lcm.autoencoder import AutoEncoder


def _data(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 16, 16, generator=g).round() * 0.5 + 0.25
    return [{"image": x[i], "index": torch.tensor(i)} for i in range(n)]


def test_ae_trains_loads_and_restores(tmp_path):
    pl.seed_everything(0)
    model = AutoEncoder(
        channels=1, resolution=16, latent_dim=8, width=4, encoder_width=4, sample_every_n_steps=0
    )
    data = _data()
    x = torch.stack([d["image"] for d in data])
    with torch.no_grad():
        before = float(model.reconstruction_loss(x * 2 - 1)[0])
    trainer = pl.Trainer(
        max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.fit(model, DataLoader(data, batch_size=8, shuffle=True))
    model.eval()
    with torch.no_grad():
        after = float(model.reconstruction_loss(x * 2 - 1)[0])
    assert after < before
    assert bool(model.code_seen) and model.code_var.min() > 0  # running code statistics were kept
    path = tmp_path / "ae.ckpt"
    trainer.save_checkpoint(path)
    prior = load_prior(path, image_shape=(1, 16, 16))
    assert prior.kind == "ae" and prior.latent_shape == (8,)
    # latents start from the codes' Gaussian: mean of many draws near the running code mean
    z = prior.sample_latent(4000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), model.code_mean, atol=4 * float(model.code_var.sqrt().max()) / 60 + 1e-3)
    op = Inpainting("center", box_size=0.25)
    y = op.A(x[:2])
    res = restore(y, op, prior, method="latent", latent_steps=60, restarts=1, x_true=x[:2])
    assert res.history.shape[0] >= 60
    assert (res.history[-1] < res.history[0]).all()  # inversion through the decoder fits y
