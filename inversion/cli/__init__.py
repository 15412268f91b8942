"""``python -m inversion``: restore every image of a folder or a built-in test split.

Example::

    python -m inversion --config configs/inversion/sr4.yaml --prior outputs/prior.ckpt \\
        --method iagan --input fashion_mnist --limit 100 --output outputs/sr4_iagan --devices 2

Writes under ``--output``: ``restored/<name>`` (``<name>``: the file's path relative to the input, kept
when it ends in ``.png``, else with ``.png`` appended, so every input file has its own output),
``degraded/<name>``, ``truth/`` and ``adjoint/`` (A†y, linear operators), ``grid.png`` (degraded |
restored | truth, the first 16 images), ``metrics.csv`` (one row per image), ``failures.txt`` (images
that could not be read or restored, with the reason) and ``report.html`` (``inversion.cli.report``: every
image, loss curves, mean ± 95% interval, failures, the effective configuration). ``python -m inversion
compare OUT1 OUT2 ...`` writes one report comparing runs on the same images. Each finished image leaves
``rows/<name minus .png>.json`` (written atomically, last); a rerun skips those images, so an
interrupted run resumes where it stopped. An image with key ``k`` (a built-in split: its index; a
folder: a number derived from the file's relative path, so adding files never changes another file's
result) uses seed ``seed + k`` (latent start), ``noise_seed + k`` (measurement noise) and, for per-image
masks, mask seed ``mask seed + k``, so its result does not depend on which process restores it:
under ``torchrun --nproc_per_node N -m inversion ...`` or SLURM's ``srun`` it is a ``torch.distributed``
program (``inversion.cli.launch``): each rank restores its share, rank 0 gathers the records and
writes one ``metrics.csv``; ``--devices N`` starts N such processes through ``torch.distributed.run``.
A run that restores no image exits non-zero (and leaves no ``run.json`` behind).

The parts, one job each (the entry point takes the user's options, :class:`RestoreOptions`, and nothing
else):

* :mod:`~inversion.cli.options` -- :class:`RestoreOptions`, the user's options (the flags), and their checks;
* :mod:`~inversion.cli.parser` -- the argument parser and ``main``;
* :mod:`~inversion.cli.help` -- ``--help``: the flags' overview, without torch;
* :mod:`~inversion.cli.run` -- one run from the options: placement, prior, items, manifest, runner, report;
* :mod:`~inversion.cli.prior` -- ``--prior``: a checkpoint or a ``module:factory``;
* :mod:`~inversion.cli.items` -- the inputs: a folder's files or a built-in split, their output names;
* :mod:`~inversion.cli.labels` -- ``--labels``: the class-labels CSV;
* :mod:`~inversion.cli.manifest` -- the output folder's bookkeeping: ``run.json`` (pinned options),
  ``rows/`` and ``failed/`` (what was done);
* :mod:`~inversion.cli.runner` -- sharding over processes, batches, retries, going on past a bad image;
* :mod:`~inversion.cli.writer` -- writes a restored batch (images, then its records) atomically;
* :mod:`~inversion.cli.finish` -- ``metrics.csv``, ``failures.txt``, ``grid.png``, ``report.html``.

Light on import: ``python -m inversion --help`` prints :func:`~inversion.cli.help.overview` from the
options alone, with no torch, operators, methods, priors, Lightning or datasets (``--operator.help NAME``
and the parser's other flags load the operators).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "RestoreOptions": "inversion.cli.options",
    "build_parser": "inversion.cli.parser",
    "main": "inversion.cli.parser",
    "restore_folder": "inversion.cli.run",
    "load_prior_spec": "inversion.cli.prior",
    "register_prior_factory": "inversion.cli.prior",
    "BUILTIN": "inversion.cli.items",
    "Item": "inversion.cli.items",
    "list_items": "inversion.cli.items",
    "output_name": "inversion.cli.items",
    "read_labels": "inversion.cli.labels",
    "apply_labels": "inversion.cli.labels",
    "write_labels_used": "inversion.cli.labels",
    "FIELDS": "inversion.cli.finish",
    "operator_for": "inversion.cli.runner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'inversion.cli' has no attribute {name!r}")
