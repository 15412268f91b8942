"""Shared test set-up: one torch thread (tiny tensors run far faster without thread hand-offs)."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the tests' own datamodules and callbacks named by class_path (configs name genprior's classes only)
os.environ.setdefault("GENPRIOR_CLASS_PATHS", "test_lcm_modules,lcm_ddp_data")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests, whatever an earlier test (a CLI run's ``--num_threads``)
    left set; restored afterwards. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def make_task_folder(tmp_path):
    """``make_task_folder(n, seed, operator, options, task=None)`` -> ``(src, cfg)``: a folder of ``n``
    blob PNGs plus one broken PNG, and a task YAML with ``operator`` (``class_path`` / ``init_args`` lines)
    and method ``options`` (a flow mapping), for the folder CLI tests."""
    from datamodules.io.images import save_png
    from lcm.toy import blob_images

    def make(n: int, seed: int, operator: str, options: str, task: str | None = None):
        src = tmp_path / "in"
        for i, img in enumerate(blob_images(n, generator=torch.Generator().manual_seed(seed))):
            save_png(img, src / f"img{i}.png")
        (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
        cfg = tmp_path / "task.yaml"
        cfg.write_text((f"task: {task}\n" if task else "") + f"operator:\n{operator}options: {options}\n")
        return src, cfg

    return make


# every device torch can reach here: CPU always, CUDA where present (skipped with the reason elsewhere)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"
        ),
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """The device a device-dependent test runs on: once on CPU, once on CUDA where present (test ids end in
    ``[cpu]`` / ``[cuda]``; ``pytest -k cuda`` runs the CUDA ones: ``python -m benchmarks.gpu``)."""
    return torch.device(request.param)
