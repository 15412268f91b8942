"""``restore(..., method="cri")``: CRI (Wang et al., AAAI 2023), the fit :func:`inversion.cri.cri` with
:class:`inversion.cri.CRIConfig` as its options.

Its start is its own: the nearest degraded centroid of the image's class; unknown classes come from
CRI's classifier (``classifier=``) or fail clearly, never from DGP's class pick (``start="given"``).
"""

from inversion.cri.fit import CRIConfig, cri
from inversion.methods.registry import register_method

__all__ = ["cri"]

register_method("cri", CRIConfig, start="given")(cri)
