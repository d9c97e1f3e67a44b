"""Slabs of element-wise work on the cores: same answers as one slab, and only where it pays."""

import threading

import numpy as np
import pytest

from qsmflow._shared import parallel
from qsmflow._shared.cg import conjugate_gradient
from qsmflow.inversion.problem import Problem

BIG = (72, 80, 96)  # 553k voxels: two slabs of more than parallel._MIN_SLAB each


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setenv(parallel.THREADS_ENV, "2")


def test_slabs_cover_the_axis_once_and_only_split_where_it_pays(two_cores, monkeypatch):
    parts = parallel.slabs(80, 80 * 7000)
    assert len(parts) == 2 and parts[0].start == 0 and parts[0].stop == parts[1].start and parts[1].stop == 80
    assert len(parallel.slabs(80, 80 * 100)) == 1  # 8,000 elements: not worth a thread
    assert parallel.slabs(80, 3 * parallel._MIN_SLAB // 2) == [slice(0, 80)]  # 1.5 slabs' worth: one
    assert len(parallel.slabs(1, 10**7)) == 1
    monkeypatch.setenv(parallel.THREADS_ENV, "1")  # a job of `qsmflow bids --jobs N`
    assert parallel.slabs(80, 80 * 7000) == [slice(0, 80)]
    monkeypatch.setenv(parallel.THREADS_ENV, "2")
    seen = []
    worker = threading.Thread(target=lambda: seen.append(parallel.slabs(80, 80 * 7000)))
    worker.start()
    worker.join()
    assert seen == [[slice(0, 80)]]  # work already running beside other work stays in its thread


def test_ufunc_axpy_and_dot_match_numpy(two_cores):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3,) + BIG).astype(np.float32)
    b = rng.standard_normal((3,) + BIG).astype(np.float32)
    row = rng.standard_normal(BIG[1:]).astype(np.float32)  # broadcast along the split axis
    out = np.empty_like(a)
    np.testing.assert_array_equal(parallel.ufunc(np.multiply, a, b, out=out, axis=1), a * b)
    np.testing.assert_array_equal(parallel.ufunc(np.subtract, a[0], row, out=out[0]), a[0] - row)
    np.testing.assert_array_equal(parallel.ufunc(np.multiply, a[1], np.float32(2), out=out[1]), 2 * a[1])
    small = a[2, :4, :5, :6]  # one slab
    np.testing.assert_array_equal(parallel.ufunc(np.add, small, b[2, :4, :5, :6], out=np.empty_like(small)),
                                  small + b[2, :4, :5, :6])
    y = b[1].copy()
    np.testing.assert_array_equal(parallel.axpy(y, np.float32(0.3), a[1]), b[1] + np.float32(0.3) * a[1])
    with pytest.raises(ValueError, match="C-contiguous"):  # a reshaped copy would lose the update
        parallel.axpy(y[:, ::2], np.float32(0.3), a[1][:, ::2])
    exact = float(np.dot(a.ravel().astype(np.float64), b.ravel().astype(np.float64)))
    assert parallel.dot(a, b) == pytest.approx(exact, rel=1e-5, abs=1e-2)


def test_gradient_and_its_adjoint_on_slabs_match_rolled_differences(two_cores):
    rng = np.random.default_rng(1)
    vs = np.array([0.8, 1.0, 1.6])
    p = Problem(np.zeros(BIG, np.float32), np.ones(BIG, bool), vs, np.array([0.0, 0.0, 1.0]),
                np.ones(BIG, np.float32), pad=0)
    x = rng.standard_normal(p.shape).astype(np.float32)
    g = p.grad(x)
    for a in range(3):  # forward difference per mm, periodic
        np.testing.assert_allclose(g[a], (np.roll(x, -1, axis=a) - x) / vs[a], rtol=1e-5, atol=1e-5)
    z = rng.standard_normal((3,) + p.shape).astype(np.float32)
    div = sum((np.roll(z[a], 1, axis=a) - z[a]) / vs[a] for a in range(3))
    np.testing.assert_allclose(p.grad_adj(z), div, rtol=1e-4, atol=1e-4)
    # float64 input: summed as float64 terms, returned as float32
    np.testing.assert_allclose(p.grad_adj(z.astype(np.float64)), div, rtol=1e-4, atol=1e-4)
    assert float(np.vdot(g.astype(np.float64), z)) == pytest.approx(float(np.vdot(x.astype(np.float64),
                                                                                  p.grad_adj(z))), rel=1e-4)


