"""Every method is a ``Trainer.fit`` of the engine: a user's own Lightning callback sees each step of the
faithful DGP run (DGP's ``run()`` on the engine, with its learning-rate, BN->IN and stop callbacks) and of
CSGM. (IAGAN's CSGM phase gets the user's callbacks in the lead's IAGAN branch; here only its joint stage.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from callbacks import BatchNormToInstanceNorm, GroupLearningRates, TermThresholdStop
from inversion import restore
from inversion.dgp import dgp_operator, script_stages
from inversion.operators import Inpainting
from lcm.architectures.biggan import biggan_prior, build_discriminator, build_generator
from lcm.prior import to_unit
from lcm.toy import blob_images, tiny_prior

DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.usefixtures("one_thread")


class Counter(pl.Callback):
    """Counts ``on_train_batch_end`` and records each fit's trainer callbacks."""

    def __init__(self) -> None:
        self.steps, self.fits = 0, []

    def on_train_start(self, trainer, pl_module) -> None:
        self.fits.append([type(c) for c in trainer.callbacks])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1


@pytest.fixture(scope="module")
def trace():
    return torch.load(DATA / "dgp_trace_128_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def prior():
    ref = torch.load(DATA / "biggan_dgp_128_tiny.pt", weights_only=True)
    return biggan_prior(build_generator(ref["G"]), build_discriminator(ref["D"]))


def _dgp(trace, prior, name, cb, **extra):
    t = trace[name]
    op = dgp_operator(t["mode"], 128)
    y = op(to_unit(trace["image_origin"]))
    opts = script_stages(**t["script"], iterations=[int(trace["iterations_per_stage"])] * 5)
    opts.update(extra)
    return restore(
        y, op, prior, method="dgp", labels=torch.tensor([int(trace["class"])]), init_latent=t["z0"],
        colorize_output=False, callbacks=[cb], **opts,
    )  # fmt: skip


@pytest.mark.parametrize("name", ["SR_D", "SR_MSE"])
def test_faithful_dgp_is_a_fit_a_user_callback_sees_step_by_step(trace, prior, name):
    cb = Counter()
    res = _dgp(trace, prior, name, cb)
    assert cb.steps == 20  # 5 stages x 4 steps
    assert len(cb.fits) == 1
    assert GroupLearningRates in cb.fits[0]
    # BN->IN only where the script uses IN (SR_MSE: use_in every stage); no stop without stop_mse
    assert (BatchNormToInstanceNorm in cb.fits[0]) == any(trace[name]["script"]["use_in"])
    assert TermThresholdStop not in cb.fits[0]
    assert res.history.shape == (20, 1)


def test_faithful_dgp_stop_breaks_each_stage_after_its_update(trace, prior):
    """DGP's ``break`` once ``mse < stop_mse``: with a threshold every step meets, each stage runs one step
    (its update applied) and the next stage starts from there."""
    cb = Counter()
    res = _dgp(trace, prior, "SR_D", cb, stop_mse=1e9 / 4)  # ours on [0, 1]: DGP's x4
    assert TermThresholdStop in cb.fits[0]
    assert cb.steps == 5
    assert torch.isfinite(res.history[:5]).all() and torch.isnan(res.history[5:]).all()
    assert not torch.equal(res.latent, trace["SR_D"]["z0"])  # the stopping steps did update


def test_csgm_is_a_fit_a_user_callback_sees_step_by_step():
    prior = tiny_prior(seed=0, latent_dim=4)
    op = Inpainting("center", box_size=0.25)
    y = op.A(blob_images(2, generator=torch.Generator().manual_seed(1)))
    cb = Counter()
    restore(y, op, prior, method="csgm", csgm_steps=7, restarts=2, callbacks=[cb])
    assert cb.steps == 7 and len(cb.fits) == 1


def test_iagan_joint_stage_sees_every_step():
    prior = tiny_prior(seed=0, latent_dim=4)
    op = Inpainting("center", box_size=0.25)
    y = op.A(blob_images(1, generator=torch.Generator().manual_seed(1)))
    cb = Counter()
    restore(y, op, prior, method="iagan", csgm_steps=3, iagan_steps=4, restarts=1, callbacks=[cb])
    assert cb.steps >= 4  # 4 without the CSGM phase's callbacks, 3 + 4 with them (the lead's IAGAN branch)
