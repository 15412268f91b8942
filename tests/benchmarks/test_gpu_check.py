"""``python -m benchmarks.gpu`` fails at once, saying why, where torch sees no CUDA device (nothing is
measured, no file is written); the DGP step benchmark refuses ``--device cuda`` the same way."""

from __future__ import annotations

import pytest
import torch


def test_gpu_check_fails_clearly_without_cuda(monkeypatch, tmp_path):
    from benchmarks import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu.main(["--output", str(tmp_path / "gpu")])
    assert not (tmp_path / "gpu").exists()


def test_dgp_step_refuses_cuda_without_it(monkeypatch):
    from benchmarks import dgp_step

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dgp_step, "build", lambda *a: pytest.fail("built the networks before the check"))
    with pytest.raises(SystemExit, match="no CUDA device"):
        dgp_step.main(["--device", "cuda"])
