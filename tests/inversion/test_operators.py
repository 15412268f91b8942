"""Property tests of the forward operators (deepinv style): adjointness, pseudo-inverse, back-projection,
gradients, seeding, per-image masks, and ValueErrors on bad input. Float64, odd sizes where allowed."""

from __future__ import annotations

import pytest
import torch

from inversion.operators import (
    Blur,
    Colorization,
    Composite,
    CompressedSensing,
    Denoising,
    IAGANFourier,
    Inpainting,
    LinearOperator,
    SuperResolution,
    back_project,
)
from inversion.operators import functional as Fn

ODD = (3, 37, 31)  # deliberately odd
EVEN = (3, 36, 30)  # divisible by 2 and 3 (super-resolution)

# name -> (factory, image shape, full row rank)
OPERATORS = {
    "denoising": (lambda: Denoising(0.1), ODD, True),
    "inpaint_center": (lambda: Inpainting("center"), ODD, False),
    "inpaint_boxes": (lambda: Inpainting("boxes", box_size=6, per_image=True), ODD, False),
    "inpaint_strokes": (lambda: Inpainting("strokes", per_image=True, seed=3), ODD, False),
    "sr2_bicubic": (lambda: SuperResolution(2, "bicubic"), EVEN, True),
    "sr3_lanczos": (lambda: SuperResolution(3, "lanczos"), EVEN, True),
    "sr2_box": (lambda: SuperResolution(2, "box"), EVEN, True),
    "sr2_lanczos_circular": (lambda: SuperResolution(2, "lanczos", padding="circular"), EVEN, True),
    "sr3_bicubic_replicate": (lambda: SuperResolution(3, "bicubic", padding="replicate"), EVEN, True),
    "sr2_bicubic_zeros": (lambda: SuperResolution(2, "bicubic", padding="zeros"), EVEN, True),
    "gray_luma": (lambda: Colorization("luma601"), ODD, True),
    "gray_mean": (lambda: Colorization("mean"), ODD, True),
    "blur_uniform9": (lambda: Blur("uniform", 9, reg=0.0), ODD, True),
    "blur_gauss_reflect": (
        lambda: Blur("gaussian", 5, kernel_sigma=1.0, padding="reflect", reg=1e-2, cg_iters=300),
        ODD,
        False,
    ),
    "cs_gaussian": (lambda: CompressedSensing(0.3, "gaussian", seed=1), ODD, True),
    "cs_fourier": (lambda: CompressedSensing(0.3, "fourier", seed=1), ODD, True),
    "cs_fourier_even": (lambda: CompressedSensing(0.5, "fourier", seed=2), EVEN, True),
    # IAGAN's compress_FFT: conjugate pairs measured twice, Im at DC always 0 -> dependent rows
    "cs_iagan_fourier": (lambda: IAGANFourier(3.0, seed=1), (3, 16, 16), False),
    "composite_sr_gray": (lambda: Composite([SuperResolution(2, "lanczos"), Colorization()]), EVEN, True),
    "composite_hybrid": (
        lambda: Composite([SuperResolution(2, "lanczos"), Colorization(), Inpainting(box_size=0.4)]),
        EVEN,
        False,
    ),
}
NAMES = sorted(OPERATORS)


