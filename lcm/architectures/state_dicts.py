"""The one strict state-dict loader of published weights: every key of the network present in the file
with its shape, no key of the file left over, else one ValueError listing the missing, unexpected and
wrong-shape keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

__all__ = ["load_state_dict_strict"]


def _shown(keys: list[str], limit: int = 20) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_state_dict_strict(
    net: nn.Module,
    state: Mapping[str, torch.Tensor],
    what: str,
    architecture: str,
    optional: Callable[[str], bool] | None = None,
    hint: str = "",
    assign: bool = False,
) -> None:
    """Load ``state`` into ``net`` strictly (keys and shapes), or raise one ValueError naming every problem.

    Args:
        net: the network (on the meta device when ``assign``: the file's tensors become its parameters).
        state: the file's state dict.
        what: the file / role, for the message (``"'G_ema.pth' BigGAN generator state dict"``).
        architecture: what ``net`` is, for the message (``"the BigGAN architecture inferred from it"``).
        optional: keys of ``net`` a file may lack (they keep ``net``'s values), e.g. DGP's additions.
        hint: appended to the message (a likely cause).
        assign: ``load_state_dict(assign=True)`` (networks built on the meta device).

    Raises:
        ValueError: ``"<what> does not match <architecture>: missing keys: ...; unexpected keys: ...;
            wrong-shape keys: k (file (a, b), network (c, d))"``.
    """
    own = net.state_dict()
    skip = _check_keys(own, state, what, architecture, optional, hint)
    net.load_state_dict({**{k: own[k] for k in skip}, **state}, strict=True, assign=assign)


def build_strict(
    factory: Callable[[], nn.Module],
    state: Mapping[str, torch.Tensor],
    what: str,
    architecture: str,
    optional: Callable[[str], bool] | None = None,
) -> nn.Module:
    """``factory()`` strictly loaded with ``state``, built for real only after a build on the meta device
    (no memory) has the stored keys and shapes: a width read from one small tensor cannot make the loader
    allocate a network the file's weights do not fill (issue 31, item 1)."""
    with torch.device("meta"):
        _check_keys(factory().state_dict(), state, what, architecture, optional, "")
    net = factory()
    load_state_dict_strict(net, state, what, architecture, optional=optional)
    return net


def _check_keys(own, state, what, architecture, optional, hint) -> set[str]:
    """The optional keys ``state`` lacks; raises the ValueError of :func:`load_state_dict_strict`."""
    skip = {k for k in set(own) - set(state) if optional is not None and optional(k)}
    missing = sorted(set(own) - set(state) - skip)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        shapes = [f"{k} (file {tuple(state[k].shape)}, network {tuple(own[k].shape)})" for k in wrong]
        parts = [
            f"{name} keys: {_shown(keys)}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", shapes))
            if keys
        ]
        raise ValueError(
            f"{what} does not match {architecture}: " + "; ".join(parts) + (f" ({hint})" if hint else "")
        )
    return skip
