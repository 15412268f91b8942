"""``python -m benchmarks.gpu``: the prepared check of a CUDA GPU (~5 minutes on one H100-class card).

1. the device-dependent tests on CUDA (``pytest -k cuda tests/test_devices.py``: the ``device`` fixture of
   tests/conftest.py);
2. ``benchmarks.dgp_step`` on a full-size BigGAN-128 on CUDA at FP32 and at TF32 (seconds per DGP step of the
   plain loop, the faithful and the fast variant; G + D forward + backward);
3. IAGAN on ``dcgan-faces-64`` (SR x4 of its own held-out samples, ``--starts`` x ``--csgm-steps`` CSGM +
   ``--iagan-steps`` joint steps) at batch 1 / 16 / 64 with ``sequential`` and ``vmap`` generator copies, in
   images per second (wall clock after ``torch.cuda.synchronize``).

Fails at once, saying so, where torch sees no CUDA device. Writes ``--output``/gpu.json (and the two
``dgp_step_*.json``) and prints the numbers. Example::

    python -m benchmarks.gpu --output outputs/gpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from lcm.runtime import tune_allocator

__all__ = ["main"]

REPO = Path(__file__).resolve().parents[1]


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise SystemExit(
            "benchmarks.gpu: torch sees no CUDA device (torch.cuda.is_available() is False; torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}). Run it on a machine with an NVIDIA GPU "
            "and a CUDA build of torch; nothing was measured."
        )
    return torch.device("cuda", torch.cuda.current_device())


def _run(argv: list[str], timeout: int) -> subprocess.CompletedProcess:
    print("$", " ".join(argv), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    return subprocess.run(
        argv, cwd=REPO, env=env, timeout=timeout, check=False, text=True, capture_output=True
    )


def cuda_tests() -> dict:
    run = _run([sys.executable, "-m", "pytest", "-q", "-k", "cuda", "tests/test_devices.py"], 600)
    tail = (run.stdout + run.stderr).strip().splitlines()[-1:] or [""]
    print(run.stdout[-3000:], run.stderr[-2000:], flush=True)
    return {"returncode": run.returncode, "summary": tail[0]}


def dgp_step(out: Path, tf32: bool, steps: int) -> dict:
    path = out / f"dgp_step_{'tf32' if tf32 else 'fp32'}.json"
    argv = [sys.executable, "-m", "benchmarks.dgp_step", "--device", "cuda", "--steps", str(steps),
            "--json", str(path), *(["--tf32"] if tf32 else [])]  # fmt: skip
    run = _run(argv, 600)
    if run.returncode != 0:
        return {"error": run.stderr[-3000:]}
    return json.loads(path.read_text())


def iagan_images_per_s(device, batches, batchings, starts, csgm_steps, iagan_steps) -> list[dict]:
    import lcm
    from inversion import restore
    from inversion.cli.samples import held_out_samples
    from inversion.operators import SuperResolution

    prior = lcm.load_prior("dcgan-faces-64", map_location=device)
    op = SuperResolution(4, "bicubic").to(device)
    x = held_out_samples(prior, max(batches)).to(device)
    opts = {"csgm_steps": csgm_steps, "restarts": starts, "iagan_steps": iagan_steps}
    restore(op.A(x[:1]), op, prior, "iagan", seed=0, **{**opts, "csgm_steps": 5, "iagan_steps": 5})  # warm-up
    rows = []
    for batching in batchings:
        for b in batches:
            y = op.A(x[:b])
            torch.cuda.synchronize(device)
            t = time.perf_counter()
            res = restore(y, op, prior, "iagan", seed=0, batching=batching, **opts)
            torch.cuda.synchronize(device)
            s = time.perf_counter() - t
            row = {"batching": batching, "batch": b, "seconds": s, "images_per_s": b / s,
                   "mean_measurement_mse": float(res.measurement_mse.mean())}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default="outputs/gpu", help="folder of gpu.json and dgp_step_*.json")
    p.add_argument("--dgp-steps", type=int, default=5, help="timed steps per dgp_step variant")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--batching", nargs="+", default=["sequential", "vmap"])
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--csgm-steps", type=int, default=200)
    p.add_argument("--iagan-steps", type=int, default=100)
    p.add_argument("--skip", nargs="*", default=[], choices=["tests", "dgp", "iagan"])
    args = p.parse_args(argv)
    device = require_cuda()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }
    if "tests" not in args.skip:
        result["cuda_tests"] = cuda_tests()
    if "dgp" not in args.skip:
        result["dgp_step_fp32"] = dgp_step(out, False, args.dgp_steps)
        result["dgp_step_tf32"] = dgp_step(out, True, args.dgp_steps)
    if "iagan" not in args.skip:
        result["iagan_dcgan_faces_64"] = iagan_images_per_s(
            device, args.batches, args.batching, args.starts, args.csgm_steps, args.iagan_steps
        )
    tmp = out / "gpu.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out / "gpu.json")
    print(json.dumps(result, indent=2), flush=True)
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
