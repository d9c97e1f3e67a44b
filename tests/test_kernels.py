"""Physics tests of the k-space kernels: analytic sphere field, equivariance, SMV, Laplacian."""

import os
import sys

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid
from scipy.special import erfc

from conftest import grid_mm

from qsmflow import kernels

# The sphere has a smooth radial edge (erfc, 1 mm wide) so that the test measures the
# kernel, not the staircase of a binary sphere (which rings by ~4 % of χ for oblique
# B0). Measured on the grids below: exterior error ≤ 0.6 % of the peak exterior field,
# interior field ≤ 0.2 % of χ; the tolerances leave a factor ~3.
SPHERE_EXTERIOR_TOL = 0.015
SPHERE_INTERIOR_TOL = 0.005
SPHERE_CHI = 0.5


def _sphere(shape, voxel_size, radius_mm):
    vs = np.asarray(voxel_size, float)
    centre = (np.asarray(shape) - 1) / 2.0
    grids = np.meshgrid(*[(np.arange(n) - c) * d for n, c, d in zip(shape, centre, vs)], indexing="ij")
    r = np.sqrt(sum(g * g for g in grids))

    def profile(s):
        return SPHERE_CHI * 0.5 * erfc(s - radius_mm)

    return grids, r, profile


def _analytic_sphere_field(grids, r, profile, b0):
    """Field of a radially symmetric χ(s): (3cos²θ-1)/r³ · ∫_0^r χ(s) s² ds."""
    s = np.linspace(0, r.max() + 1, 20001)
    enclosed = cumulative_trapezoid(profile(s) * s * s, s, initial=0)
    b = np.asarray(b0, float) / np.linalg.norm(b0)
    rr = np.maximum(r, 1e-9)
    cos_t = sum(g * bi for g, bi in zip(grids, b)) / rr
    return (3 * cos_t**2 - 1) / rr**3 * np.interp(r, s, enclosed)


def _sphere_field_errors(shape, voxel_size, radius, field_b0, truth_b0):
    grids, r, profile = _sphere(shape, voxel_size, radius)
    chi = profile(r).astype(np.float32)
    field = kernels.forward_field(chi, voxel_size, field_b0, margin=list(shape))
    analytic = _analytic_sphere_field(grids, r, profile, truth_b0)
    shell = (r >= 1.5 * radius) & (r <= 3 * radius)
    peak = SPHERE_CHI / 3 * (1 / 1.5) ** 3 * 2
    exterior = np.abs(field[shell] - analytic[shell]).max() / peak
    interior = np.abs(field[r <= 0.6 * radius]).max() / SPHERE_CHI
    return exterior, interior


@pytest.mark.parametrize(
    "shape, voxel_size, radius, b0",
    [
        ((64, 64, 64), (1, 1, 1), 8, (0, 0, 1)),
        ((63, 64, 33), (1, 1, 2), 10, (0, 0, 1)),  # anisotropic, odd sizes
        ((64, 64, 64), (1, 1, 1), 8, (0, np.sin(np.radians(20)), np.cos(np.radians(20)))),  # oblique
        ((60, 48, 40), (0.8, 1.0, 1.2), 8, (0.3, -0.2, 0.93)),
    ],
)
def test_sphere_matches_analytic_field(shape, voxel_size, radius, b0):
    exterior, interior = _sphere_field_errors(shape, voxel_size, radius, b0, b0)
    assert exterior < SPHERE_EXTERIOR_TOL, f"exterior error {exterior:.3%}"
    assert interior < SPHERE_INTERIOR_TOL, f"interior field {interior:.3%} of chi"


def test_sphere_check_detects_wrong_b0():
    """The check is sensitive: a field computed for a B0 tilted by 10° fails it."""
    tilted = (0, np.sin(np.radians(10)), np.cos(np.radians(10)))
    exterior, _ = _sphere_field_errors((64, 64, 64), (1, 1, 1), 8, tilted, (0, 0, 1))
    assert exterior > 5 * SPHERE_EXTERIOR_TOL


