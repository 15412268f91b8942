"""Prior-training LightningModules: WGAN-GP, GLO and LCM.

Every module keeps its hyper-parameters to plain types (numbers, strings, tuples) so that its
Lightning checkpoints load with ``torch.load(weights_only=True)``; :func:`lcm.load_prior` rebuilds
the module from them and returns its :class:`lcm.Prior`.

Per-image latent tables (GLO's z_i, LCM's phi_i) live in a :class:`LatentTable`: one ``(N, d)``
tensor (a buffer, saved in the checkpoint) or, for datasets too large for memory, a numpy memmap
file (``latent_memmap``). Only the rows of the current batch are gathered, get a gradient and are
written back after a plain SGD step plus projection (sphere / box) -- a sparse row update, so no
``(N, d)`` gradient or optimiser state ever exists. The generator has an ordinary optimiser.

Modules: :mod:`~lcm.modules.base` (:class:`PriorModule`), :mod:`~lcm.modules.wgangp` (:class:`WGANGP`),
:mod:`~lcm.modules.latent_tables` (:class:`LatentTable`, :class:`GLO`, :class:`LCM`).
"""

from lcm.modules.base import FORMAT_VERSION, PriorModule
from lcm.modules.latent_tables import GLO, LCM, LatentTable
from lcm.modules.wgangp import WGANGP

# the module of each "genprior_kind" a checkpoint records (lcm.load_prior rebuilds it; "ae" is added
# by lcm.autoencoder)
MODULES: dict[str, type[PriorModule]] = {"wgangp": WGANGP, "glo": GLO, "lcm": LCM}

__all__ = ["FORMAT_VERSION", "GLO", "LCM", "MODULES", "LatentTable", "PriorModule", "WGANGP"]