@pytest.mark.parametrize("shape", [BIG, (29, 40, 31), (5, 6, 7)])  # blocks: many, a short last one, one
def test_weighted_laplacian_in_blocks_matches_rolled_differences(two_cores, shape):
    rng = np.random.default_rng(2)
    vs = np.array([1.2, 0.9, 2.0])
    p = Problem(np.zeros(shape, np.float32), np.ones(shape, bool), vs, np.array([0.0, 0.0, 1.0]),
                np.ones(shape, np.float32), pad=0)
    x = rng.standard_normal(p.shape).astype(np.float32)
    v = rng.random((3,) + p.shape).astype(np.float32)
    # Gᵀ V G x with G the periodic forward difference per mm, written out here
    expected = sum((np.roll(g, 1, axis=a) - g) / vs[a]
                   for a, g in ((a, v[a] * (np.roll(x, -1, axis=a) - x) / vs[a]) for a in range(3)))
    np.testing.assert_allclose(p.tv_laplacian(x, v), expected, rtol=1e-4, atol=1e-4)
    # the same float32 operations as the gradient, the weights and the adjoint one after the other
    np.testing.assert_array_equal(p.tv_laplacian(x, v), p.grad_adj(p.grad(x) * v))


def test_admm_split_update_in_blocks_shrinks_the_gradient(two_cores):
    from qsmflow.inversion.solvers import _tv_split
    rng = np.random.default_rng(3)
    shape = (37, 50, 44)
    p = Problem(np.zeros(shape, np.float32), np.ones(shape, bool), np.array([1.0, 1.0, 1.5]),
                np.array([0.0, 0.0, 1.0]), np.ones(shape, np.float32), pad=0)
    chi = rng.standard_normal(p.shape).astype(np.float32)
    s = rng.standard_normal((3,) + p.shape).astype(np.float32)
    for thr in (np.float32(0.4), (0.8 * rng.random((3,) + p.shape)).astype(np.float32)):
        g = np.stack([(np.roll(chi, -1, axis=a) - chi) / p.vs[a] for a in range(3)]) + s
        z = np.sign(g) * np.maximum(np.abs(g) - thr, 0)  # soft thresholding
        s_new, u = s.copy(), np.empty_like(s)
        _tv_split(p, chi, s_new, thr, -thr, u)
        np.testing.assert_allclose(s_new, g - z, atol=1e-5)
        np.testing.assert_allclose(u, z - (g - z), atol=1e-5)


@pytest.mark.parametrize("shape", [BIG, (29, 40, 31)])  # slabs of many blocks, a short last block
def test_tv_weights_in_blocks_are_the_lagged_diffusivity_and_its_curvature(two_cores, shape):
    """MEDI's TV weights per gradient component, M² / sqrt(|M ∇χ|² + eps) and with ``newton``
    M² eps / (|M ∇χ|² + eps)^(3/2), written out here with rolled differences per mm."""
    from qsmflow.inversion.solvers import _tv_weights
    rng = np.random.default_rng(4)
    vs = np.array([1.1, 0.9, 2.0])
    p = Problem(np.zeros(shape, np.float32), np.ones(shape, bool), vs, np.array([0.0, 0.0, 1.0]),
                np.ones(shape, np.float32), pad=0)
    chi = (0.05 * rng.standard_normal(p.shape)).astype(np.float32)
    edges = rng.choice(np.array([0.0, 0.5, 1.0], np.float32), size=(3,) + p.shape)  # 0/1, and a weight
    eps = 1e-4
    mg = np.stack([edges[a] * (np.roll(chi, -1, axis=a) - chi) / vs[a] for a in range(3)]).astype(np.float64)
    lagged = edges ** 2 / np.sqrt(mg ** 2 + eps)
    curvature = edges ** 2 * eps / (mg ** 2 + eps) ** 1.5
    for newton, expected in ((False, lagged), (True, curvature)):
        v = _tv_weights(p, chi, edges, eps, newton)
        assert v.dtype == np.float32 and v.shape == (3,) + p.shape
        np.testing.assert_allclose(v, expected, rtol=2e-5, atol=1e-7)


