"""Background removal against fields whose split into local and background is known."""

import numpy as np
import pytest
from scipy import ndimage
from conftest import ellipsoid, grid_mm, radial_source

from qsmflow import kernels
from qsmflow.phantom import metrics
from qsmflow import bgremove
from qsmflow.bgremove import vsharp

SHAPE, VS = (56, 64, 48), (1.0, 1.0, 1.5)


def _scene(b0=(0, 0, 1)):
    """Brain-like ellipsoid with inner sources, and strong sources outside (air, bone)."""
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    x, y, z = grid_mm(SHAPE, VS)
    inside = np.zeros(SHAPE, np.float32)
    for c, r, v in [((-6, 5, 0), 4, 0.15), ((7, -4, 4), 3, 0.1), ((0, 8, -8), 3, -0.05)]:
        inside[((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) <= r * r] = v
    inside += np.where(mask, 0.02 * np.sin(x / 4.0) * np.cos(y / 5.0), 0).astype(np.float32)
    outside = np.zeros(SHAPE, np.float32)
    outside[((x) ** 2 + (y - 28) ** 2 + (z + 20) ** 2) <= 8**2] = 9.4  # "sinus" next to the mask
    outside[~ellipsoid(SHAPE, VS, (25, 28, 32)) & ellipsoid(SHAPE, VS, (27, 30, 35))] = -2.0  # "skull"
    outside[mask] = 0
    # Sharp voxelised edges carry energy up to the Nyquist frequency, where the
    # continuous kernel's cross terms (oblique B0) ring through the whole volume and
    # make the field non-harmonic inside the mask (measured: 6 % of the background
    # RMS). Real fields are band-limited by the acquisition; a 1-voxel Gaussian edge
    # stands in for that (residual then 0.5 %, as for B0 along z).
    outside = ndimage.gaussian_filter(outside, 1.0)
    outside[mask] = 0
    local = kernels.forward_field(inside, VS, b0)
    background = kernels.forward_field(outside, VS, b0)
    return mask, local, background


# Harmonic input (sources only outside the mask): every method leaves at most 1.2 %
# of the background's RMS (measured 0.1-0.5 % axial, 0.2-1.2 % oblique); issue 4's
# bound is 5 %.
HARMONIC_RESIDUAL_TOL = 0.05
# Local field recovered inside each method's own eroded mask, demeaned NRMSE (%)
# measured on this scene (axial / oblique): PDF 44/43, LBV 25/27, V-SHARP 40/38,
# SHARP 18/18, RESHARP 22/22, iSMV 19/19; bounds leave ~15 % headroom.
LOCAL_NRMSE_TOL = {"pdf": 52, "lbv": 32, "vsharp": 45, "sharp": 22, "resharp": 27, "ismv": 23}
# Share of the mask each method keeps (measured): PDF all, LBV 88 % (one voxel of a
# 1.5 mm rim), V-SHARP 79 %, the 5 mm sphere methods 49 % of this small ellipsoid.
MIN_KEPT = {"pdf": 0.99, "lbv": 0.85, "vsharp": 0.75, "sharp": 0.45, "resharp": 0.45, "ismv": 0.45}
OBLIQUE = (0, np.sin(0.35), np.cos(0.35))


@pytest.mark.parametrize("method", sorted(bgremove.METHODS))
@pytest.mark.parametrize("b0", [(0, 0, 1), OBLIQUE])
def test_harmonic_field_is_removed(method, b0):
    mask, _, background = _scene(b0)
    local, eroded = bgremove.METHODS[method].func(background, mask, VS, b0)
    rms_in = np.std(background[eroded])
    assert np.std(local[eroded]) / rms_in < HARMONIC_RESIDUAL_TOL
    assert not np.any(eroded & ~mask) and not np.any(local[~eroded])


@pytest.fixture(scope="session")
def removed_axial():
    """``removed_axial(method)``: METHODS[method] on the axial scene's total field (local +
    background), made once per test process (read-only) for the two tests that read it, in
    one xdist group: test_local_field_recovered and test_units_pass_through_and_no_mutation."""
    done = {}

    def removed(method):
        if method not in done:
            mask, true_local, background = _scene()
            local, eroded = bgremove.METHODS[method].func(true_local + background, mask, VS, (0, 0, 1))
            local.flags.writeable = eroded.flags.writeable = False
            done[method] = local, eroded
        return done[method]
    return removed


@pytest.mark.xdist_group("bgremove_axial")
@pytest.mark.parametrize("method", sorted(bgremove.METHODS))
@pytest.mark.parametrize("b0", [(0, 0, 1), OBLIQUE])
def test_local_field_recovered(method, b0, removed_axial):
    mask, true_local, background = _scene(b0)
    if b0 == (0, 0, 1):
        local, eroded = removed_axial(method)
    else:
        local, eroded = bgremove.METHODS[method].func(true_local + background, mask, VS, b0)
    assert metrics.nrmse(local, true_local, eroded) < LOCAL_NRMSE_TOL[method]
    assert eroded.sum() >= MIN_KEPT[method] * mask.sum()
    # and the background really was large: without removal the error is huge
    assert metrics.nrmse(true_local + background, true_local, eroded) > 200


# Closed-form fields (conftest.radial_source, not qsmflow's kernel): a 5 mm source of 0.2 ppm
# inside the mask under a 10x stronger background from an air cavity (9.4 ppm, 9 mm) outside.
# Measured slope of the local field on the analytic one near the source, and the residual RMS
# over the local field's RMS (axial / oblique): LBV 0.955/0.959, 0.09; PDF 0.855/0.854, 0.30;
# V-SHARP 0.862, 0.19; SHARP 0.964/0.972, 0.06; RESHARP 0.834/0.831, 0.21; iSMV 0.931/0.929, 0.10.
ANALYTIC_MIN_SLOPE = {"pdf": 0.80, "lbv": 0.90, "vsharp": 0.80, "sharp": 0.90, "resharp": 0.78, "ismv": 0.87}
ANALYTIC_MAX_RESIDUAL = {"pdf": 0.40, "lbv": 0.15, "vsharp": 0.25, "sharp": 0.10, "resharp": 0.28, "ismv": 0.15}


@pytest.mark.parametrize("method", sorted(bgremove.METHODS))
@pytest.mark.parametrize("b0", [(0, 0, 1), OBLIQUE])
def test_analytic_source_kept_under_an_analytic_background(method, b0):
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    _, source, r = radial_source(SHAPE, VS, (3, -4, 2), 5.0, 0.2, b0)
    _, cavity, _ = radial_source(SHAPE, VS, (0, 30, -26), 9.0, 9.4, b0)
    assert cavity[mask].std() > 8 * source[mask].std()
    local, eroded = bgremove.METHODS[method].func((source + cavity).astype(np.float32), mask, VS, b0)
    near = eroded & (r > 7) & (r < 20)
    e, t = local[near] - local[near].mean(), source[near] - source[near].mean()
    assert ANALYTIC_MIN_SLOPE[method] < np.dot(e, t) / np.dot(t, t) < 1.05
    resid = local[eroded] - source[eroded]
    assert np.std(resid) / np.std(source[eroded]) < ANALYTIC_MAX_RESIDUAL[method]


# LBV's CG stops relative to its right-hand side, the boundary values alone: at 1e-4 of it the
# local field on this scene was 0.47 % of its RMS from the converged solution with plain CG
# (2.8 % on the 1 mm benchmark head, where χ lost 0.1-0.15 points), at the default 1e-5 0.07 %;
# preconditioned by multigrid 0.19 % and 0.011 %.
def test_lbv_default_tolerance_reaches_the_converged_local_field():
    mask, local, background = _scene()
    field = (local + background).astype(np.float32)
    converged, eroded = bgremove.lbv(field, mask, VS, tol=1e-9, max_iter=20000)
    ours, _ = bgremove.lbv(field, mask, VS)
    assert np.linalg.norm((ours - converged)[eroded]) < 0.002 * np.linalg.norm(converged[eroded])


def test_lbv_starts_from_a_known_background(caplog):
    """``background0``: LBV on a mask with a few edge voxels removed, started from the full
    mask's background, reaches the cold solve's local field (same tolerance) in under half
    its iterations (measured 3 against 9 with the multigrid preconditioner, 24 against 60
    without; local fields 0.02 % apart); NaN means unknown (the field is taken there), and a
    background of the wrong shape is refused."""
    import logging

    mask, local, background = _scene()
    field = (local + background).astype(np.float32)
    full, _ = bgremove.lbv(field, mask, VS)
    smaller = mask.copy()
    edge = mask & ~ndimage.binary_erosion(mask)
    smaller[np.nonzero(edge)[0][:40], np.nonzero(edge)[1][:40], np.nonzero(edge)[2][:40]] = False
    start = np.where(mask, field - full, np.nan).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="qsmflow.bgremove"):
        cold, eroded = bgremove.lbv(field, smaller, VS)
        warm, eroded_warm = bgremove.lbv(field, smaller, VS, background0=start)
    iters = [int(r.getMessage().split(", ")[-1].split()[0]) for r in caplog.records if "iterations" in r.getMessage()]
    assert np.array_equal(eroded, eroded_warm)
    assert np.linalg.norm((warm - cold)[eroded]) < 0.002 * np.linalg.norm(cold[eroded])
    assert iters[1] < 0.5 * iters[0], iters
    with pytest.raises(ValueError, match="background0"):
        bgremove.lbv(field, smaller, VS, background0=start[:-1])


