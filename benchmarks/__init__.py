"""Experiments on genprior's public API: speed / quality benchmarks and the papers' claims table.

Not part of the installed package (``setup.py`` ships ``lcm``, ``inversion``, ``datamodules`` and
``callbacks`` only); run from a checkout's root, each with ``--help``:

* ``python -m benchmarks.priors``: WGAN-GP / GLO / LCM held-out reconstruction, LCM step throughput
* ``python -m benchmarks.restoration``: CSGM / IAGAN (+ back-projection), speed and IAGAN Tables 1-3
* ``python -m benchmarks.operators``: operator calls against deepinv (or a torch reference)
* ``python -m benchmarks.dgp``: DGP Table 4 ablation, Table 2 inpainting, speed vs the published loop
* ``python -m benchmarks.cri``: CRI Fig. 5 / Table 4 ablations, CRI vs CSGM / IAGAN / DGP
* ``python -m benchmarks.eglass``: e-GLASS vs restarts, time to N distinct feasible solutions (Table 1)
* ``python -m benchmarks.biggan``: DGP on a full-size BigGAN-128, s/step, memory, candidate batching
* ``python -m benchmarks.dgp_step``: s/step of DGP's faithful vs fast variant vs a plain DGP-style loop
  (full-size BigGAN-128, one thread)
* ``python -m benchmarks.stylegan2``: CRI on a full-size StyleGAN2-ADA, s/step and memory, W vs W+
* ``python -m benchmarks.claims``: every paper's claimed ordering, measured on our priors
* ``python -m benchmarks.iagan_trace``: IAGAN's own code's trace replayed through the public API, every
  figure against its bound
* ``python -m benchmarks.iagan_speed``: IAGAN on the face DCGAN, ``restore`` against plain loops written as
  IAGAN's code runs it (same steps, CPU seconds)
* ``python -m benchmarks.faces``: CSGM / IAGAN (-BP) / DGP (MSE) / TV / DIP with the pretrained face DCGAN on
  real face photos and its own held-out samples, and the IAGAN claims rows on them

Numbers come from these scripts, never from timed tests. They import only the packages' public names.
"""
