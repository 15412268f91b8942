"""Chains of operators, e.g. DGP's hybrid restoration phi_a(phi_b(phi_c(x)))."""

from __future__ import annotations

import torch
from torch import nn

from inversion.operators.base import LinearOperator, Operator

__all__ = ["Composite"]


class Composite(LinearOperator):
    """``A = A_k o ... o A_1`` for ``operators = [A_1, ..., A_k]`` (applied first to last).

    DGP Fig. 8(b) hybrid restoration: ``Composite([SuperResolution(2), Colorization(), Inpainting()])``.
    The adjoint applies the adjoints in reverse order. The pseudo-inverse is NOT the composition of the
    pseudo-inverses (wrong in general); it is computed by CGLS on ``A^T A x = A^T y`` from 0: the
    minimum-norm least-squares solution for any ``y``, also for rank-deficient chains such as
    ``[Colorization(), Inpainting()]`` and noisy ``y`` outside the range of ``A``. Only the chain's own
    ``sigma`` is applied by ``forward``; the members' noise levels are ignored.

    Args:
        operators: the chain, first applied first.
        sigma: measurement noise standard deviation on the final output.
        cg_iters: maximum CGLS iterations of the pseudo-inverse.
    """

    def __init__(self, operators: list[Operator], sigma: float = 0.0, cg_iters: int = 300) -> None:
        super().__init__(sigma=sigma, cg_iters=cg_iters)
        if len(operators) == 0:
            raise ValueError("`operators` must contain at least one operator")
        for op in operators:
            if not isinstance(op, Operator):
                raise ValueError(f"`operators` entries must be Operator modules, got {type(op).__name__}")
        self.operators = nn.ModuleList(operators)
        self.linear = all(op.linear for op in operators)
        self.in_channels = operators[0].in_channels

    def _forward_op(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.operators:
            x = op.A(x)
        return x

    def _check_linear(self) -> None:
        if not self.linear:
            raise ValueError("`operators` contains a non-linear operator: no adjoint or pseudo-inverse")

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_linear()
        for op in reversed(self.operators):
            y = op.A_adjoint(y)
        return y

    def _dagger(self, y: torch.Tensor) -> torch.Tensor:
        self._check_linear()
        return super()._dagger(y)