def test_conjugate_gradient_on_slabs_solves_a_fortran_ordered_system(two_cores):
    rng = np.random.default_rng(2)
    diag = (1.0 + rng.random(BIG)).astype(np.float32)
    truth = rng.standard_normal(BIG).astype(np.float32)

    def apply(v):  # a diagonal system plus a periodic 1D Laplacian along the last axis: SPD
        return diag * v + 2 * v - np.roll(v, 1, axis=2) - np.roll(v, -1, axis=2)

    b = np.asfortranarray(apply(truth))
    for precond in (None, (1 / (diag + 2)).astype(np.float32)):
        x, it = conjugate_gradient(apply, b, 1e-6, 200, precond=precond)
        assert it < 200
        np.testing.assert_allclose(x, truth, atol=2e-4)


def test_voxelwise_fits_give_the_same_maps_in_slabs_as_in_one(monkeypatch):
    """The field fit and the log-linear R2* on 576k voxels x 5 echoes: split over two cores or
    not, the same maps to the last bit, and the analytic field and decay."""
    from qsmflow import fieldmap, relaxometry

    rng = np.random.default_rng(3)
    shape, te = (64, 60, 150), np.array([0.004, 0.008, 0.012, 0.016, 0.020])
    field_hz = rng.uniform(-40, 40, shape)
    r2 = rng.uniform(10, 40, shape)
    mag = (1000 * np.exp(-r2[..., None] * te)).astype(np.float32)
    phase = (2 * np.pi * field_hz[..., None] * te).astype(np.float32)  # unwrapped, no offset
    maps = {}
    for n in ("1", "2"):
        monkeypatch.setenv(parallel.THREADS_ENV, n)
        f, _ = fieldmap.complex_fit(phase, mag, te, intercept="zero")
        r, _ = relaxometry.loglinear_r2star(mag, te)
        maps[n] = f, r
    np.testing.assert_array_equal(maps["1"][0], maps["2"][0])
    np.testing.assert_array_equal(maps["1"][1], maps["2"][1])
    np.testing.assert_allclose(maps["2"][0], field_hz, atol=1e-3)
    np.testing.assert_allclose(maps["2"][1], r2, rtol=1e-4)


def test_lbv_in_row_blocks_removes_a_harmonic_field_as_in_one_block(monkeypatch):
    """LBV's Laplacian (a 30-voxel-radius ball: 113k unknowns, 790k non-zeros) multiplied in
    row blocks side by side: a harmonic background (x² - y² + 3z, in mm) leaves no local field,
    and the answer is the one of a single block."""
    from qsmflow.bgremove import pde

    n, vs = 64, np.array([1.0, 1.0, 1.0])
    x, y, z = np.meshgrid(*[np.arange(n) - n / 2] * 3, indexing="ij")
    ball = x * x + y * y + z * z <= 30.0**2
    field = ((x * x - y * y) / 400 + 3 * z / 20).astype(np.float32)
    local = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(parallel.THREADS_ENV, threads)
        (local[threads], interior), iters = pde.lbv(field, ball, vs, 1e-6, 2000)
        assert iters < 2000
    np.testing.assert_allclose(local["2"], local["1"], atol=1e-6)
    assert np.abs(local["2"][interior]).max() < 1e-3 * np.abs(field[ball]).max()


def test_wrap_in_slabs_lands_in_the_principal_interval_as_in_one(monkeypatch):
    from qsmflow._shared.units import wrap

    rng = np.random.default_rng(4)
    phase = np.asfortranarray(rng.uniform(-40, 40, BIG).astype(np.float32))  # F-ordered input too
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(parallel.THREADS_ENV, threads)
        out[threads] = wrap(phase)
    np.testing.assert_array_equal(out["1"], out["2"])
    w = out["2"]
    assert w.dtype == np.float32 and w.min() >= -np.pi - 1e-6 and w.max() < np.pi + 1e-6
    turns = (phase.astype(np.float64) - w) / (2 * np.pi)
    np.testing.assert_allclose(turns, np.round(turns), atol=1e-4)  # whole turns removed, nothing else


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # Python >= 3.12 on fork
def test_a_forked_child_gets_its_own_threads(two_cores):
    """A process forked after the pool started (multiprocessing's fork, mutmut, Dask) has none
    of the parent's threads: its slabs must not wait on them."""
    import multiprocessing

    x = np.ones(BIG, np.float32)
    assert parallel.dot(x, x) == x.size  # the parent's pool now exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        result = pool.apply_async(parallel.dot, (x, x))
        assert result.get(timeout=60) == x.size
