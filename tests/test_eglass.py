"""e-GLASS exploration (inversion/exploration): closed-form checks on a linear generator, autograd paths
on a tiny nonlinear one, the direction search, feasibility bookkeeping, outputs and the restarts baseline."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch import nn
from torch.func import jacrev

from inversion.exploration import (
    EGlass,
    FeatureDistance,
    block_lanczos_topk,
    eligible_top_y,
    explore,
    fit_latents,
    gauss_newton_matvec,
    hessian_matvec,
    latent_geometry,
    measurement_distance,
    restart_solutions,
    search_direction,
    sorted_eigh,
)
from lcm.prior import Prior

DT = torch.float64


class LinearPrior(nn.Module):
    """G(z) = W z + b reshaped to (1, H, W): everything in closed form."""

    def __init__(self, dim: int = 12, side: int = 5, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.side = side
        self.latent_shape = (dim,)
        self.weight = nn.Parameter(torch.randn(side * side, dim, generator=g, dtype=DT) / math.sqrt(dim))
        self.bias = nn.Parameter(0.5 + 0.1 * torch.randn(side * side, generator=g, dtype=DT))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return (z.flatten(1) @ self.weight.mT + self.bias).view(-1, 1, self.side, self.side)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, *self.latent_shape, generator=generator, dtype=DT)


class Mask(nn.Module):
    """Inpainting-style operator: keeps the pixels where mask == 1."""

    def __init__(self, side: int = 5, keep_rows: int = 2):
        super().__init__()
        m = torch.zeros(1, 1, side, side, dtype=DT)
        m[..., :keep_rows, :] = 1.0
        self.register_buffer("mask", m)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class TinyGenerator(nn.Module):
    """Small nonlinear generator with `blocks`, output in [-1, 1] (for lcm.Prior)."""

    def __init__(self, dim: int = 10, side: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.side = side
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(dim, 48), nn.Softplus()),
                nn.Sequential(nn.Linear(48, side * side), nn.Tanh()),
            ]
        ).to(DT)

    def forward(self, w: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = w.flatten(1)
        for block in self.blocks:
            h = block(h)
        return h.view(-1, 1, self.side, self.side)


def tiny_prior(dim: int = 10, kind: str = "gaussian", seed: int = 0) -> Prior:
    return Prior(TinyGenerator(dim, 6, seed), kind, (dim,), (1, 6, 6)).eval()


def mse(x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return (x - x0).flatten(1).pow(2).mean(dim=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread (several threads spin-wait on a busy machine, 50x slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def linear_case():
    prior, op = LinearPrior(), Mask()
    z0 = torch.randn(1, 12, generator=torch.Generator().manual_seed(1), dtype=DT)
    return prior, op, z0


def test_linear_metrics_match_closed_form(linear_case):
    prior, op, z0 = linear_case
    geo = latent_geometry(prior, op, z0, method="eigh")
    w = prior.weight.detach()
    aw = op.mask.flatten()[:, None] * w
    torch.testing.assert_close(geo.h_y, aw.mT @ aw)
    torch.testing.assert_close(geo.h_x, w.mT @ w / w.shape[0])
    jac = jacrev(lambda z: op.A(prior(z.view(1, -1))).flatten())(z0.flatten())
    torch.testing.assert_close(geo.h_y, jac.mT @ jac)
    # descending spectra, orthonormal eigenvectors that diagonalise the matrices
    assert bool((geo.eig_y[:-1] >= geo.eig_y[1:] - 1e-12).all())
    torch.testing.assert_close(geo.vec_x.mT @ geo.vec_x, torch.eye(12, dtype=DT))
    torch.testing.assert_close(geo.vec_y.mT @ geo.h_y @ geo.vec_y, torch.diag(geo.eig_y), atol=1e-10, rtol=0)
    # rank of H_Y = number of observed pixels (10 < 12): a 2-d exact null space
    assert int((geo.eig_y > 1e-10).sum()) == 10


def test_direction_orthogonal_to_projected_eigenvectors(linear_case):
    prior, op, z0 = linear_case
    geo = latent_geometry(prior, op, z0)
    vec_y = geo.vec_y[:, : eligible_top_y(geo, None, 0.99)]
    start = geo.vec_x[:, 1]
    assert float((vec_y.mT @ start).abs().max()) > 0.1  # the search has work to do
    s = search_direction(start, vec_y, threshold=0.1)
    assert s.converged and not s.vanished and s.projected
    assert abs(float(s.direction.norm()) - 1.0) < 1e-12
    corr = vec_y.mT @ s.direction
    assert float(corr[s.projected].abs().max()) < 1e-10
    assert float(corr.abs().max()) <= 0.1
    # still perceptually significant: d keeps a component on the top eigenvectors of H_X
    assert float((geo.vec_x[:, :4].mT @ s.direction).norm()) > 0.1


def test_search_repeats_after_renormalisation():
    u = torch.eye(3, dtype=DT)[:, :2]
    start = torch.tensor([0.8, 0.35, 0.487], dtype=DT)
    s = search_direction(start, u, threshold=0.5)
    # removing u1 renormalises the u2 correlation from 0.35 to 0.58 > 0.5: a second pass removes it
    assert s.projected == [0, 1] and s.iterations == 2 and s.converged
    torch.testing.assert_close(s.direction, torch.tensor([0.0, 0.0, 1.0], dtype=DT))
    one_pass = search_direction(start, u, threshold=0.5, max_iter=1)
    assert not one_pass.converged and one_pass.projected == [0]
    vanished = search_direction(torch.tensor([1.0, 1.0, 0.0], dtype=DT), u, threshold=0.1)
    assert vanished.vanished and float(vanished.direction.abs().sum()) == 0.0


def test_linear_solutions_feasible_and_raw_directions_are_not(linear_case):
    prior, op, z0 = linear_case
    y = op.A(prior(z0)).detach()
    res = explore(prior, op, z0, y, ks=(1, 2, 3), etas=(0.5, 1.0, 2.0), threshold=0.0, top_y=10)
    assert res.latents.shape == (18, 12) and res.images.shape == (18, 1, 5, 5)
    # the projected directions lie in the exact null space of A W: measurements unchanged for any eta
    assert res.num_feasible == 18 and float(res.distances.max()) < 1e-20
    torch.testing.assert_close(res.distances, measurement_distance(op, res.images, y))
    # ... while the images change (in the unobserved rows) and the raw v^K steps change the measurements
    assert float((res.images - res.x0).abs().amax(dim=(1, 2, 3)).min()) > 1e-3
    assert float(res.raw_distances.min()) > 1e-6
    assert [r["feasible"] for r in res.records()] == [True] * 18


def test_infeasible_steps_are_rejected_and_reported():
    prior = tiny_prior(10)
    op = Mask(6, keep_rows=3)
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(3), dtype=DT)
    res = EGlass(ks=(2,), etas=(0.01, 50.0), top_y=0, feasibility_threshold=1e-2).run(prior, op, z0)
    recs = res.records()
    assert [(r["eta"], r["feasible"]) for r in recs] == [
        (0.01, True),
        (0.01, True),
        (50.0, False),
        (50.0, False),
    ]
    assert all(r["distance"] > 1e-2 for r in recs if not r["feasible"])
    assert res.num_feasible == 2 and res.feasible_images.shape == (2, 1, 6, 6)
    # without projection (top_y=0) the direction is v^K itself
    torch.testing.assert_close(res.distances, res.raw_distances)


def test_nonlinear_hvp_paths_equal_jacrev():
    prior, op = tiny_prior(10), Mask(6, keep_rows=3)
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(2), dtype=DT)
    zf = z0.flatten()

    def phi(z):
        return op.A(prior(z.view(1, -1))).flatten()

    jac = jacrev(phi)(zf)
    hvp = gauss_newton_matvec(phi, zf)(torch.eye(10, dtype=DT))
    torch.testing.assert_close(hvp, jac.mT @ jac)
    geo = latent_geometry(prior, op, z0, method="eigh")
    torch.testing.assert_close(geo.h_y, jac.mT @ jac)
    # exact Hessian of 1/2 mse at z0 = Gauss-Newton J_G^T J_G / n (the other term vanishes at z0)
    jg = jacrev(lambda z: prior(z.view(1, -1)).flatten())(zf)
    exact = latent_geometry(prior, op, z0, perceptual=mse, method="eigh")
    torch.testing.assert_close(exact.h_x, jg.mT @ jg / 36)
    exact_func = latent_geometry(prior, op, z0, perceptual=mse, method="eigh", hvp_backend="func")
    torch.testing.assert_close(exact_func.h_x, jg.mT @ jg / 36)
    torch.testing.assert_close(geo.h_x, jg.mT @ jg / 36)
    feat = latent_geometry(prior, op, z0, perceptual=FeatureDistance(lambda x: [x, 2 * x]), method="eigh")
    torch.testing.assert_close(feat.h_x, 5 * jg.mT @ jg / 36)
    # matrix-free exact-Hessian path (forward-over-reverse products) inside the top-k solver
    x0 = prior(z0).detach()
    mv = hessian_matvec(lambda z: 0.5 * mse(prior(z.view(1, -1)), x0).sum(), zf)
    top, _ = block_lanczos_topk(mv, 10, 2, zf, block_size=2, num_blocks=5, generator=torch.Generator())
    torch.testing.assert_close(top, exact.eig_x[:2])


def test_lanczos_topk_agrees_with_eigh():
    dim = 120
    prior = tiny_prior(dim, seed=4)
    op = Mask(6, keep_rows=4)
    z0 = torch.randn(1, dim, generator=torch.Generator().manual_seed(5), dtype=DT)
    dense = latent_geometry(prior, op, z0, method="eigh")
    sparse = latent_geometry(prior, op, z0, method="lanczos", num_eig=6, num_blocks=6)
    assert sparse.h_x is None and sparse.vec_x.shape == (dim, 6)
    torch.testing.assert_close(sparse.eig_y, dense.eig_y[:6], rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(sparse.eig_x, dense.eig_x[:6], rtol=1e-8, atol=1e-12)
    overlap = (sparse.vec_x.mT @ dense.vec_x[:, :6]).diagonal().abs()
    assert float(overlap.min()) > 1 - 1e-6
    # the solver alone, on an explicit matrix with a known spectrum
    q, _ = torch.linalg.qr(torch.randn(80, 80, generator=torch.Generator().manual_seed(0), dtype=DT))
    lam = 0.7 ** torch.arange(80, dtype=DT)
    h = q @ torch.diag(lam) @ q.mT
    evals, evecs = block_lanczos_topk(lambda v: v @ h, 80, 4, h, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(evals, lam[:4], rtol=1e-10, atol=0)
    torch.testing.assert_close(evecs, sorted_eigh(h)[1][:, :4], atol=1e-8, rtol=0)


def test_deterministic_and_non_vector_latents():
    class MapPrior(LinearPrior):
        latent_shape = (2, 3, 3)

        def forward(self, z, labels=None):
            return super().forward(z.flatten(1))

    prior = MapPrior(dim=18)
    prior.latent_shape = (2, 3, 3)
    z0 = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    cfg = {"ks": (2, 3), "etas": (1.0,), "method": "lanczos", "num_eig": 5, "seed": 7}
    a = explore(prior, Mask(), z0, **cfg)
    b = explore(prior, Mask(), z0, **cfg)
    assert a.latents.shape == (4, 2, 3, 3)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.distances, b.distances)
    assert torch.equal(a.geometry.vec_x, b.geometry.vec_x)


def test_sphere_prior_projection_and_labels_shape():
    prior = tiny_prior(10, kind="sphere")
    z0 = prior.sample_latent(1, generator=torch.Generator().manual_seed(0))
    res = explore(prior, Mask(6, 3), z0, ks=(2,), etas=(0.3,))
    torch.testing.assert_close(res.latents.norm(dim=1), torch.ones(2, dtype=DT))


def test_outputs_written_atomically(tmp_path, linear_case):
    prior, op, z0 = linear_case
    res = explore(prior, op, z0, ks=(1, 2), etas=(0.05, 100.0), top_y=0)
    assert 0 < res.num_feasible < res.latents.shape[0]
    grid = res.save_grid(tmp_path / "out" / "grid.png", nrow=5)
    diag = res.save_diagnostic(tmp_path / "out" / "fig1.png", k=2)
    with Image.open(grid) as g, Image.open(diag) as d:
        assert g.format == "PNG" and d.format == "PNG"
        assert g.size[0] > 5 * 80 and d.size[1] > 400
        # x0 tile framed blue, a rejected tile (eta=100) framed red
        assert g.getpixel((3, 3)) == (40, 90, 220)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fig1.png", "grid.png"]
    with pytest.raises(ValueError, match="k=9"):
        res.save_diagnostic(tmp_path / "x.png", k=9)


def test_bad_inputs_raise(linear_case):
    prior, op, z0 = linear_case
    with pytest.raises(ValueError, match="batch 1"):
        explore(prior, op, z0.repeat(2, 1))
    with pytest.raises(ValueError, match="ks"):
        explore(prior, op, z0, ks=(13,))
    with pytest.raises(ValueError, match="threshold"):
        EGlass(threshold=1.0)
    with pytest.raises(ValueError, match="etas"):
        EGlass(etas=(-1.0,))
    with pytest.raises(ValueError, match="operator"):
        latent_geometry(prior, object(), z0)
    with pytest.raises(ValueError, match="y has shape"):
        explore(prior, op, z0, y=torch.zeros(1, 3, dtype=DT))
    with pytest.raises(ValueError, match="top_y"):
        explore(prior, op, z0, top_y=50)
    with pytest.raises(ValueError, match="hvp_backend"):
        latent_geometry(prior, op, z0, perceptual=mse, hvp_backend="jax")


def test_restarts_baseline_reaches_feasibility(linear_case):
    prior, op, z0 = linear_case
    y = op.A(prior(z0)).detach()
    gen = torch.Generator().manual_seed(0)
    fit = fit_latents(prior, op, y, num_restarts=4, steps=300, lr=0.2, stop_threshold=1e-4, generator=gen)
    assert fit.num_feasible == 4 and float(fit.distances.max()) <= 1e-4 + 1e-12
    assert bool((fit.steps < 300).all())  # each restart stopped on its own
    assert float(fit.latents.std(dim=0).mean()) > 0.1  # different starts, different solutions
    with torch.no_grad():
        start = measurement_distance(op, prior(prior.sample_latent(4, torch.Generator().manual_seed(0))), y)
    assert float(start.min()) > 1e-3
    sols = restart_solutions(
        prior, op, y, num_solutions=6, batch=4, seed=1, steps=300, lr=0.2, stop_threshold=1e-4
    )
    assert sols.num_feasible >= 6 and sols.latents.shape[0] == 8
    a, b = (
        fit_latents(prior, op, y, 3, steps=15, generator=torch.Generator().manual_seed(5)) for _ in range(2)
    )
    assert torch.equal(a.latents, b.latents)


def test_class_conditional_prior_uses_labels():
    class CondGenerator(TinyGenerator):
        def __init__(self):
            super().__init__(10, 6, seed=0)
            self.embed = nn.Embedding(3, 10).to(DT)

        def forward(self, w, labels=None):
            return super().forward(w + self.embed(labels))

    prior = Prior(CondGenerator(), "gaussian", (10,), (1, 6, 6), num_classes=3).eval()
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(0), dtype=DT)
    res = explore(prior, Mask(6, 3), z0, labels=torch.tensor([2]), ks=(2,), etas=(0.5,))
    with torch.no_grad():
        torch.testing.assert_close(res.images, prior(res.latents, torch.tensor([2, 2])))
    assert not torch.allclose(res.x0, prior(z0, torch.tensor([0])))
    y = Mask(6, 3).A(res.x0)
    fit = fit_latents(prior, Mask(6, 3), y, 2, steps=5, labels=torch.tensor([2]), generator=torch.Generator())
    assert fit.images.shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match="class-conditional"):
        explore(prior, Mask(6, 3), z0)
