"""Restoration methods, one module each, registered by name for :func:`restore`.

* :mod:`~inversion.methods.registry`: ``register_method`` / ``get_method`` / ``available_methods`` and the
  config base :class:`MethodConfig` (how to add a method: see there).
* :mod:`~inversion.methods.common`: :class:`PriorConfig` (``space``, ``optimize_noise``: the options every
  prior-inverting method has), seeded starts and best-of-restarts.
* :mod:`~inversion.methods.restoration`: :func:`restore` and :class:`RestoreResult`.
* One module per method: ``csgm`` (Bora et al. 2017), ``iagan`` (Abu Hussein et al. 2020), ``latent``
  (LCM eqs. 4-5), ``tv`` (Chambolle & Pock 2011) and ``dip`` (Ulyanov et al.
  2018); the paper packages register theirs (``dgp``: :mod:`inversion.dgp.method`, ``cri``:
  :mod:`inversion.cri.method`); each name also with ``_bp`` (IAGAN eq. 10 back-projection).

Step counts default to values scaled down from the papers for the project's small priors (see each
config); every number can be overridden per call.
"""

from inversion.methods.common import PriorConfig, init_latents
from inversion.methods.csgm import CSGMConfig, csgm
from inversion.methods.iagan import IAGANConfig, iagan
from inversion.methods.latent import LatentConfig, latent_only
from inversion.methods.registry import (
    MethodConfig,
    MethodSpec,
    available_methods,
    get_method,
    method_config,
    register_method,
)
from inversion.methods.restoration import RestoreResult, restore

__all__ = [
    "CSGMConfig",
    "IAGANConfig",
    "LatentConfig",
    "MethodConfig",
    "MethodSpec",
    "PriorConfig",
    "RestoreResult",
    "available_methods",
    "csgm",
    "get_method",
    "iagan",
    "init_latents",
    "latent_only",
    "method_config",
    "register_method",
    "restore",
]