def _dirichlet_laplace_by_loops(field, mask, vs):
    """The background LBV defines, solved directly: -∇²b = 0 (7-point stencil, 1/h² per axis)
    on the voxels of ``mask`` whose six neighbours are in it, b = field on the others."""
    shape = mask.shape
    inner = np.zeros(shape, bool)
    for i, j, k in zip(*np.nonzero(mask)):
        nbrs = [(i + 1, j, k), (i - 1, j, k), (i, j + 1, k), (i, j - 1, k), (i, j, k + 1), (i, j, k - 1)]
        inner[i, j, k] = all(0 <= a < shape[0] and 0 <= b < shape[1] and 0 <= c < shape[2] and mask[a, b, c]
                             for a, b, c in nbrs)
    cells = list(zip(*np.nonzero(inner)))
    number = {c: n for n, c in enumerate(cells)}
    a = np.zeros((len(cells), len(cells)))
    rhs = np.zeros(len(cells))
    for n, (i, j, k) in enumerate(cells):
        for axis, h in enumerate(vs):
            for step in (1, -1):
                nb = [i, j, k]
                nb[axis] += step
                a[n, n] += 1 / h**2
                if tuple(nb) in number:
                    a[n, number[tuple(nb)]] -= 1 / h**2
                else:
                    rhs[n] += field[tuple(nb)] / h**2
    background = np.zeros(shape)
    background[inner] = np.linalg.solve(a, rhs)
    return np.where(inner, field - background, 0), inner