def _smooth_blob(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    k = kernels.smv_kernel(shape, (1, 1, 1), 3.0)
    return kernels.irfft(kernels.rfft(x) * k, shape).astype(np.float32)


def test_axis_permutation_equivariance_anisotropic():
    shape = (30, 36, 24)
    vs = np.array([0.8, 1.0, 1.5])
    b0 = np.array([0.2, 0.3, 0.93])
    chi = _smooth_blob(shape)
    ref = kernels.forward_field(chi, vs, b0)
    for perm in [(1, 0, 2), (2, 1, 0), (1, 2, 0)]:
        out = kernels.forward_field(np.transpose(chi, perm), vs[list(perm)], b0[list(perm)])
        np.testing.assert_allclose(out, np.transpose(ref, perm), atol=1e-6 * np.abs(ref).max())


def test_dipole_kernel_range_and_axis_values():
    d = kernels.dipole_kernel((16, 16, 16), (1, 1, 1), (0, 0, 1), real=False)
    assert d[0, 0, 0] == 0
    assert d.min() >= -2 / 3 - 1e-6 and d.max() <= 1 / 3 + 1e-6
    assert d[0, 0, 3] == pytest.approx(-2 / 3)  # k parallel to B0
    assert d[3, 0, 0] == pytest.approx(1 / 3)  # k perpendicular to B0
    # real-FFT variant is the non-negative-kz half of the full kernel
    dr = kernels.dipole_kernel((16, 16, 16), (1, 1, 1), (0, 0, 1))
    np.testing.assert_allclose(dr, d[:, :, :9])


def test_dipole_kernel_uses_voxel_size():
    """On a 1x1x2 mm grid, frequency index (1,0,1) is at 45° only when z is halved."""
    d = kernels.dipole_kernel((16, 16, 16), (1, 1, 2), (0, 0, 1), real=False)
    kx, kz = 1 / 16, 1 / 32
    assert d[1, 0, 1] == pytest.approx(1 / 3 - kz**2 / (kx**2 + kz**2), rel=1e-6)


def test_smv_kernel_preserves_harmonic_function():
    shape, vs = (48, 40, 36), (1.0, 1.0, 1.5)
    x, y, z = np.meshgrid(*[(np.arange(n) - n / 2) * d for n, d in zip(shape, vs)], indexing="ij")
    harmonic = (x * x - y * y + 2 * x * z - 3 * y + 0.5).astype(np.float64)
    s = kernels.smv_kernel(shape, vs, 4.0)
    assert s.flat[0] == pytest.approx(1.0)
    out = kernels.irfft(kernels.rfft(harmonic) * s, shape)
    inner = tuple(slice(8, n - 8) for n in shape)
    np.testing.assert_allclose(out[inner], harmonic[inner], atol=1e-3)
    # and does not preserve a non-harmonic one (x^2 has Laplacian 2)
    nonharm = x * x
    out2 = kernels.irfft(kernels.rfft(nonharm) * s, shape)
    assert np.abs(out2[inner] - nonharm[inner]).min() > 1.0


def test_smv_kernel_refuses_single_voxel_sphere():
    with pytest.raises(ValueError, match="radius_mm"):
        kernels.smv_kernel((8, 8, 8), (1, 1, 1), 0.5)


def test_laplacian_kernel_of_quadratic():
    shape, vs = (32, 30, 28), (1.0, 0.5, 2.0)
    x, y, z = np.meshgrid(*[(np.arange(n) - n / 2) * d for n, d in zip(shape, vs)], indexing="ij")
    f = 3 * x * x + y * y - z * z  # Laplacian = 6 + 2 - 2 = 6
    lap = kernels.irfft(kernels.rfft(f) * kernels.laplacian_kernel(shape, vs), shape)
    inner = tuple(slice(2, n - 2) for n in shape)
    np.testing.assert_allclose(lap[inner], 6.0, atol=1e-6 * np.abs(f).max())


def test_bounding_box_and_padding_round_trip():
    mask = np.zeros((10, 12, 14), bool)
    mask[3:5, 4:9, 6] = True
    bb = kernels.bounding_box(mask, margin=2)
    assert bb == (slice(1, 7), slice(2, 11), slice(4, 9))
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    shape = kernels.fft_shape(x.shape, 5)
    assert all(s >= n + 5 for s, n in zip(shape, x.shape))
    np.testing.assert_array_equal(kernels.crop(kernels.pad(x, shape), x.shape), x)
    with pytest.raises(ValueError, match="empty"):
        kernels.bounding_box(np.zeros((3, 3, 3), bool))


def test_padded_box_cuts_pads_and_scatters_back():
    """The one crop-pad-scatter engine: a box 2 voxels around the mask, clipped at the
    volume's edge; a fast FFT grid at least 5 voxels larger (6+5 -> 12 = 2²·3, 9+5 -> 15 = 3·5,
    4+5 -> 9 = 3²: the next 5-smooth sizes, which real FFTs run fast on); results come back to the
    full volume, zero outside the box, echoes kept."""
    mask = np.zeros((10, 12, 14), bool)
    mask[3:5, 4:9, 0:2] = True
    box = kernels.PaddedBox(mask, margin=2, pad=5)
    assert box.slices == (slice(1, 7), slice(2, 11), slice(0, 4)) and box.inner == (6, 9, 4)
    assert box.shape == (12, 15, 9) and box.full_shape == (10, 12, 14)
    vol = np.arange(10 * 12 * 14 * 2, dtype=np.float64).reshape(10, 12, 14, 2)
    np.testing.assert_array_equal(box.cut(vol), vol[1:7, 2:11, 0:4])
    padded = box.put(box.cut(vol[..., 0]))
    assert padded.dtype == np.float32 and padded.shape == (12, 15, 9)
    assert not padded[6:].any() and not padded[:, 9:].any() and not padded[:, :, 4:].any()
    back = box.full(padded)
    assert back.dtype == np.float32 and back.shape == (10, 12, 14)
    np.testing.assert_array_equal(back[1:7, 2:11, 0:4], vol[1:7, 2:11, 0:4, 0])
    back[1:7, 2:11, 0:4] = 0
    assert not back.any()
    echoes = box.full(box.cut(vol), np.float32)
    assert echoes.shape == vol.shape and echoes[3, 4, 1, 1] == vol[3, 4, 1, 1] and echoes[0, 0, 0, 1] == 0
    assert kernels.PaddedBox(mask).shape == (2, 5, 2)  # no padding asked: the box itself


# ---------------------------------------------------------------- engine details, against literals

def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.delenv(kernels.THREADS_ENV, raising=False)
    assert kernels.threads() == -1 and kernels.cores() == (os.cpu_count() or 1)
    for value, expected in [("3", 3), ("1", 1), ("0", -1), ("-2", -1), ("two", -1), ("", -1)]:
        monkeypatch.setenv(kernels.THREADS_ENV, value)
        assert kernels.threads() == expected, value
    for value in ("1", "3"):  # one of them differs from this machine's core count
        monkeypatch.setenv(kernels.THREADS_ENV, value)
        assert kernels.cores() == int(value)


def test_fft_library_from_the_environment(monkeypatch):
    monkeypatch.setenv(kernels.FFT_ENV, "scipy")
    assert kernels.fft_library().startswith("scipy ") and kernels.fft_library().endswith("(pocketfft)")
    monkeypatch.setenv(kernels.FFT_ENV, "fftw3")
    with pytest.raises(ValueError, match=r"QSMFLOW_FFT='fftw3' is not an FFT library qsmflow knows: .*auto, "
                                         r"pyfftw, scipy"):
        kernels.rfft(np.zeros((4, 4, 4), np.float32))
    kernels._fft_backend.cache_clear()
    try:
        monkeypatch.setitem(sys.modules, "pyfftw", None)  # as if pyFFTW were not installed
        monkeypatch.setenv(kernels.FFT_ENV, "pyfftw")
        with pytest.raises(ValueError, match=r"QSMFLOW_FFT=pyfftw but pyFFTW is not installed: pip install "
                                             r"'qsmflow\[fftw\]', or unset QSMFLOW_FFT"):
            kernels.fft_library()
        monkeypatch.delenv(kernels.FFT_ENV)
        assert kernels.fft_library().startswith("scipy ")  # auto falls back to scipy
    finally:
        kernels._fft_backend.cache_clear()


@pytest.mark.parametrize("library", ["scipy", "pyfftw"])
def test_real_fft_of_a_plane_wave(monkeypatch, library):
    """cos(2π(2i/12 + 3j/10 + 5k/16)) on a 12 x 10 x 16 grid: its real FFT holds one non-zero
    entry, N/2 = 960 at (2, 3, 5) (the conjugate half is not stored). Repeated past the call
    from which pyFFTW measures its plans; each result is a new array, the input untouched."""
    if library == "pyfftw":
        pytest.importorskip("pyfftw")
    monkeypatch.setenv(kernels.FFT_ENV, library)
    monkeypatch.setenv(kernels.THREADS_ENV, "1")
    shape = (12, 10, 16)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    x = np.cos(2 * np.pi * (2 * i / 12 + 3 * j / 10 + 5 * k / 16)).astype(np.float32)
    x0 = x.copy()
    expected = np.zeros((12, 10, 9), np.complex64)
    expected[2, 3, 5] = 960
    results = []
    for _ in range(kernels._MEASURE_FROM_CALL + 2):
        spec = kernels.rfft(x)
        results.append((spec, kernels.irfft(spec, shape)))
    for spec, back in results:
        assert spec.dtype == np.complex64 and back.dtype == np.float32
        np.testing.assert_allclose(spec, expected, atol=2e-3)
        np.testing.assert_allclose(back, x0, atol=1e-5)
    assert np.array_equal(x, x0)
    assert not np.shares_memory(results[0][0], results[-1][0])


def test_smv_ball_holds_the_lattice_points_of_the_sphere():
    """Radius 2 mm on 1 mm voxels: 1 + 6 + 12 + 8 + 6 = 33 points with x²+y²+z² ≤ 4 (the 6 at
    distance exactly 2 included); on 1 x 1 x 2 mm voxels 1 + 4 + 4 + 4 + 2 = 15 (|z| ≤ 2 mm is one
    slice each way). The kernel's k = 0 value is 1 and its real-space ball sums to 1."""
    for vs, count in [((1.0, 1.0, 1.0), 33), ((1.0, 1.0, 2.0), 15)]:
        shape = (16, 15, 12)
        k = kernels.smv_kernel(shape, vs, 2.0, real=False)
        assert k.dtype == np.float32 and k.shape == shape
        ball = np.real(np.fft.ifftn(k))
        assert np.isclose(ball.sum(), 1.0, atol=1e-5)
        assert int(np.sum(ball > 0.75 / count)) == count
        assert np.isclose(ball.max(), 1.0 / count, rtol=1e-4)
        np.testing.assert_allclose(kernels.smv_kernel(shape, vs, 2.0), k[..., : shape[2] // 2 + 1], atol=1e-6)
    # radius 4 on a 10-voxel periodic grid: offsets run -4..5, the whole ball fits; 257 lattice points
    pts = np.arange(-4, 5)
    assert ((pts[:, None, None] ** 2 + pts[:, None] ** 2 + pts**2) <= 16).sum() == 257
    ball = np.real(np.fft.ifftn(kernels.smv_kernel((10, 10, 10), (1, 1, 1), 4.0, real=False)))
    assert int(np.sum(ball > 0.75 / 257)) == 257  # a lopsided ball would be symmetrised at half weight
    with pytest.raises(ValueError, match="radius_mm"):
        kernels.smv_kernel((8, 8, 8), (1, 1, 1), 0.5)  # one voxel: the identity
    with pytest.raises(ValueError, match="radius_mm"):
        kernels.smv_kernel((8, 8, 8), (1, 1, 1), -1.0)


def test_smv_ball_is_drawn_in_mm_on_anisotropic_voxels():
    """Radius 3 mm on 0.5 x 1 x 1.5 mm voxels: the ball reaches 6 voxels along x, 3 along y, 2 along z."""
    shape, vs = (20, 12, 9), (0.5, 1.0, 1.5)
    ball = np.real(np.fft.ifftn(kernels.smv_kernel(shape, vs, 3.0, real=False))) > 1e-6
    assert ball[6, 0, 0] and not ball[7, 0, 0] and ball[-6, 0, 0] and not ball[-7, 0, 0]
    assert ball[0, 3, 0] and not ball[0, 4, 0] and ball[0, 0, 2] and not ball[0, 0, 3] and ball[0, 0, -2]


def test_laplacian_kernel_against_the_seven_point_stencil():
    shape, vs = (6, 5, 4), (1.0, 2.0, 0.5)
    x = np.random.default_rng(0).standard_normal(shape)
    lap = sum((np.roll(x, 1, a) - 2 * x + np.roll(x, -1, a)) / d**2 for a, d in enumerate(vs))  # periodic
    for real in (True, False):
        k = kernels.laplacian_kernel(shape, vs, real=real)
        assert k.dtype == np.float32
        got = np.fft.irfftn(np.fft.rfftn(x) * k, shape, axes=(0, 1, 2)) if real else np.real(np.fft.ifftn(np.fft.fftn(x) * k))
        np.testing.assert_allclose(got, lap, atol=1e-4)
        np.testing.assert_allclose(kernels.gradient_kernel_sq(shape, vs, real=real), -k)
    with pytest.raises(ValueError, match="voxel"):
        kernels.laplacian_kernel(shape, (1.0, 1.0))


def test_pad_crop_and_bounding_box():
    x = np.arange(6.0).reshape(2, 3)
    p = kernels.pad(x, (3, 5), value=-1.0)
    assert p.shape == (3, 5) and np.all(p[:2, :3] == x) and np.all(p[2] == -1) and np.all(p[:, 3:] == -1)
    np.testing.assert_array_equal(kernels.crop(p, (2, 3)), x)
    v = np.ones((2, 3, 2))
    assert kernels.pad(v, (4, 4)).shape == (4, 4, 2)  # trailing axes are not padded
    with pytest.raises(ValueError, match="smaller shape"):
        kernels.pad(x, (1, 5))
    assert kernels.pad(x, (2, 3)).shape == (2, 3)  # nothing to add is fine
    m = np.zeros((6, 7, 8), bool)
    m[0, 2:4, 7] = True  # touches the first and the last voxel of an axis
    assert kernels.bounding_box(m) == (slice(0, 1), slice(2, 4), slice(7, 8))
    assert kernels.bounding_box(m, 2) == (slice(0, 3), slice(0, 6), slice(5, 8))
    with pytest.raises(ValueError, match="mask is empty"):
        kernels.bounding_box(np.zeros((3, 3, 3), bool))


def test_fft_shape_is_fast_and_holds_the_margin():
    # sizes of 2, 3 and 5 only, as a real FFT wants (66 = 2·3·11 would do for a complex one)
    assert kernels.fft_shape((97, 64, 50), 0) == (100, 64, 50)
    assert kernels.fft_shape((97, 64, 50), (3, 1, 0)) == (100, 72, 50)
    assert kernels.fft_shape((10, 10, 10), 2.6) == (12, 12, 12)  # whole voxels


def test_dipole_kernel_literals():
    """D(k) = 1/3 - (k·b)²/|k|² at frequencies worked out by hand: odd and even axes, B0 oblique
    to all three, the Nyquist bin of an even axis (both signs of k averaged)."""
    shape, vs = (5, 4, 6), (1.0, 2.0, 1.0)
    b = np.array([0.48, 0.6, 0.64])  # unit length

    def d_of(k):
        k = np.asarray(k, float)
        return 1 / 3 - (k @ b) ** 2 / (k @ k)

    d = kernels.dipole_kernel(shape, vs, b, real=False)
    assert d.dtype == np.float32 and d.shape == shape and d[0, 0, 0] == 0
    assert d[1, 0, 0] == pytest.approx(d_of([1 / 5, 0, 0]), abs=1e-6)  # 1/3 - 0.48²
    assert d[0, 0, 1] == pytest.approx(1 / 3 - 0.64**2, abs=1e-6)
    assert d[1, 1, 1] == pytest.approx(d_of([1 / 5, 1 / 8, 1 / 6]), abs=1e-6)  # odd x axis: cross terms kept
    assert d[4, 1, 5] == pytest.approx(d_of([-1 / 5, 1 / 8, -1 / 6]), abs=1e-6)
    k1, k2 = np.array([1 / 5, 1 / 4, 1 / 6]), np.array([1 / 5, -1 / 4, 1 / 6])
    want = 1 / 3 - 0.5 * ((k1 @ b) ** 2 + (k2 @ b) ** 2) / (k1 @ k1)
    assert d[1, 2, 1] == pytest.approx(want, abs=1e-6)
    np.testing.assert_allclose(kernels.dipole_kernel(shape, vs, b), d[..., :4], atol=1e-7)


def test_forward_field_checks_and_dtype():
    chi = np.zeros((8, 9, 10))
    chi[4, 4, 5] = 1.0
    f = kernels.forward_field(chi, (1, 1, 1), (0, 0, 1))
    assert f.dtype == np.float32 and f.shape == chi.shape and f.flags.c_contiguous
    with pytest.raises(ValueError, match="chi"):
        kernels.forward_field(np.zeros((4, 4)), (1, 1, 1), (0, 0, 1))


def test_masked_gaussian_stays_inside_the_mask():
    """Normalised smoothing: a constant stays that constant up to the mask's edge, values outside
    the mask (weight 0) do not leak in, a linear ramp is unbiased away from the edge, the width
    is in mm on anisotropic voxels, and the density is G*w (unit sum)."""
    shape, vs = (40, 36, 20), (1.0, 1.0, 2.0)
    x, y, z = grid_mm(shape, vs)
    mask = (np.abs(x) < 12) & (np.abs(y) < 10) & (np.abs(z) < 12)
    v = np.where(mask, 5.0 + 0.3 * x, 1000.0)  # huge outside: must not leak
    out, dens = kernels.masked_gaussian(v, mask, 2.0, vs)
    deep = (np.abs(x) < 5) & (np.abs(y) < 3) & (np.abs(z) < 5)
    np.testing.assert_allclose(out[deep], 5.0 + 0.3 * x[deep], atol=1e-6)
    assert np.all(out[mask] < 5.0 + 0.3 * 12 + 1e-6)
    const, _ = kernels.masked_gaussian(np.where(mask, 2.5, -7.0), mask, 2.0, vs, density=dens)
    np.testing.assert_allclose(const[mask], 2.5, atol=1e-9)
    assert dens.sum() == pytest.approx(mask.sum(), rel=1e-6)  # the mask is 3σ from the volume's edge
    assert np.all(out[dens <= 1e-6] == 0)
    # beyond the volume there is nothing (not a mirror image): a weight on the edge loses mass
    edge = np.zeros(shape, bool)
    edge[0] = True
    _, d_edge = kernels.masked_gaussian(np.ones(shape), edge, 2.0, vs)
    kept = 1.0
    for n, sig, pos in [(shape[0], 2.0, [0]), (shape[1], 2.0, range(shape[1])), (shape[2], 1.0, range(shape[2]))]:
        rad = int(3 * sig + 0.5)
        g = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sig) ** 2)
        g /= g.sum()
        kept = kept * sum(g[[o + rad for o in range(-rad, rad + 1) if 0 <= p + o < n]].sum() for p in pos)
    assert d_edge.sum() == pytest.approx(kept, rel=1e-6)  # measured 398.2 of 720
    # a single voxel of weight: the density is the Gaussian itself, σ = 2 mm along every axis
    one = np.zeros(shape)
    one[20, 18, 10] = 1.0
    _, g = kernels.masked_gaussian(one, one, 2.0, vs)
    for axis, d in enumerate(vs):
        prof = g.sum(axis=tuple(a for a in range(3) if a != axis))
        pos = (np.arange(shape[axis]) - [20, 18, 10][axis]) * d
        assert np.sqrt(np.sum(prof * pos**2) / prof.sum()) == pytest.approx(2.0, rel=0.03)


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_large_arrays_are_reused_without_page_faults():
    """After keep_freed_memory (the command line calls it), a 64 MB temporary made and freed
    again and again comes from the heap: no fresh pages (without it, hundreds of page faults
    per temporary even with transparent huge pages: 2,720 for five measured here)."""
    import resource

    from qsmflow._shared import allocator

    assert allocator.keep_freed_memory()
    for _ in range(2):  # the heap grows once
        np.ones(16 * 2**20, np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        np.ones(16 * 2**20, np.float32)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 50, faults
