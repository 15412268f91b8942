"""One run of ``python -m inversion`` from the user's options: where this process runs, the prior, the
inputs, the pinned manifest, the runner and, on the process that summarises, the report."""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

from inversion.cli import launch as distributed
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
    _check_cli_values(opts)
    exclude = opts.excluded()
    Path(opts.output).mkdir(parents=True, exist_ok=True)
    return exclude


SEED_LIMIT = 2**63 - 2**32  # seed + an image's key (< 2**31) stays a torch seed (int64)


def _check_cli_values(opts: RestoreOptions) -> None:
    """What would fail deep in torch or the file system: a seed torch cannot take, ``--output`` naming a
    file (or below one)."""
    for flag in ("seed", "noise_seed"):
        v = getattr(opts, flag)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < SEED_LIMIT:
            raise ValueError(
                f"--{flag} must be an integer in [0, 2**63 - 2**32), got {v!r}; pick a smaller seed"
            )
    out = Path(opts.output)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(
                f"--output {opts.output!r}: {str(p)!r} is a file, not a folder; name a folder (created if "
                "missing)"
            )


def _launches(opts: RestoreOptions) -> bool:
    """``--devices N`` outside a torch.distributed world: this process starts the N workers."""
    return opts.devices > 1 and opts.shard is None and not distributed.launched()


def launch(opts: RestoreOptions, argv: list[str]) -> Path:
    """``--devices N`` from the command line ``argv``: check the options, then run ``python -m inversion
    argv`` in N processes (:func:`inversion.cli.launch.launch`); anything else runs here."""
    if not _launches(opts):
        return run_folder(opts)
    _prepare(opts)
    distributed.launch(opts.devices, argv)
    return Path(opts.output)


def run_folder(opts: RestoreOptions) -> Path:
    """Restore the images of ``opts.input`` in this process (its share, in a torch.distributed world or
    as ``--shard``) and, on the process that summarises, write the run's summary and report."""
    from inversion.cli.runner import place

    exclude = _prepare(opts)
    out = Path(opts.output)
    if _launches(opts):
        distributed.launch(opts.devices, None)  # raises: the workers need a command line
        return out
    where = place(opts)
    with _own(out, where):
        return _restore_here(opts, where, exclude)


def _own(out: Path, where):
    """The lock of the output folder (:func:`~inversion.cli.manifest.own_folder`): a single run holds it,
    each ``--shard`` process shares it, rank 0 of a torch.distributed world holds it for all its ranks."""
    from inversion.cli.manifest import own_folder

    if where.group is not None and where.group.rank != 0:
        return contextlib.nullcontext()
    return own_folder(out, shared=where.group is None and where.num_shards > 1)


@contextlib.contextmanager
def _interruptible(out: Path, mine: list):
    """SIGTERM during the restorations ends the run with :class:`~datamodules.io.errors.Interrupted`
    (exit 143 from the CLI) saying how many images are kept; Lightning's own ``SIGTERMException`` (a
    ``SystemExit`` without a code: exit 0) becomes the same."""
    from datamodules.io.errors import Interrupted, sigterm_interrupts
    from inversion.cli.manifest import row_path

    def stopped() -> Interrupted:
        done = sum(row_path(out, it).exists() for it in mine)
        return Interrupted(
            f"interrupted by SIGTERM: {done} of {len(mine)} images finished (kept in {str(out / 'rows')!r}); "
            "rerun the same command to resume"
        )

    try:
        with sigterm_interrupts():
            yield
    except Interrupted:
        raise stopped() from None
    except SystemExit as err:
        if err.code not in (None, 0):
            raise
        raise stopped() from None


def _restore_here(opts: RestoreOptions, where, exclude: tuple[Path, ...]) -> Path:
    from inversion.cli.batch import resolve_batch_size
    from inversion.cli.degraded import runner_for
    from inversion.cli.finish import finalize
    from inversion.cli.items import list_items
    from inversion.cli.labels import apply_labels, read_labels, write_labels_used
    from inversion.cli.manifest import fail_path, pin, row_path
    from inversion.cli.prior import load_prior_spec
    from inversion.cli.runner import Job, check_fits, wait_for

    out = Path(opts.output)
    prior = load_prior_spec(opts.prior, where.device, opts.critic)
    operator = opts.operator.to(where.device)
    if opts.degraded:  # the user's measurement files (inversion.cli.degraded)
        from inversion.cli.degraded import degraded_items

        items = degraded_items(opts, prior, operator)
    else:
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
    batch = resolve_batch_size(opts.batch_size, prior, opts.method, where.device)
    with _interruptible(out, mine):
        runner_for(opts, job, out, batch, where.progress).run(todo)
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