def test_lbv_solves_laplaces_equation_as_a_direct_solver_does():
    """On an irregular mask (an ellipsoid with a notch, anisotropic voxels) LBV's local field
    at a tight tolerance is the direct solution of the discrete Dirichlet problem, built here
    voxel by voxel, to float32 precision."""
    shape, vs = (18, 20, 14), (1.0, 1.25, 2.0)
    mask = ellipsoid(shape, vs, (8, 11, 12))
    mask[6:12, 14:, :] = False  # a notch
    rng = np.random.default_rng(5)
    field = ndimage.gaussian_filter(rng.normal(size=shape), 2).astype(np.float32) * 10
    expected, inner = _dirichlet_laplace_by_loops(field, mask, vs)
    local, eroded = bgremove.lbv(field, mask, vs, tol=1e-8)
    np.testing.assert_array_equal(eroded, inner)
    assert np.abs(local - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.5)])
def test_multigrid_preconditioner_is_symmetric_positive_definite_and_close_to_the_inverse(vs):
    """Conjugate gradients need a symmetric positive definite preconditioner: u·M(v) = v·M(u),
    u·M(u) > 0; and one V-cycle removes most of a smooth error, which Jacobi sweeps alone
    hardly touch (the coarse grids' work), in the energy norm: ||(I - MA)e||_A < 0.5 ||e||_A
    for e = cos(x / 10 voxels) (measured 0.36 isotropic, 0.28 at 1x1x2.5 mm), on two balls
    joined by a thin bridge (three grids)."""
    from qsmflow.bgremove import multigrid

    x, y, z = np.meshgrid(*[np.arange(64) - 32.0] * 3, indexing="ij")
    region = ((x - 12) ** 2 + y * y + z * z < 18**2) | ((x + 15) ** 2 + y * y + z * z < 14**2)
    region |= (np.abs(y) < 2) & (np.abs(z) < 2) & (np.abs(x) < 28)
    lap = multigrid.Laplacian(multigrid.interior_of(region), vs)
    cycle = multigrid.VCycle(lap)
    assert len(cycle.levels) >= 3 and cycle.coarsest is not None
    rng = np.random.default_rng(1)
    for _ in range(3):
        u, v = rng.normal(size=(2, lap.size)).astype(np.float32)
        mu, mv = cycle(u).astype(np.float64), cycle(v).astype(np.float64)
        assert abs(u @ mv - v @ mu) < 1e-5 * np.linalg.norm(u) * np.linalg.norm(mv)
        assert u @ mu > 0
    a = lap.matrix.astype(np.float64)
    e = np.cos(x / 10)[multigrid.interior_of(region)]
    left = e - cycle((a @ e).astype(np.float32))
    assert np.sqrt(left @ (a @ left)) < 0.5 * np.sqrt(e @ (a @ e))


