"""The third bad-input catalogue (issue 31), the CLI side: in-range starts that were the truth, runs that
mixed in one folder, resumes across a changed operator or prior file, FIFOs, interrupted runs, long names
and the CLI's one-line errors. One test (or a few) per item; each failed before its fix.

====  ======================================================  ==========================================
item  test                                                    bad input
====  ======================================================  ==========================================
4     test_no_method_start_is_a_held_out_latent               ``--input prior_samples``, seeds seed + i
4     test_one_csgm_step_on_prior_samples_is_not_at_truth     one CSGM step on ``prior_samples``
====  ======================================================  ==========================================
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _argv(src, out, op: str = "Denoising", extra=()) -> list[str]:
    return [
        "--prior", "lcm.toy:tiny_prior", "--operator.class_path", f"inversion.operators.{op}",
        *(["--operator.init_args.sigma", "0"] if op == "Denoising" else []),
        "--input", str(src), "--output", str(out), "--progress", "false",
        "--options", "{csgm_steps: 1, restarts: 1}", *extra,
    ]  # fmt: skip


# -- 4 ------------------------------------------------------------------------------------------------
def test_no_method_start_is_a_held_out_latent():
    """Reproduction: ``python -m inversion --input prior_samples --prior dcgan-faces-64 --method csgm``:
    held-out sample i was drawn with seed ``2**40 + i``, and torch's CPU generator keeps 32 bits of a seed,
    so it was the start of image i (seed 0 + i). No start of the first images, for any base seed a run may
    take and with restarts, may equal a held-out latent."""
    from inversion.methods import init_latents
    from inversion.samples import held_out_latents
    from lcm.toy import tiny_prior

    prior = tiny_prior()
    n = 8
    held = held_out_latents(prior, n)
    for base in (0, 1, 2**32, 2**40, 2**63 - 2 * n):
        starts = init_latents(prior, [base + i for i in range(n)], per_image=4)
        dist = (starts[:, None] - held[None]).abs().amax(dim=-1)  # (starts, held out)
        assert float(dist.min()) > 1e-3, f"base seed {base}: a start equals a held-out latent"


def test_one_csgm_step_on_prior_samples_is_not_at_truth(tmp_path):
    """Reproduction: one CSGM step on ``--input prior_samples`` gave 155 dB (the start was the truth)."""
    import csv

    from inversion import cli

    out = tmp_path / "o"
    cli.main(_argv("prior_samples", out, extra=["--limit", "3"]))
    with open(out / "metrics.csv") as f:
        psnr = [float(r["psnr"]) for r in csv.DictReader(f)]
    assert len(psnr) == 3 and max(psnr) < 60, psnr
