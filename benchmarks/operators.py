"""``python -m benchmarks.operators``: speed of the operators against deepinv (or a torch reference).

``python -m benchmarks.operators`` times ``A``, ``A_adjoint`` and ``A_dagger`` of Blur (each
padding), Inpainting and Denoising on a (16, 3, 64, 64) batch with one thread, interleaving the two
sides round by round and reporting the median time per call and the ratio ours / reference (< 1:
ours is faster). ``A`` and ``A_adjoint`` of ours are timed twice: as users call them (with the NaN scan
of the input) and with ``check=False``, as the restoration loops call ``A`` on their generator's output
(deepinv scans nothing). The reference is deepinv when it is importable (it is not a dependency of the
package: ``pip install deepinv==0.5.*`` to compare against it); otherwise a straightforward reference
written here with ``torch.nn.functional`` (grouped ``conv2d`` / ``conv_transpose2d``, mask products),
and the table says which::

    python -m benchmarks.operators                       # deepinv when installed, else the torch reference
    python -m benchmarks.operators --reference torch --rounds 3 --calls 2 --output outputs/operators
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from inversion.operators import Blur, Denoising, Inpainting
from lcm.runtime import tune_allocator

__all__ = ["main", "time_pair"]


def time_pair(
    ours: Callable[[], object], ref: Callable[[], object], rounds: int = 15, calls: int = 20
) -> tuple[float, float]:
    """Median milliseconds per call of ``ours`` and ``ref``, timed alternately round by round."""
    ours(), ref()
    t_ours, t_ref = [], []
    for _ in range(rounds):
        for fn, acc in ((ours, t_ours), (ref, t_ref)):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            acc.append((time.perf_counter() - t0) / calls * 1e3)
    return statistics.median(t_ours), statistics.median(t_ref)


def _plain_reference(op: torch.nn.Module, kind: str, x: torch.Tensor):
    """A torch-only reference with the same maps (grouped convs, products) for inputs like ``x``."""
    if kind == "blur":
        k = op.k2d.float()
        pad, mode = (k.shape[-1] // 2,) * 4, op.padding

        def conv(x, transpose=False):
            b, c, h, w = x.shape
            wgt = k.flip(0, 1) if transpose else k
            z = x.reshape(1, b * c, h, w)
            z = F.pad(z, pad, mode=mode) if mode != "zeros" else F.pad(z, pad)
            return F.conv2d(z, wgt.expand(b * c, 1, *k.shape), groups=b * c).reshape(b, c, h, w)

        # the adjoint of a circular correlation is the circular correlation with the flipped kernel;
        # for other paddings this is only a timing stand-in of the same cost
        return {"A": conv, "A_adjoint": lambda y: conv(y, True)}
    if kind == "inpaint":
        mask = op.mask_for(x)
        return {"A": lambda x: x * mask, "A_adjoint": lambda y: y * mask, "A_dagger": lambda y: y * mask}
    return {"A": lambda x: x, "A_adjoint": lambda y: y, "A_dagger": lambda y: y}


def _deepinv_reference(dinv, op: torch.nn.Module, kind: str, x: torch.Tensor):
    if kind == "blur":
        mode = {"zeros": "constant"}.get(op.padding, op.padding)
        # deepinv convolves; the flipped kernel makes its map our correlation (symmetric here anyway)
        phys = dinv.physics.Blur(filter=op.k2d.float().flip(0, 1)[None, None], padding=mode)
        return {"A": phys.A, "A_adjoint": phys.A_adjoint}
    if kind == "inpaint":
        phys = dinv.physics.Inpainting(
            img_size=tuple(x.shape[1:]), mask=op.mask_for(x)[0].expand_as(x[0]).clone()
        )
        return {"A": phys.A, "A_adjoint": phys.A_adjoint, "A_dagger": phys.A_dagger}
    phys = dinv.physics.Denoising()
    return {"A": phys.A, "A_adjoint": phys.A_adjoint, "A_dagger": phys.A_dagger}


def main(argv: list[str] | None = None) -> int:
    tune_allocator()  # freed activations stay in the process (lcm.runtime; results bit-identical)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.operators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--reference", choices=["auto", "deepinv", "torch"], default="auto")
    parser.add_argument("--output", default=None, help="folder for report.html (the table below)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dinv = None
    if args.reference != "torch":
        try:
            import deepinv as dinv  # noqa: PLC0415 - optional, benchmark only
        except ImportError:
            if args.reference == "deepinv":
                raise SystemExit(
                    "deepinv is not installed: pip install 'deepinv==0.5.*' or use --reference torch"
                ) from None
    ref_name = f"deepinv {dinv.__version__}" if dinv is not None else "torch grouped-conv reference"
    x = torch.rand(args.batch, 3, args.size, args.size)
    cases: list[tuple[str, torch.nn.Module, str]] = [
        (f"Blur uniform 9 {p}", Blur("uniform", 9, padding=p), "blur")
        for p in ("circular", "reflect", "replicate", "zeros")
    ]
    cases += [
        ("Inpainting center", Inpainting("center"), "inpaint"),
        ("Denoising", Denoising(0.1), "denoise"),
    ]
    print(f"operators vs {ref_name}; batch {tuple(x.shape)}, 1 thread, median of {args.rounds} rounds")
    print(f"{'operator':28s} {'call':24s} {'ours ms':>9s} {'ref ms':>9s} {'ours/ref':>9s}")
    rows = []
    for name, op, kind in cases:
        if dinv is not None:
            ref = _deepinv_reference(dinv, op, kind, x)
            err = (op.A(x) - ref["A"](x)).abs().max().item()
            if err > 1e-5:
                raise SystemExit(f"{name}: ours and the reference differ by {err:.2e}; not the same map")
        else:
            ref = _plain_reference(op, kind, x)
        for call, fn in ref.items():
            for check in (True, False) if call != "A_dagger" else (True,):
                label = call if check else f"{call} (check=False)"
                t_ours, t_ref = time_pair(
                    lambda f=getattr(op, call), c=check: f(x, check=c),  # noqa: B008
                    lambda g=fn: g(x),
                    args.rounds,
                    args.calls,
                )
                print(f"{name:28s} {label:24s} {t_ours:9.3f} {t_ref:9.3f} {t_ours / t_ref:9.2f}")
                rows.append({"operator": name, "call": label, "ours_ms": t_ours, "ref_ms": t_ref})
    if args.output:
        from datamodules.io.html import json_report

        meta = {"reference": ref_name, "batch": list(x.shape), "threads": 1, "rounds": args.rounds}
        print(f"report: {json_report(args.output, 'Operators vs ' + ref_name, {'meta': meta, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