def test_multigrid_iterations_do_not_grow_with_the_grid():
    """Plain CG on LBV's problem needs more iterations on a finer grid (the smooth error has a
    smaller residual); with one V-cycle as preconditioner the count stays nearly the same:
    balls of radius 10 and 30 voxels (3 k and 104 k unknowns), measured 37 and 109 plain,
    9 and 11 preconditioned; on 1x1x2.5 mm voxels 11 (22 if every axis were coarsened)."""
    from qsmflow._shared.cg import conjugate_gradient
    from qsmflow.bgremove import multigrid

    counts = {}
    for n, r, vs in ((24, 10, (1.0, 1.0, 1.0)), (64, 30, (1.0, 1.0, 1.0)), (64, 30, (1.0, 1.0, 2.5))):
        x, y, z = np.meshgrid(*[np.arange(n) - n / 2] * 3, indexing="ij")
        ball = x * x + y * y + z * z <= r * r
        inner = multigrid.interior_of(ball)
        lap = multigrid.Laplacian(inner, vs)
        rhs = lap.boundary_rhs((x * x - y * y + np.sin(x / 3) * 40).astype(np.float32), ball & ~inner)
        plain = conjugate_gradient(lap.apply, rhs, 1e-6, 5000)[1]
        mg = conjugate_gradient(lap.apply, rhs, 1e-6, 5000, precond=multigrid.VCycle(lap))[1]
        counts[r, vs[2]] = plain, mg
    assert counts[30, 1.0][0] > 2 * counts[10, 1.0][0]
    assert counts[30, 1.0][1] <= counts[10, 1.0][1] + 3 and counts[30, 1.0][1] < counts[30, 1.0][0] / 5, counts
    assert counts[30, 2.5][1] <= counts[10, 1.0][1] + 3, counts


