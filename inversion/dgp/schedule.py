"""DGP schedules: stage mappings with a ``blocks`` entry (DGP Tables 6-11, "Blocks num.") split into the
block counts of :class:`callbacks.ProgressiveUnfreezing` and the engine's :class:`inversion.Stage` list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callbacks.finetuning import as_blocks
from inversion.stages import Stage

__all__ = ["schedule_to_stages"]


def schedule_to_stages(schedule: Sequence[Mapping]) -> tuple[list[int | str], list]:
    """Split DGP-style stage mappings (``blocks`` plus :class:`inversion.Stage` keys) into the per-stage
    block counts and engine stages (DGP Tables 6-11: "Blocks num.", lrs, loss weights, iterations).

    A stage with ``blocks: k > 0`` (or ``'all'``) trains the generator (``generator='all'`` in the engine
    stage; ``ProgressiveUnfreezing`` then restricts it to the first ``k`` blocks); ``blocks: 0`` trains
    the latent only.

    Returns:
        ``(blocks, stages)``: one entry each per stage.
    """
    if isinstance(schedule, Mapping) or not len(schedule):
        raise ValueError("the DGP schedule must be a non-empty list of stage mappings with a 'blocks' key")
    blocks, stages = [], []
    for i, s in enumerate(schedule):
        if not isinstance(s, Mapping) or "blocks" not in s:
            raise ValueError(
                f"DGP stage {i} needs a 'blocks' entry (number of generator blocks to fine-tune)"
            )
        rest = dict(s)
        k = as_blocks(rest.pop("blocks"), f"DGP stage {i}")
        if "generator" in rest:
            raise ValueError(f"DGP stage {i}: give 'blocks' (first k blocks), not 'generator'")
        rest.setdefault("name", f"stage{i + 1}")
        try:
            stages.append(Stage(generator="all" if k else None, **rest))
        except TypeError as err:
            raise ValueError(f"DGP stage {i} has unknown keys: {err}") from err
        blocks.append(k)
    return blocks, stages