def _x(shape, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_adjointness(name):
    factory, shape, _ = OPERATORS[name]
    op = factory()
    x = _x(shape)
    assert op.adjointness_error(x, generator=torch.Generator().manual_seed(1)) < 1e-6
    # a broken adjoint must be detected by the same helper (the test can fail)
    if name == "sr2_bicubic":
        wrong = torch.nn.functional.interpolate(op.A(x), scale_factor=2, mode="nearest")
        y = op.A(x)
        err = abs((op.A(x) * y).sum() - (x * wrong).sum()) / (op.A(x).norm() * y.norm())
        assert err > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_pseudo_inverse_and_back_projection(name):
    factory, shape, full_rank = OPERATORS[name]
    op = factory()
    x, x0 = _x(shape, seed=0), _x(shape, seed=1)
    y = op.A(x)
    if full_rank:  # any y in the measurement space (here random) is reproduced
        y_any = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
        assert ((op.A(op.A_dagger(y_any)) - y_any).norm() / y_any.norm()) < 1e-4
    if name == "blur_gauss_reflect":  # Tikhonov CG: solves (A^T A + reg I) x = A^T y
        xd = op.A_dagger(y)
        lhs = op.A_adjoint(op.A(xd)) + op.reg * xd
        assert ((lhs - op.A_adjoint(y)).norm() / op.A_adjoint(y).norm()) < 1e-6
        return
    assert ((op.A(op.A_dagger(y)) - y).norm() / y.norm()) < 1e-4
    x_bp = back_project(x0, y, op)  # IAGAN eq. 10
    assert ((op.A(x_bp) - y).norm() / y.norm()) < 1e-4
    assert ((op.A(x0) - y).norm() / y.norm()) > 1e-2  # the starting point did not already fit


def test_pseudo_inverse_is_minimum_norm_for_gaussian_cs():
    op = CompressedSensing(0.2, "gaussian", seed=0)
    x = _x(ODD, batch=1)
    xd = op.A_dagger(op.A(x))
    null_part = x - xd  # A (x - xd) = 0 and xd is orthogonal to the null space
    assert op.A(null_part).norm() < 1e-8 * x.norm()
    assert abs(float((xd * null_part).sum())) < 1e-8 * float(x.norm() ** 2)


@pytest.mark.parametrize(
    "name", ["inpaint_strokes", "sr3_lanczos", "blur_uniform9", "cs_fourier", "composite_hybrid"]
)
def test_gradients_reach_input(name):
    factory, shape, _ = OPERATORS[name]
    op = factory()
    x = _x(shape).requires_grad_(True)
    (op.A(x) ** 2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_float32_follows_input():
    op = SuperResolution(2, "lanczos")
    x = torch.rand(1, 1, 16, 16)
    assert op.A(x).dtype == torch.float32
    assert op.A_dagger(op.A(x)).dtype == torch.float32
    assert CompressedSensing(0.5, "gaussian").A(x).dtype == torch.float32


def test_noise_forward_seeded():
    op = Blur(sigma=10 / 255)
    x = _x(ODD)
    y1 = op(x, generator=torch.Generator().manual_seed(0))
    y2 = op(x, generator=torch.Generator().manual_seed(0))
    y3 = op(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert abs(float((y1 - op.A(x)).std()) - 10 / 255) < 0.1 * 10 / 255
    assert torch.equal(Blur().forward(x), Blur().A(x))  # sigma 0: no noise


@pytest.mark.parametrize(
    "make",
    [
        lambda s: Inpainting("boxes", per_image=True, seed=s),
        lambda s: Inpainting("strokes", per_image=True, seed=s),
        lambda s: CompressedSensing(0.3, "gaussian", seed=s),
        lambda s: CompressedSensing(0.3, "fourier", seed=s),
    ],
)
def test_same_seed_same_operator(make):
    x = _x(ODD, batch=2)
    a, b, c = make(0).A(x), make(0).A(x), make(1).A(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_per_image_masks_in_batch():
    op = Inpainting("boxes", box_size=0.3, num_boxes=2, per_image=True, seed=7)
    x = torch.ones(4, 3, 37, 31, dtype=torch.float64)
    m = op.mask_for(x)
    assert m.shape == (4, 1, 37, 31)
    assert len({tuple(mi.flatten().tolist()) for mi in m}) == 4
    # position b keeps its mask whatever the batch size
    assert torch.equal(op.mask_for(x[:2]), m[:2])
    shared = Inpainting("boxes", per_image=False, seed=7).mask_for(x)
    assert shared.shape[0] == 1


def test_center_mask_matches_lcm_setting():
    op = Inpainting("center")  # LCM: 50x50 hole in 128x128
    m = op.mask_for(torch.zeros(1, 3, 128, 128))
    assert int((m == 0).sum()) == 50 * 50
    assert m[0, 0, 64, 64] == 0 and m[0, 0, 0, 0] == 1
    assert int((Inpainting(box_size=[10, 4]).mask_for(torch.zeros(1, 1, 37, 31)) == 0).sum()) == 40


def test_given_mask_and_file_mask(tmp_path):
    from PIL import Image

    masks = (torch.rand(4, 1, 37, 31, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    op = Inpainting()
    op.set_mask(masks)
    x = _x(ODD, batch=4)
    assert torch.equal(op.A(x), x * masks)
    img = torch.zeros(37, 31, dtype=torch.uint8)
    img[5:9, 2:7] = 255  # white = hole
    Image.fromarray(img.numpy()).save(tmp_path / "m.png")
    fop = Inpainting("file", mask_path=str(tmp_path / "m.png"))
    fm = fop.mask_for(x)
    assert int((fm == 0).sum()) == 20 and fm[0, 0, 6, 3] == 0
    with pytest.raises(FileNotFoundError, match="mask_path"):
        Inpainting("file", mask_path=str(tmp_path / "missing.png")).A(x)


def test_composite_matches_chain_and_adjoint_order():
    sr, gray = SuperResolution(2, "bicubic"), Colorization("mean")
    comp = Composite([sr, gray])
    x = _x(EVEN)
    y = torch.randn(2, 1, 18, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(comp.A(x), gray.A(sr.A(x)))
    assert torch.allclose(comp.A_adjoint(y), sr.A_adjoint(gray.A_adjoint(y)))
    # the composition of pseudo-inverses is not the pseudo-inverse of the composition in general;
    # ours is the minimum-norm one: it has no smaller norm than the composed one and both fit y
    naive = sr.A_dagger(gray.A_dagger(y))
    ours = comp.A_dagger(y)
    assert ((comp.A(ours) - y).norm() / y.norm()) < 1e-6
    assert ours.norm() <= naive.norm() * (1 + 1e-9)


def test_fourier_cs_is_exact_orthonormal_subsampling():
    op = CompressedSensing(1.0, "fourier", seed=0)
    x = _x(ODD)
    y = op.A(x)
    assert y.shape == (2, 3 * 37 * 31)
    assert torch.allclose(y.norm(dim=1), x.flatten(1).norm(dim=1))  # full ratio: an isometry
    assert torch.allclose(op.A_adjoint(y), x)
    mask = CompressedSensing(0.3, "fourier", seed=0, image_shape=[1, 32, 32]).frequency_mask()
    assert mask[0, 0] == 1 and mask.mean() < 0.5  # low frequencies favoured, subsampled


@pytest.mark.parametrize(
    ("call", "word"),
    [
        (lambda: Colorization().A(torch.rand(1, 1, 8, 8)), "x"),
        (lambda: SuperResolution(3).A(torch.rand(1, 3, 37, 31)), "factor"),
        (lambda: CompressedSensing(0.0), "ratio"),
        (lambda: CompressedSensing(1.5), "ratio"),
        (lambda: Blur().A(torch.full((1, 1, 16, 16), float("nan"))), "NaN"),
        (lambda: Inpainting(box_size=1.5), "box_size"),
        (lambda: Blur(size=4), "size"),
        (lambda: SuperResolution(2, kernel="nearest"), "kernel"),
        (lambda: CompressedSensing(0.5, image_shape=[3, 8, 8]).A(torch.rand(1, 3, 9, 8)), "image_shape"),
        (lambda: Denoising(0.1).A(torch.rand(3, 8, 8)), "x"),
        (lambda: IAGANFourier().A(torch.rand(1, 3, 9, 9)), "even"),
        (lambda: IAGANFourier(mask=torch.full((8, 8), 0.5)), "0/1"),
        (lambda: IAGANFourier(mask=torch.ones(8, 8)).A(torch.rand(1, 3, 16, 16)), "mask is 8x8"),
        (lambda: IAGANFourier(thresh=0), "thresh"),
    ],
)
def test_bad_input_raises(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_check_false_skips_only_the_nan_scan():
    """The loops' ``check=False`` path: same map, NaN passes through; shape errors still raise."""
    op, x = Inpainting("center", box_size=0.5), torch.rand(2, 3, 16, 16)
    assert torch.equal(op.A(x, check=False), op.A(x))
    assert torch.equal(op.A_adjoint(x, check=False), op.A_adjoint(x))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        op.A(bad)
    with pytest.raises(ValueError, match="NaN"):
        op.A_adjoint(bad)
    assert torch.isnan(op.A(bad, check=False)).any()
    with pytest.raises(ValueError, match="channels"):
        Colorization().A(torch.rand(1, 1, 8, 8), check=False)


def test_mask_shape_mismatch_raises():
    op = Inpainting()
    op.set_mask(torch.ones(2, 1, 10, 10))
    with pytest.raises(ValueError, match="mask"):
        op.A(torch.rand(2, 3, 11, 10))
    with pytest.raises(ValueError, match="mask"):
        op.A(torch.rand(3, 3, 10, 10))
    with pytest.raises(ValueError, match="mask"):
        op.set_mask(torch.ones(2, 3, 10, 10))


def test_pad_adjoint_exact_for_every_mode():
    z = torch.randn(2, 1, 7, 6, dtype=torch.float64)
    pad = (2, 3, 3, 1)
    for mode in ("reflect", "replicate", "circular", "zeros"):
        p = Fn.pad2d(z, pad, mode)
        w = torch.randn_like(p)
        assert abs(float((p * w).sum() - (z * Fn.pad2d_adjoint(w, pad, mode)).sum())) < 1e-10


def test_resize_kernels_centred_and_normalised():
    for f in (2, 3, 4):
        for kind in ("bicubic", "lanczos", "box"):
            k = Fn.resize_kernel_1d(f, kind)
            assert abs(float(k.sum()) - 1) < 1e-12 and torch.allclose(k, k.flip(0))
            assert k.numel() % 2 == f % 2
    # a constant image stays constant (reflect padding keeps borders exact)
    x = torch.full((1, 1, 24, 24), 0.3, dtype=torch.float64)
    assert torch.allclose(
        SuperResolution(4, "lanczos").A(x), torch.full((1, 1, 6, 6), 0.3, dtype=torch.float64)
    )


def test_base_class_exposes_linear_flag():
    assert all(isinstance(OPERATORS[n][0](), LinearOperator) and OPERATORS[n][0]().linear for n in NAMES)


def test_operators_move_with_module_to():
    """`nn.Module.to` works on every operator (their buffers follow dtype and device)."""
    ops = [
        Denoising(0.1),
        Inpainting(mask_kind="boxes", per_image=True, seed=3),
        SuperResolution(2),
        Colorization(),
        Blur(kernel="uniform", size=3),
        CompressedSensing(0.5, kind="gaussian", seed=0),
        Composite([SuperResolution(2), Colorization()]),
    ]
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    for op in ops:
        moved = op.to(torch.float64)
        y = moved.A(x)
        assert y.dtype == torch.float64


def test_inpainting_for_index_matches_the_batch_position_mask():
    op = Inpainting(mask_kind="strokes", per_image=True, seed=5)
    x = torch.rand(4, 1, 16, 16)
    batch_masks = op.mask_for(x)
    single = op.for_index(2).mask_for(x[:1])
    assert torch.equal(single[0], batch_masks[2])
    assert not torch.equal(single[0], batch_masks[1])


def test_repeated_rows_keep_each_images_mask_also_inside_a_composite():
    """Restart rows (image i repeated r times) must be measured with image i's own mask."""
    x = torch.rand(3, 3, 16, 16)
    rep = x.repeat_interleave(2, dim=0)
    chain = Composite([SuperResolution(2), Inpainting(mask_kind="boxes", per_image=True, seed=1)])
    given = Inpainting()
    given.set_mask((torch.rand(3, 1, 16, 16) > 0.5).float())
    for op in (chain, Inpainting(mask_kind="strokes", per_image=True, seed=4), given):
        torch.testing.assert_close(op.repeated(2).A(rep), op.A(x).repeat_interleave(2, dim=0))
    assert SuperResolution(2).repeated(3) is not None and not SuperResolution(2).row_dependent()
    with pytest.raises(ValueError, match="repeats"):
        chain.repeated(2).A(x[:1])


def test_for_index_reaches_masks_inside_a_composite():
    chain = Composite([Colorization(), Inpainting(mask_kind="boxes", per_image=True, seed=7)])
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(chain.for_index(2).A(x[2:3]), chain.A(x)[2:3])
    assert not chain.for_index(2).row_dependent()
    plain = SuperResolution(2)
    assert plain.for_index(5) is plain  # batch-independent operators are not copied


def test_soft_mask_pseudo_inverse_inverts_on_the_support():
    op = Inpainting()
    m = torch.tensor([[0.0, 0.5], [1.0, 0.25]])
    op.set_mask(m)
    x = torch.rand(2, 1, 2, 2, dtype=torch.float64)
    y = op.A(x)
    torch.testing.assert_close(op.A(op.A_dagger(y)), y)  # A A^+ y = y
    torch.testing.assert_close(op.A_dagger(y)[..., m != 0], x[..., m != 0])
    assert (op.A_dagger(y)[..., m == 0] == 0).all()


# --------------------------------------------------------------- pseudo-inverse of rank-deficient chains
RANK_DEFICIENT = {
    "gray_inpaint": lambda: Composite([Colorization(), Inpainting(box_size=0.4, sigma=0.05)]),
    "sr2_gray_inpaint": lambda: Composite([SuperResolution(2), Colorization(), Inpainting(box_size=0.5)]),
    "inpaint_sr2_bicubic": lambda: Composite([Inpainting(box_size=0.4), SuperResolution(2, "bicubic")]),
    "gray_perimage_inpaint": lambda: Composite(
        [Colorization(), Inpainting("boxes", box_size=3, per_image=True, seed=4)]
    ),
}


def _dense(op, shape, batch_index=0, batch=2):
    """The matrix of ``op`` for the image at ``batch_index`` (columns: basis images, float64)."""
    n = int(torch.tensor(shape).prod())
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    cols = []
    for e in eye:  # embed the basis image at its batch position (per-image masks)
        xb = torch.zeros(batch, *shape, dtype=torch.float64)
        xb[batch_index] = e
        cols.append(op.A(xb)[batch_index].flatten())
    return torch.stack(cols, 1)


@pytest.mark.parametrize("name", sorted(RANK_DEFICIENT))
def test_pseudo_inverse_of_rank_deficient_chain_is_minimum_norm_least_squares(name):
    """A^+ y for noisy y (not in range(A)) is pinv(A) y: the normal equations hold, no NaN, no blow-up."""
    op = RANK_DEFICIENT[name]()
    shape = (3, 8, 8)
    x = _x(shape, seed=0)
    y = op(x, generator=torch.Generator().manual_seed(0))
    y = y + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    xd = op.A_dagger(y)
    assert torch.isfinite(xd).all()
    normal = op.A_adjoint(op.A(xd) - y)  # A^T (A A^+ y - y) = 0: A A^+ y is the projection onto range(A)
    assert normal.norm() < 1e-6 * op.A_adjoint(y).norm()
    for b in range(2):
        ref = torch.linalg.pinv(_dense(op, shape, b)) @ y[b].flatten()
        torch.testing.assert_close(xd[b].flatten(), ref, atol=1e-6, rtol=1e-6)
    # A^+ (A x) is the minimum-norm preimage: the projection of x onto range(A^T)
    xr = op.A_dagger(op.A(x))
    for b in range(2):
        a = _dense(op, shape, b)
        torch.testing.assert_close(
            xr[b].flatten(), torch.linalg.pinv(a) @ (a @ x[b].flatten()), atol=1e-6, rtol=1e-6
        )


@pytest.mark.parametrize("name", sorted(RANK_DEFICIENT))
def test_back_projection_on_noisy_hybrid_task_is_bounded_in_float32(name):
    """float32 CGLS: finite, normal equations hold, and no larger than the exact (float64) A^+ y.

    (inpaint then bicubic SR2 on 16x16 is nearly singular, smallest singular value ~5e-6: its exact
    pseudo-inverse amplifies noise legitimately; CGLS iterates grow monotonically towards it, never past.)
    """
    op = RANK_DEFICIENT[name]()
    shape = (3, 16, 16)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    y = op.A(x) + 0.05 * torch.randn(op.A(x).shape, generator=torch.Generator().manual_seed(1))
    x0 = torch.rand(2, *shape, generator=torch.Generator().manual_seed(2))
    x_bp = back_project(x0, y, op)
    assert torch.isfinite(x_bp).all()
    r = op.A(x_bp) - y
    assert op.A_adjoint(r).norm() < 1e-3 * op.A_adjoint(y).norm()
    step = (x_bp - x0).double()
    for b in range(2):
        exact = torch.linalg.pinv(_dense(op, shape, b)) @ (y - op.A(x0))[b].double().flatten()
        assert step[b].norm() <= exact.norm() * 1.01 + 1e-3


@pytest.mark.parametrize("padding", ["circular", "reflect", "replicate", "zeros"])
def test_blur_is_one_grouped_convolution_with_exact_adjoint(padding, monkeypatch):
    """Blur runs one depthwise conv over all B*C channels (not the batch folded into N, one channel)."""
    op = Blur("gaussian", 5, kernel_sigma=1.0, padding=padding, reg=1e-2)
    x = _x(ODD)
    assert op.adjointness_error(x, generator=torch.Generator().manual_seed(1)) < 1e-12
    # reference: each channel correlated separately with the kernel after F.pad
    pad = (2, 2, 2, 2)
    z = (
        torch.nn.functional.pad(x, pad)
        if padding == "zeros"
        else torch.nn.functional.pad(x, pad, mode=padding)
    )
    ref = torch.nn.functional.conv2d(z.flatten(0, 1)[:, None], op.k2d[None, None]).reshape(x.shape)
    torch.testing.assert_close(op.A(x), ref)
    seen = []
    conv, conv_t = torch.nn.functional.conv2d, torch.nn.functional.conv_transpose2d
    monkeypatch.setattr(
        torch.nn.functional, "conv2d", lambda *a, **k: seen.append(k.get("groups", 1)) or conv(*a, **k)
    )
    monkeypatch.setattr(
        torch.nn.functional,
        "conv_transpose2d",
        lambda *a, **k: seen.append(k.get("groups", 1)) or conv_t(*a, **k),
    )
    op.A(x), op.A_adjoint(x)
    assert seen == [6, 6]  # B * C = 2 * 3 groups


@pytest.mark.parametrize("padding", ["circular", "reflect", "replicate", "zeros"])
def test_filter2d_adjoint_is_exact_for_an_asymmetric_kernel(padding):
    g = torch.Generator().manual_seed(0)
    k = torch.rand(5, 3, generator=g, dtype=torch.float64)
    x, y = _x(ODD, seed=2), _x(ODD, seed=3)
    lhs = (Fn.filter2d(x, k, padding) * y).sum()
    rhs = (x * Fn.filter2d_adjoint(y, k, padding)).sum()
    assert abs(float(lhs - rhs)) < 1e-10 * float(lhs)