# LBV's local field misses the harmonic field with the true local field's values on the
# mask's edge; from the true χ, lbv_boundary_field gives it back. A 5 mm source of 0.2 ppm
# 5-9 mm from the edge, under the cavity's background (closed-form fields): residual RMS over
# the local field's RMS measured LBV 0.26 / 0.38 -> 0.017 / 0.025 refined (axial), 0.27 /
# 0.40 -> 0.018 / 0.029 (oblique); a central source 0.09 -> 0.023.
@pytest.mark.parametrize("b0", [(0, 0, 1), OBLIQUE])
@pytest.mark.parametrize("centre", [(0, 4, 17), (10, 8, 12)])
def test_lbv_boundary_field_restores_what_lbv_took_for_background(b0, centre):
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    chi, source, _ = radial_source(SHAPE, VS, centre, 5.0, 0.2, b0)
    _, cavity, _ = radial_source(SHAPE, VS, (0, 30, -26), 9.0, 9.4, b0)
    local, eroded = bgremove.lbv((source + cavity).astype(np.float32), mask, VS, b0)
    missed = bgremove.lbv_boundary_field(chi, mask, VS, b0)
    rms = np.std(source[eroded])
    before = np.sqrt(np.mean((local - source)[eroded] ** 2)) / rms
    after = np.sqrt(np.mean((local + missed - source)[eroded] ** 2)) / rms
    assert before > 0.2 and after < 0.04
    assert missed.dtype == np.float32 and not np.any(missed[~eroded])
    # a χ outside the mask is not the tissue's: it changes nothing
    far = np.where(mask, 0, 5.0).astype(np.float32)
    assert np.array_equal(bgremove.lbv_boundary_field(chi + far, mask, VS, b0), missed)


def test_lbv_boundary_field_checks_its_inputs():
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    with pytest.raises(ValueError, match="chi"):
        bgremove.lbv_boundary_field(np.full(SHAPE, np.nan, np.float32), mask, VS, (0, 0, 1))
    with pytest.raises(ValueError, match="mask"):
        bgremove.lbv_boundary_field(np.zeros(SHAPE, np.float32), mask[:-1], VS, (0, 0, 1))


@pytest.mark.xdist_group("bgremove_axial")
@pytest.mark.parametrize("method", sorted(bgremove.METHODS))
def test_units_pass_through_and_no_mutation(method, caplog, removed_axial):
    """The field scaled by 127.7 (Hz for ppm) gives the local field scaled alike (the field in
    ppm's: removed_axial's), the same eroded mask, and the input is left as it was; and each
    method logs what it kept (its own test made the same call again)."""
    import logging

    mask, true_local, background = _scene()
    a, e1 = removed_axial(method)
    scaled = (true_local + background).astype(np.float32) * np.float32(127.7)
    copy = scaled.copy()
    with caplog.at_level(logging.INFO, logger="qsmflow"):
        b, e2 = bgremove.METHODS[method].func(scaled, mask, VS, (0, 0, 1))
    np.testing.assert_allclose(b, a * 127.7, rtol=2e-3, atol=2e-3 * np.abs(b).max())
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(scaled, copy)
    name = {"lbv": "LBV", "pdf": "PDF", "vsharp": "V-SHARP", "sharp": "SHARP", "resharp": "RESHARP",
            "ismv": "iSMV"}[method]
    kept = f"{100 * e2.sum() / mask.sum():.1f}% of the mask"
    assert f"{name}: eroded mask keeps {kept}" in caplog.text
    if method in ("lbv", "pdf", "ismv", "resharp"):
        assert f"{kept}, " in caplog.text and " iterations" in caplog.text


def test_pdf_noise_weighting_downweights_a_corrupted_region():
    mask, true_local, background = _scene()
    total = true_local + background
    x, y, z = grid_mm(SHAPE, VS)
    bad = mask & (x > 12)
    corrupted = np.where(bad, total + 0.05 * np.sin(y / 3.0), total)  # measured: 65 % plain, 48 % weighted
    noise = np.where(bad, 100.0, 1.0)
    plain, ev = bgremove.pdf(corrupted, mask, VS, (0, 0, 1))
    weighted, _ = bgremove.pdf(corrupted, mask, VS, (0, 0, 1), noise=noise)
    good = ev & ~bad
    assert metrics.nrmse(weighted, true_local, good) < metrics.nrmse(plain, true_local, good)


