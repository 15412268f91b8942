"""Forward operators ``y = A(x) + n`` for restoration: one object degrades the truth and forms the data term.

Layout (after deepinv): pure functions in :mod:`inversion.operators.functional`, thin ``nn.Module``
operators holding buffers, a :class:`LinearOperator` base with ``A``, ``A_adjoint``, ``A_dagger`` and
``adjointness_error``, and :func:`back_project` (IAGAN eq. 10).
"""

from inversion.operators.base import LinearOperator, Operator, back_project, forward_operator
from inversion.operators.composite import Composite
from inversion.operators.compressed_sensing import CompressedSensing, IAGANFourier
from inversion.operators.pointwise import Colorization, Denoising, Inpainting
from inversion.operators.resampling import Blur, SuperResolution

__all__ = [
    "Operator",
    "LinearOperator",
    "back_project",
    "forward_operator",
    "Denoising",
    "Inpainting",
    "SuperResolution",
    "Colorization",
    "Blur",
    "CompressedSensing",
    "IAGANFourier",
    "Composite",
]
