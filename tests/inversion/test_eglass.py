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
    Distinctness,
    EGlass,
    Feasibility,
    GeneratorPrior,
    LatentGeometry,
    block_lanczos_topk,
    diversity,
    eligible_top_y,
    explore,
    fit_solutions,
    fit_start,
    gauss_newton_matvec,
    hessian_matvec,
    latent_geometry,
    pairwise_distance,
    restart_solutions,
    search_direction,
    sorted_eigh,
)
from inversion.exploration import eglass as eglass_module
from inversion.metrics import FeatureMSE
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

    linear = True

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def A_dagger(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask


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
    crit = Feasibility(rel_tol=1e-3)
    res = explore(
        prior, op, z0, y, ks=(1, 2, 3), etas=(0.5, 1.0, 2.0), threshold=0.0, top_y=10, criterion=crit
    )
    assert res.latents.shape == (18, 12) and res.images.shape == (18, 1, 5, 5)
    # the projected directions lie in the exact null space of A W: measurements unchanged for any eta
    assert res.num_feasible == 18 and float(res.residuals.max()) < 1e-10
    torch.testing.assert_close(res.residuals, crit.residual(op, res.images, y))
    # ... while the images change (in the unobserved rows) and the raw v^K steps change the measurements
    assert float((res.images - res.x0).abs().amax(dim=(1, 2, 3)).min()) > 1e-3
    assert float(res.raw_residuals.min()) > crit.rel_tol
    assert [r["feasible"] for r in res.records()] == [True] * 18
    # one solution per half-line (the largest step), distinct directions: 3 directions x 2 signs at most
    assert 1 <= res.num_solutions <= 6
    assert all(float(res.eta[i]) == 2.0 for i in res.selected)


def test_infeasible_steps_are_rejected_and_reported():
    prior = tiny_prior(10)
    op = Mask(6, keep_rows=3)
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(3), dtype=DT)
    res = EGlass(ks=(2,), etas=(0.01, 50.0), top_y=0).run(prior, op, z0)
    recs = res.records()
    assert [(r["eta"], r["sign"], r["feasible"]) for r in recs] == [
        (0.01, 1, True),
        (50.0, 1, False),
        (0.01, -1, True),
        (50.0, -1, False),
    ]
    assert all(r["residual"] > res.tolerance for r in recs if not r["feasible"])
    assert res.num_feasible == 2
    # the small steps are feasible but 0.01 latent units apart from z0: at most the image rule decides
    assert all(recs[i]["feasible"] for i in res.selected)
    # without projection (top_y=0) the direction is v^K itself
    torch.testing.assert_close(res.residuals, res.raw_residuals)


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
    feat = latent_geometry(
        prior,
        op,
        z0,
        perceptual=FeatureMSE(lambda x: [x, 2 * x], layers="sum", check_inputs=False),
        method="eigh",
    )
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
    assert torch.equal(a.latents, b.latents) and torch.equal(a.residuals, b.residuals)
    assert torch.equal(a.geometry.vec_x, b.geometry.vec_x)


def test_sphere_prior_projection_and_labels_shape():
    prior = tiny_prior(10, kind="sphere")
    z0 = prior.sample_latent(1, generator=torch.Generator().manual_seed(0))
    res = explore(prior, Mask(6, 3), z0, ks=(2,), etas=(0.3,))
    torch.testing.assert_close(res.latents.norm(dim=1), torch.ones(2, dtype=DT))


def test_outputs_written_atomically(tmp_path, linear_case):
    prior, op, z0 = linear_case
    res = explore(prior, op, z0, ks=(1, 2), etas=(0.05, 100.0), top_y=0, distinct=Distinctness(0.0, 0.0))
    assert 0 < res.num_feasible < res.latents.shape[0]
    grid = res.save_grid(tmp_path / "out" / "grid.png", nrow=5, solutions_only=False)
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