def test_remove_polynomial():
    mask, true_local, _ = _scene()
    x, y, z = grid_mm(SHAPE, VS)
    poly = (0.01 + 0.001 * x - 0.002 * z + 3e-5 * x * y).astype(np.float32)
    out = bgremove.remove_polynomial(np.where(mask, poly, 0), mask, VS, order=2)
    assert np.abs(out[mask]).max() < 1e-5
    cleaned = bgremove.remove_polynomial(np.where(mask, true_local + poly, 0), mask, VS, order=2)
    assert metrics.nrmse(cleaned, true_local, mask) < 40  # the local field mostly survives
    with pytest.raises(ValueError, match="order"):
        bgremove.remove_polynomial(poly, mask, VS, order=7)


def test_errors():
    mask, true_local, _ = _scene()
    with pytest.raises(ValueError, match="mask has shape"):
        vsharp(true_local, mask[:-1], VS)
    with pytest.raises(ValueError, match="threshold"):
        vsharp(true_local, mask, VS, threshold=1.5)
    with pytest.raises(ValueError, match="empty"):
        vsharp(true_local, np.zeros(SHAPE, bool), VS)
    tiny = np.zeros(SHAPE, bool)
    tiny[20:23, 20:23, 20:23] = True
    with pytest.raises(ValueError, match="thinner"):
        vsharp(true_local, tiny, VS, radii_mm=(6, 5))
    with pytest.raises(ValueError, match="b0_direction"):
        bgremove.pdf(true_local, mask, VS)
    with pytest.raises(ValueError, match="NaN"):
        bgremove.lbv(np.where(mask, np.nan, 0), mask, VS)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_remove_polynomial_takes_exactly_its_order(order):
    """Every x^i y^j z^k with i+j+k ≤ order is removed exactly, a term of the next order is not
    (its part orthogonal to the lower ones stays); the noise weights make a noisy region count less."""
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    x, y, z = (g / 20.0 for g in grid_mm(SHAPE, VS))  # a few units across the mask
    terms = [x ** a * y ** b * z ** c for a in range(order + 1) for b in range(order + 1 - a)
             for c in range(order + 1 - a - b)]
    assert len(terms) == [4, 10, 20, 35][order - 1]  # (order+1)(order+2)(order+3)/6
    rng = np.random.default_rng(order)
    poly = sum(rng.normal() * t for t in terms).astype(np.float32)
    out = bgremove.remove_polynomial(np.where(mask, poly, 0), mask, VS, order=order)
    assert np.abs(out[mask]).max() < 1e-4 * np.abs(poly[mask]).max()
    higher = (x ** (order + 1) + y * z ** order).astype(np.float32)
    left = bgremove.remove_polynomial(np.where(mask, higher, 0), mask, VS, order=order)
    assert np.std(left[mask]) > 0.01 * np.std(higher[mask])
    with pytest.raises(ValueError, match="order must be an integer from 0 to 4"):
        bgremove.remove_polynomial(poly, mask, VS, order=order + 4)


def test_remove_polynomial_weights_and_checks():
    mask = ellipsoid(SHAPE, VS, (20, 23, 26))
    x, _, _ = grid_mm(SHAPE, VS)
    field = np.where(mask, 0.002 * x, 0).astype(np.float32)
    bad = mask & (x > 10)
    corrupted = np.where(bad, field + 0.5, field)
    noise = np.where(bad, 100.0, 1.0)  # the corrupted region is declared 100x noisier
    out = bgremove.remove_polynomial(corrupted, mask, VS, order=1, noise=noise)
    assert np.abs(out[mask & ~bad]).max() < 2e-3  # the clean region's line is found
    plain = bgremove.remove_polynomial(corrupted, mask, VS, order=1)
    assert np.abs(plain[mask & ~bad]).max() > 0.05  # unweighted, the offset drags the fit
    assert bgremove.remove_polynomial(field, mask, VS, order=0)[mask].mean() == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="^local"):
        bgremove.remove_polynomial(field[0], mask, VS)
    with pytest.raises(ValueError, match="^mask"):
        bgremove.remove_polynomial(field, mask[:3], VS)


