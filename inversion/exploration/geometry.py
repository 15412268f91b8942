"""Latent-space geometry around a solution latent: the metrics H_Y and H_X of e-GLASS and their spectra.

e-GLASS (Montanaro et al., ICIP 2022, Sec. 3 and Algorithm 1) measures a latent neighbourhood of ``z0``
with two quadratic forms:

* ``H_Y = 1/2 d^2/dz^2 ||A(G(z)) - A(G(z0))||^2 |_{z0} = J_phi^T J_phi`` (measurement space, phi = A o G);
* ``H_X = 1/2 d^2/dz^2 d_X(G(z), G(z0)) |_{z0}`` (a perceptual distance in image space).

Everything here works on the flattened latent (a latent of any shape is a vector of ``d = prod(shape)``
entries) and is computed by autograd with :mod:`torch.func`: Jacobian columns by ``vmap`` over ``jvp``,
Gauss-Newton products ``J^T J v`` by ``vjp(jvp(v))``, exact Hessian-vector products by forward-over-reverse.
Small latents get the dense matrix and a full ``torch.linalg.eigh``; large ones a matrix-free block Krylov
(block Lanczos with full reorthogonalisation and Rayleigh-Ritz) top-k solver over batched products.
No Lightning import here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import grad, jvp, vjp, vmap

from inversion.operators.base import forward_operator

Tensor = torch.Tensor
Matvec = Callable[[Tensor], Tensor]
EigMethod = Literal["auto", "eigh", "lanczos"]
HvpBackend = Literal["func", "autograd"]


# -- small helpers ---------------------------------------------------------------------------------
@contextmanager
def eval_mode(*objects: object) -> Iterator[None]:
    """Put every ``nn.Module`` among ``objects`` (and its children) in eval mode; restore on exit.

    BatchNorm must use its running statistics under ``vmap`` and for per-sample geometry.
    """
    saved = [(m, m.training) for obj in objects if isinstance(obj, nn.Module) for m in obj.modules()]
    try:
        for m, _ in saved:
            m.training = False
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def as_single_latent(z0: Tensor, latent_shape: Sequence[int] | None) -> Tensor:
    """Return ``z0`` as a batch of one ``(1, *latent_shape)``; raise ValueError on a batch or bad shape."""
    if not isinstance(z0, Tensor):
        raise ValueError(f"z0 must be a tensor, got {type(z0).__name__}")
    if latent_shape is not None:
        latent_shape = tuple(int(s) for s in latent_shape)
        if tuple(z0.shape) == latent_shape:
            z0 = z0.unsqueeze(0)
        if tuple(z0.shape[1:]) != latent_shape:
            raise ValueError(
                f"z0 has shape {tuple(z0.shape)}; expected (1, *{latent_shape}) or {latent_shape}"
            )
    elif z0.dim() < 2:
        raise ValueError(f"z0 must be (1, *latent_shape), got shape {tuple(z0.shape)}")
    if z0.shape[0] != 1:
        raise ValueError(f"z0 must hold one latent (batch 1), got a batch of {z0.shape[0]}: explore each one")
    return z0.detach()


def fix_signs(vectors: Tensor) -> Tensor:
    """Flip each column so that its largest-magnitude entry is positive (fixes the eigenvector sign)."""
    idx = vectors.abs().argmax(dim=0, keepdim=True)
    sign = torch.sign(vectors.gather(0, idx))
    sign[sign == 0] = 1.0
    return vectors * sign


def sorted_eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """Eigendecomposition of a symmetric matrix, eigenvalues in descending order, sign-fixed eigenvectors.

    Shape:
        - matrix: (d, d) -> eigenvalues (d,), eigenvectors (d, d) as columns.
    """
    sym = 0.5 * (matrix + matrix.mT)
    evals, evecs = torch.linalg.eigh(sym)
    return evals.flip(0), fix_signs(evecs.flip(1))


# -- Jacobians and products ------------------------------------------------------------------------
def jacobian_rows(fn: Callable[[Tensor], Tensor], z: Tensor, chunk_size: int | None = None) -> Tensor:
    """Forward-mode Jacobian of ``fn`` at ``z``, stored transposed: row ``i`` is ``J e_i``.

    ``fn`` maps a flat latent ``(d,)`` to a flat output ``(m,)`` (or a tuple of them: a tuple is returned).

    Shape:
        - z: (d,) -> (d, m), i.e. ``J^T``.
    """
    eye = torch.eye(z.numel(), dtype=z.dtype, device=z.device)
    return vmap(lambda v: jvp(fn, (z,), (v,))[1], chunk_size=chunk_size)(eye)


def gauss_newton_matvec(fn: Callable[[Tensor], Tensor], z: Tensor, scale: float = 1.0) -> Matvec:
    """Batched Gauss-Newton products ``V -> scale * J^T J V`` of ``fn`` at ``z`` (matrix-free, jvp then vjp).

    Shape:
        - returned callable: (b, d) -> (b, d).
    """
    _, pullback = vjp(fn, z)

    def one(v: Tensor) -> Tensor:
        tangent = jvp(fn, (z,), (v,))[1]
        return pullback(tangent)[0] * scale

    return vmap(one)


def hessian_matvec(fn: Callable[[Tensor], Tensor], z: Tensor, backend: HvpBackend = "func") -> Matvec:
    """Exact Hessian-vector products of the scalar ``fn`` at ``z``, for a batch of vectors.

    ``backend="func"``: forward-over-reverse with :mod:`torch.func`, ``vmap`` over the batch (fast).
    ``backend="autograd"``: one reverse pass with ``create_graph=True``, then one double-backward per vector
    (slower, but works with any network that ordinary autograd can differentiate twice; some third-party
    modules break under ``torch.func``, e.g. the EfficientNet-Lite package crashes the process there).

    Shape:
        - returned callable: (b, d) -> (b, d).
    """
    if backend == "func":
        gradient = grad(fn)
        return vmap(lambda v: jvp(gradient, (z,), (v,))[1])
    if backend != "autograd":
        raise ValueError(f"backend must be 'func' or 'autograd', got {backend!r}")
    leaf = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(leaf), leaf, create_graph=True)

    def matvec(vectors: Tensor) -> Tensor:
        with torch.enable_grad():
            rows = [torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=True)[0] for v in vectors]
        return torch.stack(rows).detach()

    return matvec


def dense_from_matvec(matvec: Matvec, dim: int, like: Tensor, chunk_size: int | None = None) -> Tensor:
    """Assemble the symmetric matrix of a batched matvec by applying it to the basis vectors (in chunks)."""
    eye = torch.eye(dim, dtype=like.dtype, device=like.device)
    step = dim if chunk_size is None else max(1, int(chunk_size))
    cols = torch.cat([matvec(eye[i : i + step]) for i in range(0, dim, step)], dim=0)
    return 0.5 * (cols + cols.mT)


# -- matrix-free top-k eigenpairs ------------------------------------------------------------------
def block_lanczos_topk(
    matvec: Matvec,
    dim: int,
    k: int,
    like: Tensor,
    block_size: int | None = None,
    num_blocks: int = 6,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` eigenpairs of a symmetric PSD operator given only batched products.

    Block Krylov space ``[Q, HQ, H^2 Q, ...]`` with full reorthogonalisation (block Lanczos), then
    Rayleigh-Ritz on the whole space; every product is one batched call of ``matvec``.
    (``torch.lobpcg`` needs an explicit matrix, so it does not fit the matrix-free case.) When two blocks
    would already span the whole space (``2 * block_size > d``) the dense matrix is assembled from ``d``
    products and decomposed exactly instead.

    Args:
        matvec: ``(b, d) -> (b, d)``, rows are vectors.
        dim: ``d``.
        k: number of eigenpairs (``1 <= k <= d``).
        like: tensor giving dtype and device.
        block_size: vectors per block (default ``k + 8``, at most ``d``).
        num_blocks: Krylov blocks (capped so that the space has at most ``d`` vectors).
        generator: seeds the random start block.

    Returns:
        eigenvalues ``(k,)`` descending and eigenvectors ``(d, k)`` as sign-fixed columns.
    """
    if not 1 <= k <= dim:
        raise ValueError(f"k must lie in [1, {dim}] (the latent dimension), got {k}")
    b = min(dim, block_size if block_size is not None else k + 8)
    if b < k:
        raise ValueError(f"block_size ({b}) must be at least k ({k})")
    opts = {"dtype": like.dtype, "device": like.device}
    if 2 * b > dim:  # a Krylov space of two blocks would span everything: the dense matrix is as cheap
        evals, evecs = sorted_eigh(dense_from_matvec(matvec, dim, like, chunk_size=b))
        return evals[:k], evecs[:, :k]
    blocks = max(2, min(int(num_blocks), dim // b))

    def orthonormal_complement(w: Tensor, basis: Tensor | None) -> Tensor:
        # columns of w made orthonormal and orthogonal to basis; collapsed columns replaced by random ones
        tol = 1e3 * torch.finfo(w.dtype).eps * max(float(w.norm(dim=0).max()), torch.finfo(w.dtype).tiny)
        for _ in range(2):
            if basis is not None:
                w = w - basis @ (basis.mT @ w)
            q, r = torch.linalg.qr(w)
            small = r.diagonal().abs() <= tol
            if bool(small.any()):
                fresh = torch.randn(dim, int(small.sum()), generator=generator, **opts)
                q[:, small] = fresh / fresh.norm(dim=0, keepdim=True)
            w, tol = q, 1e3 * torch.finfo(w.dtype).eps
        return w

    q = orthonormal_complement(torch.randn(dim, b, generator=generator, **opts), None)
    basis, images = [q], []
    for i in range(blocks):
        hq = matvec(basis[-1].mT).mT
        images.append(hq)
        if i + 1 < blocks:
            basis.append(orthonormal_complement(hq, torch.cat(basis, dim=1)))
    span, hspan = torch.cat(basis, dim=1), torch.cat(images, dim=1)
    small = span.mT @ hspan
    evals, evecs = torch.linalg.eigh(0.5 * (small + small.mT))
    evals, evecs = evals.flip(0)[:k], evecs.flip(1)[:, :k]
    return evals, fix_signs(span @ evecs)


# -- the two metrics -------------------------------------------------------------------------------
@dataclass
class LatentGeometry:
    """Spectra of ``H_Y`` and ``H_X`` at one latent (flattened), eigenvalues descending.

    Attributes:
        latent_shape: shape of one latent (without batch).
        eig_y, vec_y: eigenvalues ``(k_y,)`` and eigenvectors ``(d, k_y)`` (columns ``u^j``) of ``H_Y``.
        eig_x, vec_x: eigenvalues ``(k_x,)`` and eigenvectors ``(d, k_x)`` (columns ``v^j``) of ``H_X``.
        h_y, h_x: the dense matrices ``(d, d)`` when ``method == "eigh"``, else ``None``.
        method: ``"eigh"`` (full spectrum) or ``"lanczos"`` (top-k only).
        trace_y: trace of ``H_Y`` (exact for ``"eigh"``; sum of the computed eigenvalues otherwise).
    """

    latent_shape: tuple[int, ...]
    eig_y: Tensor
    vec_y: Tensor
    eig_x: Tensor
    vec_x: Tensor
    h_y: Tensor | None
    h_x: Tensor | None
    method: str
    trace_y: float

    @property
    def dim(self) -> int:
        return int(self.vec_y.shape[0])


CHUNK_ELEMENTS = 2**20  # image entries per batched Jacobian / Hessian product chunk (see latent_geometry)


def latent_geometry(
    prior: Callable[..., Tensor],
    operator: object,
    z0: Tensor,
    labels: Tensor | None = None,
    perceptual: Literal["mse"] | Callable[[Tensor, Tensor], Tensor] = "mse",
    method: EigMethod = "auto",
    dense_max_dim: int = 512,
    num_eig: int = 64,
    num_blocks: int = 6,
    chunk_size: int | None = None,
    seed: int = 0,
    hvp_backend: HvpBackend = "autograd",
) -> LatentGeometry:
    """Compute ``H_Y`` and ``H_X`` at ``z0`` and their eigendecompositions (e-GLASS Algorithm 1, lines 1-4).

    ``H_Y = J_phi^T J_phi`` with ``phi(z) = A(G(z))`` (paper Sec. 3, sum of squares, no averaging).
    ``H_X = 1/2 Hessian of d_X(G(z), G(z0))`` at ``z0``:

    * ``perceptual="mse"``: ``d_X = mean((x - x0)^2)`` over the image entries, so ``H_X = J_G^T J_G / n``
      (exact at ``z0``: the second-order term is multiplied by the residual, zero there);
    * a callable ``d_X(x, x0) -> (B,)`` (e.g. :class:`inversion.metrics.FeatureMSE` with ``layers="sum",
      check_inputs=False``, or LPIPS): the exact
      Hessian by forward-over-reverse products. It should be a smooth squared-type distance with a
      minimum at ``x = x0`` (a non-squared norm has no Hessian there).

    Args:
        prior: ``prior(z, labels) -> images (B, C, H, W)`` (an :class:`lcm.Prior` or any such callable).
        operator: an object with ``A(x)`` (the noiseless forward model) or a callable ``x -> y``.
        z0: the solution latent, ``(1, *latent_shape)`` or ``latent_shape``.
        labels: ``(1,)`` class labels for a class-conditional prior, else ``None``.
        perceptual: ``"mse"`` or a distance callable, see above.
        method: ``"eigh"`` (dense matrices, full spectrum), ``"lanczos"`` (matrix-free top ``num_eig``), or
            ``"auto"``: ``"eigh"`` when ``d <= dense_max_dim``.
        dense_max_dim: the ``"auto"`` switch point.
        num_eig: eigenpairs per metric on the ``"lanczos"`` path.
        num_blocks: Krylov blocks on the ``"lanczos"`` path (more = more accurate).
        chunk_size: basis vectors per batched product on the dense path; ``None``: as many as keep a
            chunk's images under ``CHUNK_ELEMENTS`` entries (all 64 of a 32-px prior; 21 for a 128-px RGB
            BigGAN, where one batch of all 120 took 16.4 s and 6.8 GB against 6.8 s in chunks of 32).
        seed: seeds the Lanczos start block.
        hvp_backend: how the exact ``H_X`` products of a callable ``perceptual`` are taken (see
            :func:`hessian_matvec`); default ``"autograd"``: works with any twice-differentiable network.
            ``H_Y`` and the ``"mse"`` ``H_X`` always use batched :mod:`torch.func` products.

    Shape:
        - z0: (1, *latent_shape); images of ``prior``: (1, C, H, W); output of ``A``: any shape.
    """
    if method not in ("auto", "eigh", "lanczos"):
        raise ValueError(f"method must be 'auto', 'eigh' or 'lanczos', got {method!r}")
    if hvp_backend not in ("func", "autograd"):
        raise ValueError(f"hvp_backend must be 'func' or 'autograd', got {hvp_backend!r}")
    if not (perceptual == "mse" or callable(perceptual)):
        raise ValueError(f"perceptual must be 'mse' or a callable d_X(x, x0) -> (B,), got {perceptual!r}")
    a_fn = forward_operator(operator)
    z0 = as_single_latent(z0, getattr(prior, "latent_shape", None))
    shape = tuple(z0.shape[1:])
    dim = math.prod(shape)
    if method == "auto":
        method = "eigh" if dim <= dense_max_dim else "lanczos"
    zf = z0.reshape(-1)
    chunk_auto = chunk_size is None

    def image(z: Tensor) -> Tensor:
        return prior(z.view(1, *shape), labels)

    def image_flat(z: Tensor) -> Tensor:
        return image(z).reshape(-1)

    def measure_flat(z: Tensor) -> Tensor:
        return a_fn(image(z)).reshape(-1)

    def both(z: Tensor) -> tuple[Tensor, Tensor]:
        x = image(z)
        return x.reshape(-1), a_fn(x).reshape(-1)

    with eval_mode(prior, operator, perceptual), torch.no_grad():
        x0 = image(zf).detach()
        a_fn(x0)  # first calls outside the transforms: lazily built parts (masks, feature nets) get built
        if perceptual != "mse":
            perceptual(x0, x0)
    n_pix = x0.numel()
    if chunk_auto:  # memory-bound: a chunk's tangent images stay under CHUNK_ELEMENTS entries
        chunk_size = max(1, min(dim, CHUNK_ELEMENTS // n_pix))

    def half_distance(z: Tensor) -> Tensor:
        return 0.5 * perceptual(image(z), x0).sum()

    # outer no_grad: no ordinary autograd graph through the weights; torch.func transforms ignore it
    with eval_mode(prior, operator, perceptual), torch.no_grad():
        if method == "eigh":
            if perceptual == "mse":
                jt_x, jt_y = jacobian_rows(both, zf, chunk_size)
                h_x = jt_x @ jt_x.mT / n_pix
            else:
                jt_y = jacobian_rows(measure_flat, zf, chunk_size)
                h_x = dense_from_matvec(hessian_matvec(half_distance, zf, hvp_backend), dim, zf, chunk_size)
            h_y = jt_y @ jt_y.mT
            h_y, h_x = h_y.detach(), h_x.detach()
            eig_y, vec_y = sorted_eigh(h_y)
            eig_x, vec_x = sorted_eigh(h_x)
            trace_y = float(h_y.diagonal().sum())
        else:
            k = min(int(num_eig), dim)
            gen = torch.Generator(device=zf.device).manual_seed(int(seed))
            mv_y = gauss_newton_matvec(measure_flat, zf)
            if perceptual == "mse":
                mv_x = gauss_newton_matvec(image_flat, zf, scale=1.0 / n_pix)
            else:
                mv_x = hessian_matvec(half_distance, zf, hvp_backend)
            eig_y, vec_y = block_lanczos_topk(mv_y, dim, k, zf, num_blocks=num_blocks, generator=gen)
            eig_x, vec_x = block_lanczos_topk(mv_x, dim, k, zf, num_blocks=num_blocks, generator=gen)
            h_y = h_x = None
            eig_y, vec_y, eig_x, vec_x = (t.detach() for t in (eig_y, vec_y, eig_x, vec_x))
            trace_y = float(eig_y.clamp_min(0).sum())
    return LatentGeometry(shape, eig_y, vec_y, eig_x, vec_x, h_y, h_x, method, trace_y)
