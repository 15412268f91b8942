"""Generator / discriminator architectures and the checkpoint formats :func:`lcm.load_prior` reads.

Each architecture module builds its networks with the parameter names of the authors' code (so their
state dicts load strictly, :mod:`~lcm.architectures.state_dicts`) and registers a recogniser of its
checkpoints and a loader with :mod:`~lcm.architectures.registry` (how to add one: see there; the
recognisers exclude each other, so their order does not matter):

* :mod:`~lcm.architectures.snapshot`: StyleGAN2-ADA snapshots (``.pkl``, read without executing them)
  and ``G_ema`` state dicts with their config (networks in :mod:`~lcm.architectures.stylegan2`);
* :mod:`~lcm.architectures.biggan`: BigGAN generator state dicts (DGP's ``G_ema.pth`` + ``D.pth``);
* :mod:`~lcm.architectures.dcgan`: PyTorch DCGAN-tutorial state dicts (``main.N.*``; the face DCGAN
  ``dcgan-faces-64`` of :mod:`lcm.pretrained`);
* :mod:`~lcm.architectures.lightning`: genprior's own ``python -m lcm fit`` checkpoints.
"""

from lcm.architectures import biggan, dcgan, lightning, snapshot  # noqa: F401 - each registers itself
from lcm.architectures.registry import (
    Architecture,
    CheckpointFile,
    available_architectures,
    get_architecture,
    register_architecture,
)

__all__ = [
    "Architecture",
    "CheckpointFile",
    "available_architectures",
    "get_architecture",
    "register_architecture",
]
