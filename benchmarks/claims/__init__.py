"""``python -m benchmarks.claims``: the papers' claims, measured on our priors.

For each claim it prints the paper's figure, our numbers (mean and 95% t-interval over held-out test
images) and whether the claimed ordering holds on our data (each adjacent pair as a paired difference
over the same images; "clear" when its 95% interval excludes zero):

* IAGAN Table 2 - SR x4 (bicubic): IAGAN > CSGM in PSNR, and back-projection's effect (CSGM-BP > CSGM).
* DGP Table 4 - SR x4 (Lanczos): D + progressive > D > MSE > perceptual (PSNR).
* DGP Table 2 - centre-hole inpainting, PSNR inside the hole: DGP > IAGAN, CSGM (and DIP, TV shown).
* DGP Table 5 - adversarial defence: accuracy of a DeiT on clean / I-FGSM / DGP / CSGM / smoothing.
* LCM Sec. 3 (Fig. 3) - inpainting, feature distance inside the hole: LCM <= GLO (1024-d) < WGAN-GP,
  AE, DIP (VGG16 relu1_2..relu5_3 when its weights are on disk, else the offline EfficientNet).
* CRI Fig. 5 / Table 4 - emoji colorization, offline perceptual distance: more clusters better;
  L2 < L1 < no regularizer.
* e-GLASS - seconds per distinct feasible solution from its IAGAN-style start (fit timed) against
  PULSE-style restarts under the same criterion, and diversity.
* TV - the classical baseline (inpainting, PSNR): TV against CSGM and IAGAN.

Priors come from ``--priors DIR ...`` (``DIR/<name>/last.ckpt`` or ``DIR/<name>/checkpoints/last.ckpt``;
a ``DIR/DONE-<name>`` marker, where present, or a ``training.json`` saying done must exist; ``--wait``
waits for priors still training there) or are trained into ``OUTPUT/priors`` with
``configs/lcm/<name>.yaml`` (resumed from ``last.ckpt``); see :mod:`benchmarks.claims.priors`. Every
method run is cached per image chunk under ``OUTPUT/cache`` (a rerun resumes); the table goes to
``OUTPUT/claims.md`` and ``claims.json`` atomically; ``--rows KEY ...`` measures only those claim rows
(and only the method runs and priors behind them) into ``OUTPUT/claims-<KEY>+<KEY>.md`` / ``.json``.
``--smoke``: tiny priors trained on the fly, 2 images per task, all step counts scaled down -- the same
rows, in minutes::

    python -m benchmarks.claims --smoke --output outputs/claims_smoke
    python -m benchmarks.claims --priors /work/priors runs --images 64 --scale 0.5 --wait --eglass-images 16
    python -m benchmarks.claims --images 64 --scale 0.5 --threads 1 --rows dgp_t5 cri_f5 cri_t4

Modules: :mod:`~benchmarks.claims.papers` (each paper's claims), :mod:`~benchmarks.claims.measure` (the
method runs behind each row), :mod:`~benchmarks.claims.runner` (priors, data, metrics, the cache),
:mod:`~benchmarks.claims.priors` (finding, waiting for, training priors), :mod:`~benchmarks.claims.table`
(statistics and markdown), :mod:`~benchmarks.claims.cli` (``run`` / ``main``).
"""

from benchmarks.claims.cli import main, run
from benchmarks.claims.papers import CLAIMS, Claim
from benchmarks.claims.table import judge, markdown

__all__ = ["CLAIMS", "Claim", "judge", "main", "markdown", "run"]
