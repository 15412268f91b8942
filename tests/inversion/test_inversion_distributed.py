"""``python -m inversion`` as a torch.distributed program: torchrun with 2 gloo CPU processes restores
every image exactly once and writes one complete metrics.csv (and resumes); ``--devices 2`` goes
through torch.distributed.run; killing the launcher (SIGKILL) leaves no worker alive."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from datamodules.io.images import save_png
from lcm.toy import blob_images

ROOT = Path(__file__).resolve().parents[2]
N = 5


@pytest.fixture()
def folder(tmp_path):
    src = tmp_path / "in"
    for i, img in enumerate(blob_images(N, generator=torch.Generator().manual_seed(3))):
        save_png(img, src / f"im{i}.png")
    return src


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _args(src, out, steps=4):
    return [
        "--prior", "lcm.toy:tiny_prior", "--input", str(src), "--output", str(out),
        "--method", "csgm", "--progress", "false", "--num_threads", "1", "--batch_size", "1",
        "--operator", "{class_path: inversion.operators.SuperResolution, init_args: {factor: 2}}",
        "--options", f"{{csgm_steps: {steps}, restarts: 1}}",
    ]  # fmt: skip


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_torchrun_two_ranks_restore_every_image_once_and_resume(folder, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "inversion", *_args(folder, out)]  # fmt: skip
    run = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == [f"im{i}.png" for i in range(N)]
    records = [json.loads((out / "rows" / f"im{i}.json").read_text()) for i in range(N)]
    assert [r["shard"] for r in records] == [i % 2 for i in range(N)]  # each image by one rank
    assert sorted(p.name for p in (out / "restored").iterdir()) == [f"im{i}.png" for i in range(N)]
    assert (out / "grid.png").is_file()
    # resume: delete one record; the rerun restores only that image and rewrites a complete csv
    stamps = {i: (out / "rows" / f"im{i}.json").stat().st_mtime_ns for i in range(N)}
    (out / "rows" / "im3.json").unlink()
    (out / "metrics.csv").unlink()
    run = subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len((out / "metrics.csv").read_text().splitlines()) == N + 1
    for i in (0, 1, 2, 4):
        assert (out / "rows" / f"im{i}.json").stat().st_mtime_ns == stamps[i]


@pytest.mark.slow
def test_killing_the_devices_launcher_kills_its_workers(folder, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "inversion", *_args(folder, out, steps=10**7), "--devices", "2"]
    launcher = subprocess.Popen(cmd, env=_env(), cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in _children(launcher.pid) if _alive(p)]
        assert len(workers) == 2, "the launcher did not start two workers"
        time.sleep(3)  # let them enter the restoration
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.5)
        assert not any(_alive(p) for p in workers), "workers outlived their launcher"
    finally:
        launcher.kill()
        for p in _children(launcher.pid):
            os.kill(p, signal.SIGKILL)


def test_slurm_environment_becomes_torch_environment(monkeypatch):
    from inversion.cli import launch as distributed

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(k, "")  # recorded, so that teardown restores the environment
        monkeypatch.delenv(k)
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.delenv("SLURM_LAUNCH_NODE_IPADDR", raising=False)
    assert distributed.launched()
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        distributed._slurm_to_torch_env()
    monkeypatch.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.7")
    distributed._slurm_to_torch_env()
    env = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    assert env == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.7",
                   "MASTER_PORT": "20123"}  # fmt: skip
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()
