"""Physics tests of the k-space kernels: analytic sphere field, equivariance, SMV, Laplacian."""

import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid
from scipy.special import erfc

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
