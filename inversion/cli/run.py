"""One run of ``python -m inversion`` from the user's options: where this process runs, the prior, the
inputs, the pinned manifest, the runner and, on the process that summarises, the report."""

from __future__ import annotations

import inspect
from pathlib import Path

from inversion import launch as distributed
from inversion.cli.options import RestoreOptions

__all__ = ["launch", "restore_folder", "run_folder"]


def restore_folder(*args, **kwargs) -> Path:
    """Restore the images of ``input`` and write restorations, degraded inputs, grid and metrics.

    Takes the fields of :class:`~inversion.cli.options.RestoreOptions` (the flags of ``python -m
    inversion``, positionally in their order or by name) and returns the output folder.
    """
    return run_folder(RestoreOptions(*args, **kwargs))


restore_folder.__signature__ = inspect.signature(RestoreOptions).replace(return_annotation=Path)


def _prepare(opts: RestoreOptions) -> tuple[Path, ...]:
    """Check the options and create the output folder; the folders never read as inputs."""
    opts.check()
    exclude = opts.excluded()
    Path(opts.output).mkdir(parents=True, exist_ok=True)
    return exclude


def _launches(opts: RestoreOptions) -> bool:
    """``--devices N`` outside a torch.distributed world: this process starts the N workers."""
    return opts.devices > 1 and opts.shard is None and not distributed.launched()


def launch(opts: RestoreOptions, argv: list[str]) -> Path:
    """``--devices N`` from the command line ``argv``: check the options, then run ``python -m inversion
    argv`` in N processes (:func:`inversion.launch.launch`); anything else runs here."""
    if not _launches(opts):
        return run_folder(opts)
    _prepare(opts)
    distributed.launch(opts.devices, argv)
    return Path(opts.output)


def run_folder(opts: RestoreOptions) -> Path:
    """Restore the images of ``opts.input`` in this process (its share, in a torch.distributed world or
    as ``--shard``) and, on the process that summarises, write the run's summary and report."""
    from inversion.cli.items import list_items
    from inversion.cli.labels import apply_labels, read_labels, write_labels_used
    from inversion.cli.manifest import fail_path, pin, row_path
    from inversion.cli.prior import load_prior_spec
    from inversion.cli.report import finalize
    from inversion.cli.runner import Job, Runner, check_fits, place, wait_for
    from inversion.cli.writer import RunWriter

    exclude = _prepare(opts)
    out = Path(opts.output)
    if _launches(opts):
        distributed.launch(opts.devices, None)  # raises: the workers need a command line
        return out
    where = place(opts)
    prior = load_prior_spec(opts.prior, where.device, opts.critic)
    operator = opts.operator.to(where.device)
    items = list_items(opts.input, prior.image_shape, opts.limit, opts.recursive, exclude, prior=prior)
    if opts.labels is not None:  # CSV rows for files beyond --limit are no error: match the whole input
        every = (
            items
            if opts.limit is None
            else list_items(opts.input, prior.image_shape, None, opts.recursive, exclude, prior=prior)
        )
        apply_labels(items, read_labels(opts.labels, prior.num_classes), [it.source for it in every])
    task = opts.task or type(operator).__name__
    check_fits(operator, prior, items)
    pin(opts, task, prior)
    if opts.labels is not None and where.shard == 0:  # the class each image was given, beside its outputs
        write_labels_used(out, items)
    mine = [it for it in items if where.owns(it)]
    todo = [it for it in mine if not row_path(out, it).exists()]
    job = Job(prior, operator, opts.method, task=task, seed=opts.seed, noise_seed=opts.noise_seed,
              options=opts.options or {}, device=where.device, shard=where.shard)  # fmt: skip
    Runner(job, RunWriter(out), opts.batch_size, where.progress).run(todo)
    if where.group is not None:  # torch.distributed: records gathered on rank 0, which writes the summary
        distributed.gather_records(where.group, out, mine, row_path, fail_path)
        if where.group.rank == 0:
            finalize(items, out, opts.method)
        distributed.finish(where.group)
        return out
    if where.num_shards > 1 and where.shard != 0:
        return out
    if where.num_shards > 1:  # --shard 0 of --num_shards: wait for the other shards' records
        wait_for(items, out, opts.wait_timeout)
    finalize(items, out, opts.method)
    return out
