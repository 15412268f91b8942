"""DDP training of GLO / LCM (two CPU processes, gloo): the latent table stays identical on every rank
and equals a one-process run over the same data order (each rank's batch of 4 = half of the
one-process batch of 8), up to rounding. Also the end-of-training sample grid (a collective
``trainer.log_dir``) no longer hangs or crashes under DDP."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lcm.cli import cli_main

ROOT = Path(__file__).resolve().parents[2]

MODELS = {
    "glo": {"class_path": "lcm.GLO", "init_args": {"latent_dim": 8, "width": 4, "norm": "none",
                                                  "pca_init": True, "lr": 3e-3}},
    "lcm": {"class_path": "lcm.LCM", "init_args": {"latent_shape": [4, 4, 4], "noise_shape": [2, 2, 2],
                                                  "hidden": [4], "width": 4, "norm": "none",
                                                  "latent_lr": 0.01, "optimizer": "adam", "lr": 3e-3}},
}  # fmt: skip


def _config(tmp: Path, kind: str, batch_size: int, devices: int) -> Path:
    model = {**MODELS[kind], "init_args": {**MODELS[kind]["init_args"], "sample_every_n_steps": 2,
                                           "val_fd_images": 4, "val_fit_steps": 2}}  # fmt: skip
    if kind == "lcm" and devices > 1:  # the DDP LCM run keeps its table in one memmap file for all ranks
        model["init_args"]["latent_memmap"] = str(tmp / "table.npy")
    cfg = {
        "seed_everything": 0,
        "model": model,
        "data": {"class_path": "lcm_ddp_data.SynthData", "init_args": {"n": 16, "batch_size": batch_size}},
        "trainer": {
            "max_steps": 5,  # 16 images / 8 per step: two epochs and a half
            "accelerator": "cpu",
            "devices": devices,
            "strategy": "ddp" if devices > 1 else "auto",
            "num_sanity_val_steps": 0,
            "limit_val_batches": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(tmp),
            "logger": False,
            "callbacks": [{"class_path": "lcm_ddp_data.DumpTable"}],
        },
        "checkpoint": {"dirpath": str(tmp / "ck"), "every_n_train_steps": 0},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["glo", "lcm"])
def test_ddp_latent_table_matches_one_process(kind, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    cli_main(["fit", "-c", str(_config(one, kind, 8, 1))])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "lcm")]),
           "OMP_NUM_THREADS": "1", "PL_DISABLE_FORK": "1"}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "lcm", "fit", "-c", str(_config(two, kind, 4, 2))],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    a = torch.load(one / "ck" / "last.ckpt", weights_only=True)
    b = torch.load(two / "ck" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 5
    ta = a["state_dict"]["table.weight"]
    if kind == "lcm":
        assert "table.weight" not in b["state_dict"]
        tb = torch.from_numpy(np.load(two / "table.npy"))
    else:
        tb = b["state_dict"]["table.weight"]
    start = torch.load(one / "table_start_rank0.pt", weights_only=True)
    torch.testing.assert_close(torch.load(two / "table_start_rank0.pt", weights_only=True), start)
    assert (ta - start).abs().amax(1).gt(1e-4).all()  # every row moved during training
    torch.testing.assert_close(tb, ta, atol=1e-5, rtol=1e-4)
    for k, v in a["state_dict"].items():
        if k.startswith("generator."):
            torch.testing.assert_close(b["state_dict"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    # every rank ended with the same table (each rank dumps its own copy, see lcm_ddp_data.DumpTable)
    end0, end1 = (torch.load(two / f"table_end_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(end0, end1)
    torch.testing.assert_close(end0, tb)
    assert list((two / "samples").glob("*.png"))  # the end-of-training grid was written by rank 0
