"""``python -m inversion`` as a ``torch.distributed`` program.

* Process group from the environment: ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` /
  ``MASTER_PORT`` as set by ``torchrun`` (or ``--devices N``, which runs ``torch.distributed.run``
  in this process), or SLURM's ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID`` under ``srun``
  (``MASTER_ADDR`` then defaults to ``SLURM_LAUNCH_NODE_IPADDR``, ``MASTER_PORT`` to a port derived
  from ``SLURM_JOB_ID``). Backend: NCCL when CUDA is available, gloo otherwise.
* Each rank restores the images with ``index % world_size == rank``; the per-image records are
  gathered on rank 0 with ``gather_object`` (written there when rank 0 does not see them on disk,
  e.g. without a shared file system), rank 0 writes ``metrics.csv`` / ``grid.png`` / the summary,
  and all ranks meet at a barrier before leaving.
* A worker whose launcher dies (even by SIGKILL, which no launcher can forward) notices that it was
  re-parented and exits: killing the launcher takes its workers with it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = ["Group", "from_environment", "gather_records", "launch", "launched", "finish"]


@dataclass
class Group:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    owned: bool  # this module initialised the group (and destroys it in :func:`finish`)


def launched() -> bool:
    """True in a worker of torchrun / ``--devices N`` / SLURM (a world of more than one process)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_NTASKS", "1")) > 1


def _slurm_to_torch_env() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "SLURM_PROCID" not in os.environ:
        return
    addr = os.environ.get("MASTER_ADDR") or os.environ.get("SLURM_LAUNCH_NODE_IPADDR")
    if not addr:
        raise RuntimeError(
            "under SLURM the process group needs MASTER_ADDR (the first node's address): export it, "
            "e.g. MASTER_ADDR=$(scontrol show hostnames $SLURM_NODELIST | head -n1)"
        )
    os.environ["MASTER_ADDR"] = addr
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))


def _watch_parent() -> None:
    """Exit when the launcher dies: we were started by it, so a changed parent pid means it is gone.
    ``--devices`` tells its workers its pid (``GENPRIOR_LAUNCHER_PID``), so that a launcher that died
    before this check is noticed too; under torchrun / srun the parent at this call is the launcher."""
    parent = int(os.environ.get("GENPRIOR_LAUNCHER_PID", os.getppid()))

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                print(f"[inversion] rank {os.environ.get('RANK')}: launcher gone, exiting", file=sys.stderr)
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="inversion-parent-watch", daemon=True).start()


def from_environment(timeout: float = 3600.0) -> Group | None:
    """Join (initialising if needed) the process group described by the environment; ``None`` when
    this is a single-process run. ``timeout``: seconds a collective waits for the other ranks."""
    if not launched():
        return None
    _slurm_to_torch_env()
    if dist.is_initialized():
        owned = False
    else:
        if os.environ.get("GENPRIOR_WATCH_PARENT", "1") == "1":
            _watch_parent()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":  # NCCL collectives run on the current device: one GPU per local rank
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=float(timeout)))
        owned = True
    return Group(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owned)


def gather_records(group: Group, out: Path, mine: list, row_path, fail_path) -> None:
    """Send this rank's finished records (``rows/`` and ``failed/`` JSON) to rank 0, which writes any it
    does not see on disk, so that rank 0 can summarise all images without a shared file system."""
    records = {}
    for it in mine:
        for path in (row_path(out, it), fail_path(out, it)):
            if path.exists():
                records[str(path.relative_to(out))] = path.read_text()
    gathered = [None] * group.world_size if group.rank == 0 else None
    dist.gather_object(records, gathered, dst=0)
    if group.rank == 0:
        from datamodules.io.atomic import atomic_write_bytes

        for part in gathered:
            for rel, text in part.items():
                parts = Path(rel).parts
                if len(parts) != 2 or parts[0] not in ("rows", "failed") or ".." in parts:
                    raise ValueError(f"unexpected record path {rel!r} from another rank")
                path = out / rel
                if not path.exists() or path.read_text() != text:
                    json.loads(text)  # a record is JSON; never write anything else
                    atomic_write_bytes(path, text.encode())


def finish(group: Group) -> None:
    """Barrier, then leave the process group (if this module created it)."""
    dist.barrier()
    if group.owned:
        dist.destroy_process_group()


def launch(n: int, argv: list[str] | None) -> None:
    """Run ``python -m inversion argv`` in ``n`` processes through ``torch.distributed.run`` (the
    torchrun launcher, standalone rendezvous on this machine), in this process; raises if a worker
    failed. Workers inherit the environment; this checkout goes first on their ``PYTHONPATH``."""
    from torch.distributed.run import get_args_parser, run

    if argv is None:
        raise ValueError(
            "devices > 1 starts `python -m inversion` workers and needs its command line: run it from the "
            "shell, or run your script under `torchrun --nproc_per_node N`"
        )

    root = str(Path(__file__).resolve().parents[1])
    saved = {k: os.environ.get(k) for k in ("GENPRIOR_LAUNCHER_PID", "PYTHONPATH")}
    os.environ["GENPRIOR_LAUNCHER_PID"] = str(os.getpid())  # torch.distributed.run's agent runs here
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH", "")] if p)
    args = get_args_parser().parse_args(
        ["--standalone", "--nnodes", "1", "--nproc_per_node", str(int(n)), "--module", "inversion", *argv]
    )
    try:
        run(args)
    except Exception as err:  # torch's ChildFailedError carries the workers' tracebacks
        raise RuntimeError(f"{n} restoration workers: {err}; rerun the same command to resume") from err
    finally:  # the workers' variables must not leak into later launches from this process
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
