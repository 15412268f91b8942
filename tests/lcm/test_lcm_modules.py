"""lcm LightningModules (WGAN-GP, GLO, LCM) at tiny sizes: training, gradients, constraints,
checkpoints -> load_prior, resume, and bad input."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Dataset

from lcm import GLO, LCM, WGANGP, load_prior
from lcm.prior import Prior

RES = 16


class _Images(Dataset):
    def __init__(self, n: int, channels: int, num_classes: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, channels, 4, 4, generator=g)
        self.images = torch.nn.functional.interpolate(
            low, size=(RES, RES), mode="bilinear", align_corners=False
        )
        self.labels = torch.arange(n) % num_classes if num_classes else torch.full((n,), -1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "index": torch.tensor(i), "label": self.labels[i]}


class TinyData(pl.LightningDataModule):
    """Synthetic smooth images following the datamodule contract (channels, resolution, num_train)."""

    def __init__(
        self, n: int = 8, channels: int = 1, num_classes: int = 0, batch_size: int = 4, seed: int = 0
    ):
        super().__init__()
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.channels, self.resolution, self.num_classes = channels, RES, num_classes
        self.train_set = None

    def setup(self, stage=None):
        if self.train_set is None:
            self.train_set = _Images(self.n, self.channels, self.num_classes, self.seed)

    @property
    def num_train(self):
        return len(self.train_set)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g)


def make(kind: str, **kw):
    if kind == "wgangp":
        return WGANGP(
            1, RES, latent_dim=8, width=4, critic_width=4, n_critic=2, lr=1e-3, sample_every_n_steps=0, **kw
        )
    if kind == "glo":
        return GLO(1, RES, latent_dim=8, width=4, latent_lr=1.0, lr=3e-3, sample_every_n_steps=0, **kw)
    return LCM(
        1, RES, latent_shape=(4, 4, 4), noise_shape=(2, 2, 2), hidden=(4,), width=4, latent_lr=1e-3,
        optimizer="adam", lr=3e-3, sample_every_n_steps=0, **kw,
    )  # fmt: skip


def trainer(tmp_path: Path, steps: int, callbacks=(), **kw) -> pl.Trainer:
    return pl.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(kw.pop("checkpointing", False)), callbacks=list(callbacks),
        default_root_dir=tmp_path, **kw,
    )  # fmt: skip


class Recorder(Callback):
    """Records losses, parameters that received a non-zero gradient, and table checks per batch."""

    def __init__(self):
        self.losses, self.grads, self.first_step, self.table_checks = [], set(), None, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.first_step is None:
            self.first_step = trainer.global_step
        if hasattr(module, "table") and module.table is not None:
            self.table_checks.append(module.table.all().clone())

    def on_before_optimizer_step(self, trainer, module, optimizer):
        for name, p in module.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0:
                self.grads.add(name)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        metrics = trainer.callback_metrics
        key = "train/loss_critic" if isinstance(module, WGANGP) else "train/loss"
        self.losses.append(float(metrics[key]))


@pytest.mark.parametrize("kind", ["wgangp", "glo", "lcm"])
def test_trains_with_falling_loss_and_gradients_everywhere(kind, tmp_path):
    pl.seed_everything(0)
    model, rec = make(kind), Recorder()
    data = TinyData(n=8)
    trainer(tmp_path, 16, [rec]).fit(model, datamodule=data)
    head, tail = sum(rec.losses[:3]) / 3, sum(rec.losses[-3:]) / 3
    assert tail < head, rec.losses
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and rec.grads == trainable
    if kind != "wgangp":
        assert model.hparams.num_images == 8  # filled from the datamodule
        batch = next(iter(data.train_dataloader()))
        loss, rows = model.reconstruction_loss(batch)
        loss.backward()
        assert (rows.grad.abs().sum(1) > 0).all()  # every image's latent row gets a gradient


def test_lcm_box_constraint_holds_after_every_step(tmp_path):
    pl.seed_everything(0)
    model, rec = make("lcm"), Recorder()
    model.hparams.latent_lr = 1.0  # large steps so that the box binds
    trainer(tmp_path, 6, [rec]).fit(model, datamodule=TinyData(n=8))
    tables = [*rec.table_checks[1:], model.table.all()]
    assert len(tables) == 6
    for t in tables:
        assert t.abs().max() <= model.box
    final = model.table.all()
    assert (final.abs() == model.box).float().mean() > 0.1  # the constraint is active
    assert not torch.equal(final, rec.table_checks[0])


def test_glo_latents_stay_on_sphere_and_pca_init(tmp_path):
    pl.seed_everything(0)
    data = TinyData(n=8)
    data.setup()
    data.train_set.images[5] = data.train_set.images[2]  # identical images -> identical PCA codes
    model, rec = make("glo"), Recorder()
    trainer(tmp_path, 1, [rec]).fit(model, datamodule=data)
    z0 = rec.table_checks[0]  # after PCA initialisation, before the first step
    torch.testing.assert_close(z0.norm(dim=1), torch.ones(8))
    torch.testing.assert_close(z0[5], z0[2])
    assert (z0[0] - z0[1]).abs().max() > 1e-3
    torch.testing.assert_close(model.table.all().norm(dim=1), torch.ones(8))


@pytest.mark.parametrize("kind", ["wgangp", "glo", "lcm"])
def test_checkpoint_to_load_prior_identical_outputs(kind, tmp_path):
    pl.seed_everything(0)
    model = make(kind, num_classes=3, mapping_layers=2) if kind == "wgangp" else make(kind)
    data = TinyData(n=8, num_classes=3)
    t = trainer(tmp_path, 4)
    t.fit(model, datamodule=data)
    path = tmp_path / "prior.ckpt"
    t.save_checkpoint(path)
    torch.load(path, weights_only=True)  # plain types only
    prior = load_prior(path)
    ref = model.to_prior().eval()
    assert isinstance(prior, Prior) and not prior.training
    assert prior.latent_kind == {"wgangp": "gaussian", "glo": "sphere", "lcm": "convnet"}[kind]
    assert prior.image_shape == (1, RES, RES)
    g = torch.Generator().manual_seed(1)
    z = prior.sample_latent(3, generator=g)
    labels = torch.tensor([0, 1, 2]) if kind == "wgangp" else None
    torch.testing.assert_close(prior(z, labels), ref(z, labels), rtol=0, atol=0)
    assert prior(z, labels).min() >= 0 and prior(z, labels).max() <= 1
    if kind == "wgangp":
        assert prior.critic is not None and prior.num_classes == 3
        assert not isinstance(prior.mapping, torch.nn.Identity)
        torch.testing.assert_close(prior.code(z, labels), model.mapping(z, labels))
        x = torch.rand(3, 1, RES, RES)
        torch.testing.assert_close(prior.critic(x, labels), ref.critic(x, labels))
    else:
        assert prior.critic is None and isinstance(prior.mapping, torch.nn.Identity)
    if kind == "lcm":
        assert prior.box == 0.01 and torch.equal(prior.noise, model.noise)
        assert prior.project_latent(z * 10).abs().max() <= 0.01
        rows = model.table.all()[:3]  # a training image's phi reproduces its reconstruction
        torch.testing.assert_close(prior(rows), ref(rows))


@pytest.mark.parametrize("kind", ["wgangp", "glo", "lcm"])
def test_resume_continues_step_count(kind, tmp_path):
    pl.seed_everything(0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=2)
    trainer(tmp_path, 4, [ckpt], checkpointing=True).fit(make(kind), datamodule=TinyData())
    saved = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 4
    rec = Recorder()
    model = make(kind)
    ckpt2 = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=2)
    t = trainer(tmp_path, 8, [rec, ckpt2], checkpointing=True)
    t.fit(model, datamodule=TinyData(), ckpt_path=tmp_path / "ck" / "last.ckpt")
    # (WGAN-GP: a batch with a generator step makes two optimizer steps and may pass max_steps by one)
    assert rec.first_step == 4 and t.global_step in (8, 9)
    if kind != "wgangp":  # the restored table, not a fresh (or, for GLO, PCA-) initialised one
        torch.testing.assert_close(rec.table_checks[0], saved["state_dict"]["table.weight"])
    else:
        assert int(model.critic_steps) > int(saved["state_dict"]["critic_steps"])


def test_lcm_memmap_table(tmp_path):
    pl.seed_everything(0)
    path = tmp_path / "phi.npy"
    model = make("lcm", latent_memmap=str(path))
    rec = Recorder()
    t = trainer(tmp_path, 3, [rec])
    t.fit(model, datamodule=TinyData(n=8))
    assert "table.weight" not in model.state_dict()
    import numpy as np

    on_disk = torch.from_numpy(np.load(path))
    assert on_disk.shape == (8, model.latent_dim) and on_disk.abs().max() <= model.box
    assert not torch.equal(on_disk, rec.table_checks[0])
    # reopening the file keeps the trained rows
    again = make("lcm", latent_memmap=str(path), num_images=8)
    torch.testing.assert_close(again.table.all(), on_disk)
    t.save_checkpoint(tmp_path / "m.ckpt")
    assert load_prior(tmp_path / "m.ckpt").latent_kind == "convnet"
    with pytest.raises(ValueError, match="expected"):
        make("lcm", latent_memmap=str(path), num_images=9)


def test_bad_inputs_give_clear_errors(tmp_path):
    pl.seed_everything(0)
    model = make("glo")
    t = trainer(tmp_path, 1)
    t.fit(model, datamodule=TinyData(n=4))
    good = tmp_path / "glo.ckpt"
    t.save_checkpoint(good)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prior(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_prior(truncated)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {}}, other)
    with pytest.raises(ValueError, match="another model"):
        load_prior(other)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "obj": Path("x")}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        load_prior(pickled)
    with pytest.raises(ValueError, match=r"do not match .* \(1, 16, 16\)"):
        load_prior(good, image_shape=(4, 3, 32, 32))
    load_prior(good, image_shape=(4, 1, RES, RES))
    # a datamodule whose images do not match the model
    with pytest.raises(ValueError, match="channels/resolution"):
        trainer(tmp_path, 1).fit(make("lcm"), datamodule=TinyData(n=4, channels=3))
    # no num_images and no datamodule to take it from
    data = TinyData(n=4)
    data.setup()
    with pytest.raises(ValueError, match="num_images"):
        trainer(tmp_path, 1).fit(make("glo"), train_dataloaders=data.train_dataloader())


@pytest.mark.parametrize("kind", ["wgangp", "glo", "lcm"])
def test_benchmark_latent_optimisation_recovers_a_generated_image(kind):
    from benchmarks.priors import best_reconstruction_psnr
    from inversion.metrics import psnr

    torch.manual_seed(0)
    prior = make(kind).to_prior().eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        target = prior(prior.sample_latent(2, generator=g))
        start = psnr(prior(prior.sample_latent(2, generator=torch.Generator().manual_seed(0))), target)
    best = best_reconstruction_psnr(prior, target, steps=40, seed=0)
    assert (best > start + 3).all(), (start, best)
    with pytest.raises(ValueError, match="do not match"):
        best_reconstruction_psnr(prior, torch.rand(2, 3, RES, RES), steps=1)