@pytest.mark.parametrize("method, kw, message", [
    ("sharp", dict(radius_mm=-1), r"^radius_mm must be positive"),
    ("sharp", dict(radius_mm=0.9), r"^radius_mm=0.9 is smaller than a voxel \(1 mm\)"),
    ("sharp", dict(threshold=-0.1), r"^threshold must be positive"),
    ("sharp", dict(threshold=1.5), r"^threshold must be between 0 and 1"),
    ("resharp", dict(lam=-1), r"^lam must be positive"),
    ("pdf", dict(margin_mm=-1), r"^margin_mm must be positive"),
    ("vsharp", dict(radii_mm=[-2.0]), r"^radii_mm must be positive"),
    ("vsharp", dict(radii_mm=[0.5]), r"^radii_mm must include a radius of at least one voxel \(1 mm\)"),
    ("lbv", dict(nan=True), r"^field holds NaN/Inf inside the mask"),
    ("pdf", dict(b0=None), r"^PDF needs b0_direction \(B0 in voxel axes\)"),
])
def test_argument_errors_name_the_argument(method, kw, message):
    kw = dict(kw)  # the parameter's dict is shared between runs of the test: do not change it
    mask = ellipsoid((24, 24, 20), (1.0, 1.0, 1.5), (9, 9, 12))
    field = np.full(mask.shape, np.nan if kw.pop("nan", False) else 0.0, np.float32)
    b0 = kw.pop("b0", (0, 0, 1))
    with pytest.raises(ValueError, match=message):
        bgremove.METHODS[method].func(field, mask, (1.0, 1.0, 1.5), b0, **kw)


def test_a_radius_of_one_voxel_is_allowed():
    mask = ellipsoid((24, 24, 20), (1.0, 1.0, 1.5), (9, 9, 12))
    field = np.zeros(mask.shape, np.float32)
    _, eroded = bgremove.METHODS["sharp"].func(field, mask, (1.0, 1.0, 1.5), (0, 0, 1), radius_mm=1.0)
    assert eroded.sum() > 0.5 * mask.sum()
    _, eroded = bgremove.METHODS["vsharp"].func(field, mask, (1.0, 1.0, 1.5), (0, 0, 1), radii_mm=[1.0, 0.5])
    assert eroded.sum() > 0.5 * mask.sum()


def test_a_negative_noise_map_is_refused():
    """A noise map is a standard deviation: negative values (a field given as the noise) were
    taken for 'no weights' silently."""
    from qsmflow._shared.weights import noise_weights

    mask = np.ones((4, 4, 4), bool)
    noise = np.full((4, 4, 4), 0.1)
    noise[1, 1, 1] = -0.2
    with pytest.raises(ValueError, match="negative values inside the mask"):
        noise_weights(noise, mask)
    np.testing.assert_allclose(noise_weights(np.abs(noise), mask)[1, 1, 1] * 0.2,
                               noise_weights(np.abs(noise), mask)[0, 0, 0] * 0.1)  # weights are 1/noise


def test_noise_weights_give_a_zero_noise_voxel_the_most_weight():
    """Weights are 1/noise, capped at 10x the median: a voxel of noise 0 gets the cap (it got
    weight 0, as if unreliable), one of unknown noise (NaN) gets 0."""
    from qsmflow._shared.weights import noise_weights

    mask = np.ones((2, 2, 2), bool)
    noise = np.full((2, 2, 2), 0.1)
    noise[0, 0, 0], noise[1, 1, 1] = 0.0, np.nan
    w = noise_weights(noise, mask)
    assert w[0, 0, 0] == pytest.approx(10 * w[0, 0, 1]) and w[1, 1, 1] == 0
    assert w[mask & np.isfinite(noise)].mean() == pytest.approx(1.0)