def test_restarts_baseline_stops_at_the_criterion(linear_case):
    prior, op, z0 = linear_case
    y = op.A(prior(z0)).detach()
    crit = Feasibility(rel_tol=1e-2)
    init = prior.sample_latent(4, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert float(crit.residual(op, prior(init), y).min()) > 1e-2  # the starts are infeasible
    fit = fit_solutions(prior, op, y, init, crit, z_lr=0.2, z_steps=300, finetune_steps=0)
    assert fit.num_feasible == 4 and float(fit.residuals.max()) <= 1e-2
    assert fit.tolerance == crit.tolerance(op, y)
    assert bool((fit.steps < 300).all())  # each restart stopped on its own, at the criterion
    # stopped at the criterion, not beyond: one step less was still infeasible
    again = fit_solutions(
        prior, op, y, init, crit, z_lr=0.2, z_steps=int(fit.steps.min()) - 1, finetune_steps=0
    )
    assert not bool(again.feasible.all())
    assert float(fit.latents.std(dim=0).mean()) > 0.1  # different starts, different solutions
    # a start's iterates do not depend on the other starts in its batch
    alone = fit_solutions(prior, op, y, init[1:2], crit, z_lr=0.2, z_steps=300, finetune_steps=0)
    torch.testing.assert_close(alone.latents[0], fit.latents[1])
    sols = restart_solutions(
        prior,
        op,
        y,
        num_solutions=6,
        criterion=crit,
        batch=4,
        seed=1,
        z_lr=0.2,
        z_steps=300,
        finetune_steps=0,
    )
    assert len(sols.selected) == 6 and sols.latents.shape[0] == 8
    assert bool(sols.feasible[sols.selected].all())


def test_baseline_and_eglass_share_one_criterion_and_rule(linear_case):
    prior, op, z0 = linear_case
    y = op.A(prior(z0)).detach()
    crit, rule = Feasibility(rel_tol=2e-2), Distinctness(min_image_distance=0.05, min_angle=20.0)
    res = explore(prior, op, z0, y, ks=(1, 2, 3, 4), top_y=10, criterion=crit, distinct=rule)
    sols = restart_solutions(
        prior, op, y, 3, criterion=crit, distinct=rule, batch=4, seed=2, z_lr=0.2, finetune_steps=0
    )
    assert res.criterion is crit and res.distinct is rule
    assert res.tolerance == sols.tolerance == crit.tolerance(op, y)
    with torch.no_grad():
        torch.testing.assert_close(sols.residuals, crit.residual(op, prior(sols.latents), y))
    assert bool((sols.residuals[sols.selected] <= crit.rel_tol).all())
    assert bool((res.residuals[res.selected] <= crit.rel_tol).all())


def test_solutions_are_pairwise_distinct(linear_case):
    prior, op, z0 = linear_case
    y = op.A(prior(z0)).detach()
    rule = Distinctness(min_image_distance=0.05, min_angle=40.0)
    res = explore(
        prior,
        op,
        z0,
        y,
        ks=tuple(range(1, 13)),
        etas=(0.5, 1.0, 2.0, 4.0),
        top_y=10,
        distinct=rule,
        num_solutions=4,
    )
    assert res.num_solutions == 4
    assert float(pairwise_distance(res.solutions).min()) >= 0.05
    off = (res.solution_latents - z0).flatten(1)
    cos = torch.nn.functional.normalize(off, dim=1) @ torch.nn.functional.normalize(off, dim=1).mT
    assert float(cos.masked_fill(torch.eye(4, dtype=torch.bool), -1).max()) <= math.cos(math.radians(40))
    # a looser rule keeps more of the same candidates; an impossible one keeps a single solution
    search = {"ks": tuple(range(1, 13)), "etas": (0.5, 1.0, 2.0, 4.0), "top_y": 10}
    loose = explore(prior, op, z0, y, distinct=Distinctness(0.0, 0.0), **search)
    strict = explore(prior, op, z0, y, distinct=Distinctness(10.0, 0.0), **search)
    assert loose.num_solutions > res.num_solutions and strict.num_solutions == 1
    with pytest.warns(UserWarning, match="found 1 of 3"):
        explore(prior, op, z0, y, ks=(1, 2), top_y=10, distinct=Distinctness(10.0, 0.0), num_solutions=3)
    div = diversity(res.solutions, op)
    # the mask observes the top 2 rows; the solutions differ (almost) only in the unobserved rows
    assert div["free"] > 10 * div["constrained"] and div["pairwise_rms"] > 0.05


def test_non_converged_search_contributes_nothing(linear_case, monkeypatch):
    prior, op, z0 = linear_case
    geo = latent_geometry(prior, op, z0)
    real = eglass_module.search_direction

    def fake(start, vec_y, threshold, max_iter):
        s = real(start, vec_y, threshold, max_iter)
        if torch.equal(start, geo.vec_x[:, 1]):  # K = 2: pretend the loop ran out of passes
            s.converged = False
        return s

    monkeypatch.setattr(eglass_module, "search_direction", fake)
    res = EGlass(ks=(1, 2, 3), top_y=10, distinct=Distinctness(0.0, 0.0)).run(prior, op, z0, geometry=geo)
    assert 2 in res.skipped and "not converged" in res.skipped[2]
    assert set(res.k.tolist()) == {1, 3} and 2 not in {int(res.k[i]) for i in res.selected}
    monkeypatch.undo()
    # a real one (the renormalisation case of test_search_repeats_after_renormalisation): one pass is
    # not enough, so the direction supplies nothing; two passes are, and it does
    lin = LinearPrior(dim=3, side=5)
    u = torch.eye(3, dtype=DT)
    v = torch.stack([torch.tensor([0.8, 0.35, 0.487], dtype=DT), u[0], u[1]], dim=1)
    v = v / v.norm(dim=0)
    hand = LatentGeometry(
        (3,), torch.tensor([3.0, 2.0, 1.0], dtype=DT), u, torch.ones(3, dtype=DT), v, None, None, "eigh", 6.0
    )
    cfg = {"ks": (1,), "top_y": 2, "threshold": 0.5, "distinct": Distinctness(0.0, 0.0)}
    z = torch.zeros(1, 3, dtype=DT)
    with pytest.warns(UserWarning, match="found 0 of 1"):
        one_pass = EGlass(max_iter=1, num_solutions=1, **cfg).run(lin, op, z, geometry=hand)
    assert one_pass.skipped == {1: "not converged in 1 passes"} and one_pass.latents.shape[0] == 0
    two = EGlass(max_iter=2, **cfg).run(lin, op, z, geometry=hand)
    assert not two.skipped and two.latents.shape[0] > 0


def test_eligible_set_never_the_whole_space():
    prior = LinearPrior(dim=12, side=5)
    full = Mask(5, keep_rows=5)  # 25 observed pixels > 12 latent dims: H_Y has full rank
    z0 = torch.zeros(1, 12, dtype=DT)
    geo = latent_geometry(prior, full, z0)
    with pytest.warns(UserWarning, match="whole 12-d latent space"):
        assert eligible_top_y(geo, None, 1.0) == 11
    with pytest.raises(ValueError, match="whole 12-d"):
        eligible_top_y(geo, 12, 0.99)


def test_per_image_mask_operators_are_refused():
    from inversion.operators import Inpainting

    prior = tiny_prior(10)
    op = Inpainting("boxes", box_size=0.3, per_image=True).to(DT)
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(0), dtype=DT)
    x = prior(z0).detach()
    y = op.A(x)
    with pytest.raises(ValueError, match="for_index"):
        explore(prior, op, z0, y)
    with pytest.raises(ValueError, match="per-image masks"):
        fit_solutions(prior, op, y, prior.sample_latent(3), finetune_steps=0)
    fixed = op.for_index(0)
    res = explore(prior, fixed, z0, y, ks=(2,), top_y=3)
    assert res.x0_residual < 1e-6


