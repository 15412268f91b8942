"""Files, the bottom layer of genprior: one module per job, importing neither Lightning nor any package
above (``lcm``, ``inversion``, ``callbacks`` and the datamodules all use it).

- :mod:`datamodules.io.atomic`: ``atomic_write`` / ``atomic_write_bytes`` (temporary file, fsync, rename).
- :mod:`datamodules.io.images`: the one image loader, PNG / GIF save, tensor <-> PIL, image listing.
- :mod:`datamodules.io.grid`: the one image grid (``make_grid`` with upscaling, frames, captions).
- :mod:`datamodules.io.html`: the one HTML page kit (page writer, escaping, tables, embedded images).
- :mod:`datamodules.io.errors`: how the command lines end (one-line errors, non-zero exit on SIGTERM).
"""
