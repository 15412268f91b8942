"""IAGAN on the real face DCGAN ``dcgan-faces-64``: ``restore`` (the engine) against plain loops with the same
steps, process CPU seconds per image (one thread):

    python -m benchmarks.iagan_speed --threads 1 --starts 3 --csgm-steps 200 --ia-steps 100

* ``restore``: ``restore(y, op, prior, "iagan", ...)``, IAGAN's code's rules (its [-1, 1] MSE, last iterate);
* ``plain, starts one after another``: a loop written as IAGAN's ``IAGAN.py`` runs it: a fresh Adam per start
  on z only (the generator frozen), then one Adam for z and one for every generator parameter;
* ``plain, batched starts``: the same loop with the starts as one batch.

Each row restores the Grace Hopper photo at SR x4 (IAGAN's zero-padded bicubic A) from the same starts;
the rows' images agree (their max difference is printed). Best of ``--repeats`` runs (a shared machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from datamodules.faces import FacesDataset
from inversion import restore
from inversion.operators import SuperResolution
from lcm import load_prior
from lcm.prior import from_unit, to_unit


def plain(prior, op, y_pm, z0: torch.Tensor, csgm_steps: int, ia_steps: int, batched: bool) -> torch.Tensor:
    """IAGAN's CSGM + IA as its code runs them (``IAGAN.py``), on [-1, 1] images. ``z0``: ``(R, nz)``."""
    g = copy.deepcopy(prior.generator).eval().requires_grad_(False)
    mse = torch.nn.MSELoss()
    groups = [z0] if batched else list(z0.split(1))
    finals, scores = [], []
    for z in groups:
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.1)
        for _ in range(csgm_steps):
            opt.zero_grad()
            residual = op.A(g(z), check=False) - y_pm
            loss = residual.pow(2).flatten(1).mean(1).sum()  # per start: MSELoss
            loss.backward()
            opt.step()
        finals.append(z.detach())
        scores.append(residual.detach().pow(2).flatten(1).sum(1))  # the code's pick: its last forward
    z = torch.cat(finals)[torch.cat(scores).argmin()].unsqueeze(0).clone().requires_grad_(True)
    g = copy.deepcopy(prior.generator).eval().requires_grad_(True)
    opt_g, opt_z = torch.optim.Adam(g.parameters(), lr=1e-3), torch.optim.Adam([z], lr=1e-4)
    for _ in range(ia_steps):
        opt_g.zero_grad()
        opt_z.zero_grad()
        gz = g(z)
        loss = mse(op.A(gz, check=False), y_pm)
        loss.backward()
        opt_g.step()
        opt_z.step()
    with torch.no_grad():
        return to_unit(g(z))


def _cpu(fn, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.iagan_speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--csgm-steps", type=int, default=200)
    p.add_argument("--ia-steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prior = load_prior("dcgan-faces-64")
    x = FacesDataset(resolution=64)[0]["image"].unsqueeze(0)
    op = SuperResolution(4, "bicubic", padding="zeros")
    y = op.A(x)
    y_pm = op.A(from_unit(x))  # the code's measurement of its [-1, 1] image
    z0 = prior.sample_latent(args.starts, generator=torch.Generator().manual_seed(0))
    opts = {"init_latent": z0.unsqueeze(0), "restarts": args.starts, "csgm_steps": args.csgm_steps,
            "iagan_steps": args.ia_steps}  # fmt: skip
    rows = {
        "restore": _cpu(lambda: restore(y, op, prior, "iagan", **opts).raw, args.repeats),
        "plain, starts one after another": _cpu(
            lambda: plain(prior, op, y_pm, z0, args.csgm_steps, args.ia_steps, False), args.repeats
        ),
        "plain, batched starts": _cpu(
            lambda: plain(prior, op, y_pm, z0, args.csgm_steps, args.ia_steps, True), args.repeats
        ),
    }
    ref = rows["restore"][1]
    base = rows["restore"][0]
    print(f"IAGAN, dcgan-faces-64, SR x4, {args.starts} starts x {args.csgm_steps} + {args.ia_steps} steps, "
          f"{args.threads} thread(s), CPU s (best of {args.repeats})")  # fmt: skip
    print("| loop | CPU s | restore's speed-up | max image difference to restore |")
    print("|---|---|---|---|")
    out = {}
    for name, (sec, img) in rows.items():
        diff = float((img - ref).abs().max())
        print(f"| {name} | {sec:.2f} | {sec / base:.2f}x | {diff:.1e} |")
        out[name] = {"cpu_s": sec, "speedup_of_restore": sec / base, "max_diff": diff}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