@pytest.fixture(scope="module")
def toy():
    from lcm.toy import blob_images, fit_toy_prior

    torch.set_num_threads(1)
    prior, _ = fit_toy_prior(steps=120, seed=0)
    x = blob_images(2, generator=torch.Generator().manual_seed(123))
    return prior, x


def test_explore_restore_result_uses_its_fine_tuned_generator(toy):
    from inversion import restore
    from inversion.operators import SuperResolution

    prior, x = toy
    op = SuperResolution(factor=4, kernel="box")
    y = op.A(x)
    out = restore(y, op, prior, method="iagan", seed=0, csgm_steps=60, iagan_steps=40, restarts=1)
    assert out.prior is prior and out.generators is not None
    res = explore(out, op, y, index=1, ks=(2, 3), num_solutions=2)
    # the start is IAGAN's image 1 (its own generator), not the original generator's image of that latent
    torch.testing.assert_close(res.x0, out.raw[1:2], atol=1e-5, rtol=0)
    with torch.no_grad():
        assert float((prior(out.latent[1:2]) - out.raw[1:2]).abs().max()) > 1e-3
    torch.testing.assert_close(res.z0, out.latent[1:2])
    with pytest.raises(ValueError, match="index 5"):
        explore(out, op, y, index=5)


def test_default_criterion_fig2_ordering_on_toy_prior(toy):
    """Paper Fig. 2: at the same step length, raw v^K steps violate the default criterion while the
    searched directions meet it."""
    from inversion.operators import SuperResolution

    prior, x = toy
    op = SuperResolution(factor=4, kernel="box")
    y = op.A(x[:1])
    start = fit_start(prior, op, y, seed=0, z_steps=100, finetune_steps=200)
    assert start.generators is not None and isinstance(start.config["steps"], int)
    crit = Feasibility()
    with pytest.warns(UserWarning):  # few distinct solutions in an 8-d latent space: said, not hidden
        res = explore(start, op, y, prior=prior, criterion=crit, ks=range(2, 8), num_solutions=8)
    assert res.x0_residual <= 0.5 * crit.rel_tol + 1e-6
    assert res.num_solutions >= 2
    sel = torch.tensor(res.selected)
    assert bool((res.residuals[sel] <= crit.rel_tol).all())
    assert bool((res.raw_residuals[sel] > crit.rel_tol).all())
    assert isinstance(GeneratorPrior(prior, start.generators[0]), torch.nn.Module)


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
    fit = fit_solutions(prior, Mask(6, 3), y, prior.sample_latent(2), z_steps=5, labels=torch.tensor([2]))
    assert fit.images.shape == (2, 1, 6, 6) and bool(fit.finetuned.any())
    with torch.no_grad():
        gen = fit.generators[0] if fit.generators[0] is not None else prior.generator
        torch.testing.assert_close(
            fit.images[:1], GeneratorPrior(prior, gen)(fit.latents[:1], torch.tensor([2]))
        )
    with pytest.raises(ValueError, match="class-conditional"):
        explore(prior, Mask(6, 3), z0)


