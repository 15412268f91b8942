"""The claims' priors: shared checkpoints (``--priors DIR ...``), waited for while they train (``--wait``),
or trained here with ``configs/lcm/<name>.yaml``.

A prior ``<name>`` in a priors folder ``DIR`` is ``DIR/<name>/last.ckpt`` or
``DIR/<name>/checkpoints/last.ckpt``. It counts as finished when a training job left ``DIR/DONE-<name>``
or when the ``training.json`` that ``python -m lcm fit`` writes under ``DIR/<name>/`` as it stops
(:class:`callbacks.report.PriorReport`) says it reached ``max_steps``. In a folder whose jobs leave
``DONE-*`` markers, an unfinished checkpoint is not used.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lcm.configs import config_dir

__all__ = ["PRIOR_DATA", "shared_checkpoint", "train_prior", "training_finished", "wait_for"]

#: the priors the claims use and the data each was trained on
PRIOR_DATA = {
    "wgangp": "fashion_mnist",
    "glo": "fashion_mnist",
    "glo_highdim": "fashion_mnist",
    "lcm": "fashion_mnist",
    "ae": "fashion_mnist",
    "wgangp_emoji": "emoji",
}


def training_finished(folder: Path, name: str) -> bool:
    """Whether prior ``name`` in priors folder ``folder`` finished training: ``folder/DONE-<name>``
    exists, or the newest ``training.json`` under ``folder/<name>/`` has ``"done": true``."""
    if (folder / f"DONE-{name}").exists():
        return True
    runs = (folder / name).rglob("training.json") if (folder / name).is_dir() else []
    newest = max(runs, key=lambda p: p.stat().st_mtime, default=None)
    if newest is None:
        return False
    status = json.loads(newest.read_text())  # written atomically by PriorReport
    return isinstance(status, dict) and status.get("done") is True


def wait_for(folders: list[Path], name: str, poll: float = 20.0) -> None:
    """Block while ``name`` is training in a priors folder: ``DIR/<name>/`` exists (the training run
    made it) and has not finished (:func:`training_finished`). The first folder holding ``<name>/`` decides;
    a prior that no folder holds is not waited for."""
    for d in folders:
        if (d / name).is_dir():
            while not training_finished(d, name):
                print(f"[claims] waiting for {d / name} to finish (DONE-{name} or training.json)", flush=True)
                time.sleep(poll)
            return


def shared_checkpoint(folders: list[Path], name: str) -> Path | None:
    """The first usable ``last.ckpt`` of ``name`` in ``folders``, or None."""
    for d in folders:
        markers = any(d.glob("DONE-*"))
        for cand in (d / name / "last.ckpt", d / name / "checkpoints" / "last.ckpt"):
            if cand.is_file() and (not markers or training_finished(d, name)):
                return cand
    return None


def train_prior(name: str, folder: Path, smoke: bool = False) -> Path:
    """Train ``configs/lcm/<name>.yaml`` into ``folder`` (resumed from its ``last.ckpt``) unless an earlier
    call finished (``folder/DONE``); ``smoke``: a tiny network for 20 steps on 64 images.

    ``folder/DONE`` is written only once the run's ``training.json`` says it reached ``max_steps``: a run
    that the config's ``max_time`` safety stop ended early is resumed from ``last.ckpt`` without it
    (Lightning counts ``max_time`` over all sessions, so a resumed run would stop at once), as
    ``make demo`` does."""
    from lcm.cli import cli_main

    done = folder / "DONE"
    last = folder / "last.ckpt"
    if done.exists() and last.is_file():
        return last
    args = [
        "fit",
        "-c",
        str(config_dir() / "lcm" / f"{name}.yaml"),
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={folder}",
        f"--checkpoint.dirpath={folder}",
    ]
    if smoke:
        args += [
            "--model.init_args.width=4",
            "--model.init_args.sample_every_n_steps=0",
            "--data.init_args.limit_train=64",
            "--data.init_args.batch_size=16",
            "--trainer.max_steps=20",
            "--checkpoint.every_n_train_steps=10",
        ]
        if name.startswith("wgangp"):
            args += ["--model.init_args.critic_width=4", "--model.init_args.latent_dim=8"]
        if name == "lcm":
            args += ["--model.init_args.hidden=[4,4]"]
    for _ in range(2):  # a first run, then at most one resume without the safety stop
        resume = ["--ckpt_path", str(last), "--trainer.max_time=null"] if last.is_file() else []
        print(f"[claims] training prior {name} -> {folder}" + (" (resumed)" if resume else ""), flush=True)
        cli_main(args + resume)
        if training_finished(folder.parent, folder.name) and last.is_file():
            done.touch()
            return last
    raise RuntimeError(
        f"training prior {name} in {folder} stopped before max_steps twice (see its training.json); "
        "rerun to resume it from last.ckpt"
    )