def test_finetune_phase_is_per_start_and_batch_independent():
    prior = tiny_prior(10)
    op = Mask(6, keep_rows=3)
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=DT)  # off the range
    y = op.A(x)
    init = prior.sample_latent(2, torch.Generator().manual_seed(1))
    crit = Feasibility(rel_tol=1e-6)  # never met: both phases run their full budgets
    kw = {"z_steps": 5, "finetune_steps": 8, "generator_lr": 1e-2}
    pair = fit_solutions(prior, op, y, init, crit, **kw)
    alone = fit_solutions(prior, op, y, init[:1], crit, **kw)  # the one-start (plain copy) path
    assert bool(pair.finetuned.all()) and pair.steps.tolist() == [13, 13]
    torch.testing.assert_close(alone.latents[0], pair.latents[0])
    torch.testing.assert_close(alone.images[0], pair.images[0])
    for a, b in zip(alone.generators[0].parameters(), pair.generators[0].parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # the generator moved, the prior's own did not, and each start has its own copy
    base = dict(prior.generator.named_parameters())
    moved = [n for n, p in pair.generators[0].named_parameters() if not torch.equal(p, base[n])]
    assert moved and not torch.equal(
        dict(pair.generators[0].named_parameters())[moved[0]],
        dict(pair.generators[1].named_parameters())[moved[0]],
    )
    with torch.no_grad():
        torch.testing.assert_close(
            pair.images[1:], GeneratorPrior(prior, pair.generators[1])(pair.latents[1:])
        )
        assert float(pair.residuals.max()) < float(crit.residual(op, prior(init), y).min())


@pytest.mark.parametrize("data", ["folder", "samples"])
def test_benchmark_takes_a_folder_of_images_or_the_priors_samples(tmp_path, data):
    """``--data DIR`` (photos for a published generator) and ``--data samples`` (a random-weight one)."""
    from benchmarks import eglass as benchmark
    from datamodules.io.images import save_png

    if data == "folder":
        data = tmp_path / "photos"
        data.mkdir()
        for i in range(2):  # RGB files at another size: loaded gray at the prior's 32 px
            save_png(torch.rand(3, 40, 48), data / f"p{i}.png")
    args = ["--tiny-prior", "--tiny-steps", "3", "--tiny-latent", "4", "--num-images", "2"]
    args += ["--data", str(data)]
    args += ["--num-solutions", "2", "--z-steps", "3", "--finetune-steps", "3", "--num-k", "2", "--etas", "1"]
    args += ["--max-rounds", "1", "--init-tries", "1", "--restart-batch", "2", "--out", str(tmp_path / "o")]
    summary = benchmark.main(args)
    assert summary["num_images"] == 2 and summary["data"] == str(data)
    assert all(r["eglass"]["seconds"] > 0 and r["restarts"]["restarts"] == 2 for r in summary["images"])


def test_automatic_chunks_give_the_same_geometry(monkeypatch):
    """``chunk_size=None`` splits the batched Jacobian products by image size (memory), values unchanged."""
    from inversion.exploration import geometry as geo_module

    prior, op = tiny_prior(10), Mask(6, keep_rows=3)
    z0 = torch.randn(1, 10, generator=torch.Generator().manual_seed(2), dtype=DT)
    whole = latent_geometry(prior, op, z0, method="eigh", chunk_size=10)
    seen = []
    real = geo_module.jacobian_rows
    monkeypatch.setattr(geo_module, "jacobian_rows", lambda f, z, c: seen.append(c) or real(f, z, c))
    monkeypatch.setattr(geo_module, "CHUNK_ELEMENTS", 3 * 36)  # 36-pixel images: 3 tangents a chunk
    auto = latent_geometry(prior, op, z0, method="eigh")
    assert seen == [3]
    torch.testing.assert_close(auto.h_y, whole.h_y)
    torch.testing.assert_close(auto.h_x, whole.h_x)


def test_eglass_h_x_is_lpips_when_its_weights_are_present(monkeypatch, tmp_path):
    """e-GLASS builds H_X from LPIPS; without the LPIPS trunk weights it falls back to pixel MSE and says
    which file is missing."""
    from inversion.exploration.eglass import EGlass
    from inversion.metrics import LPIPS

    missing = tmp_path / "absent" / "alexnet-owt-7be5be79.pth"
    monkeypatch.setattr(LPIPS, "weight_file", lambda self: missing)
    with pytest.warns(UserWarning, match="alexnet-owt-7be5be79.pth"):
        assert EGlass().perceptual == "mse"
    present = tmp_path / "alexnet-owt-7be5be79.pth"
    present.write_bytes(b"")  # only its presence is checked when the explorer is built
    monkeypatch.setattr(LPIPS, "weight_file", lambda self: present)
    assert isinstance(EGlass().perceptual, LPIPS)
    assert EGlass(perceptual="mse").perceptual == "mse"
