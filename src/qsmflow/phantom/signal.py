"""Acquisition side of the numerical head phantom (private helper of :mod:`qsmflow.phantom`).

Voxel-centre coordinates of a grid, the transfer between the fine simulation grid and the
output grid (block averages for the truth maps, central k-space for the complex signal),
the smooth random phase offset φ0, phase wrapping and the voxel → world affine.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .. import kernels
from .._shared import units
from .model import FAT_PEAK_AMPLITUDES, FAT_PEAKS_PPM
from .procedural import TensorNoise

F32 = np.float32


def voxel_axes(shape, vs):
    """Physical coordinates (mm from the FOV centre) of the voxel centres along each axis."""
    return tuple((np.arange(n) - (n - 1) / 2.0) * d for n, d in zip(shape, vs))


class PhaseOffset:
    """Smooth random φ0: a 3rd-order polynomial spanning 2-5 rad over the FOV, a constant, and
    a smooth random field of 0.04-0.07 rad RMS (:class:`~qsmflow.phantom.procedural.TensorNoise`,
    wavelength 60 mm).

    The last term is what a polynomial does not hold. On the real Philips head of
    ``../shared/data`` (φ0 = 2φ1 - φ2 at TE 2.3 / 4.6 ms, smoothed over 3 mm) a cubic over the
    brain left 0.050 rad RMS (0.031 rad deeper than 15 mm), order 4 / 6 left 0.78 / 0.58 of
    that. Over a brain-sized ellipsoid (8 draws) this field gives 0.87 / 0.53 (wavelength 55 mm:
    0.87 / 0.60, 67 mm: 0.84 / 0.46; white noise smoothed by a 15 mm Gaussian, the stop-48
    phantom's: 0.82 / 0.48), and a cubic holds 0.71 of its SD.
    """

    _WAVELENGTH_MM = 60.0

    def __init__(self, rng, fov):
        self.half = np.asarray(fov, float) / 2
        self.powers = [(i, j, k) for i in range(4) for j in range(4) for k in range(4) if 0 < i + j + k <= 3]
        coef = rng.normal(0, 1, len(self.powers)) / np.array([1.0 + (i + j + k) for i, j, k in self.powers])
        t = np.linspace(-0.8, 0.8, 9)
        g = np.meshgrid(t, t, t, indexing="ij")
        vals = sum(c * g[0] ** i * g[1] ** j * g[2] ** k for c, (i, j, k) in zip(coef, self.powers))
        self.coef = coef * rng.uniform(2.0, 5.0) / np.ptp(vals)
        self.offset = rng.uniform(-np.pi, np.pi)
        self.rough = TensorNoise(rng, self._WAVELENGTH_MM, period=2 * float(self.half.max()) + 64.0)
        self.rough_rms = rng.uniform(0.04, 0.07)

    def __call__(self, axes):
        u = [np.asarray(a) / h for a, h in zip(axes, self.half)]
        out = np.full(tuple(a.size for a in axes), F32(self.offset), F32)
        for c, (i, j, k) in zip(self.coef, self.powers):
            ux, uy, uz = ((v**p).astype(F32) for v, p in zip(u, (i, j, k)))
            out += F32(c) * ux[:, None, None] * uy[None, :, None] * uz[None, None, :]
        out += F32(self.rough_rms) * self.rough.grid(*axes)
        return out


def fat_modulation(t: float, hz_per_ppm: float) -> complex:
    """Fat's signal at time ``t`` (s) relative to water's: its six peaks summed,
    ``Σ a_p exp(i 2π δ_p γB0 t)`` (:data:`~qsmflow.phantom.model.FAT_PEAKS_PPM`)."""
    return complex(sum(a * np.exp(2j * np.pi * d * hz_per_ppm * t) for d, a in zip(FAT_PEAKS_PPM, FAT_PEAK_AMPLITUDES)))


def block_mean(a, f):
    """Average of ``f``×``f``×``f`` blocks (partial volume of the fine grid)."""
    if f == 1:
        return np.asarray(a, F32).copy()
    x, y, z = (n // f for n in a.shape)
    return a.reshape(x, f, y, f, z, f).mean(axis=(1, 3, 5), dtype=np.float64).astype(F32)


def upsample(a, f):
    """Repeat each voxel ``f`` times along every axis (inverse of the block structure)."""
    if f == 1:
        return a.copy()
    x, y, z = a.shape
    return np.broadcast_to(a[:, None, :, None, :, None], (x, f, y, f, z, f)).reshape(x * f, y * f, z * f)


def kspace_downsample(sig, f, slice_axis=None):
    """Keep the central k-space of a fine complex image: the output-grid image a scanner samples.

    One axis at a time (FFT, keep the lowest ``n/f`` frequencies, inverse FFT), with a
    linear phase that centres each output voxel on its block of fine voxels. Along
    ``slice_axis`` (a 2D multi-slice acquisition) the slice is excited, not encoded: its
    profile is a box, so that axis is a plain block average of the complex signal.
    """
    if f == 1:
        return sig.astype(np.complex64)
    out = sig
    for ax in range(3):
        n_in = out.shape[ax]
        n_out = n_in // f
        if ax == slice_axis:
            out = np.moveaxis(np.moveaxis(out, ax, 0).reshape((n_out, f) + tuple(np.delete(out.shape, ax)))
                              .mean(axis=1), 0, ax)
            continue
        k = sfft.fft(out, axis=ax, workers=kernels.threads())
        keep = np.r_[0 : (n_out + 1) // 2, n_in - n_out // 2 : n_in]
        k = np.take(k, keep, axis=ax)
        freq = np.r_[0 : (n_out + 1) // 2, -(n_out // 2) : 0]
        shift = np.exp(2j * np.pi * freq * ((f - 1) / 2.0) / n_in).astype(np.complex64) / F32(f)
        view = [1, 1, 1]
        view[ax] = -1
        k *= shift.reshape(view)
        out = sfft.ifft(k, axis=ax, workers=kernels.threads())
        del k
    return out.astype(np.complex64)


def wrap(phase):
    """Wrap to [-π, π) in float32 (the largest float32 below π is the upper bound)."""
    w = units.wrap(phase.astype(np.float64))
    hi = np.nextafter(F32(np.pi), F32(0))
    return np.clip(w.astype(F32), -hi, hi)


def affine(shape, vs, b0_dir):
    """Voxel → world affine whose rotation maps ``b0_dir`` to world z (smallest rotation)."""
    b = np.asarray(b0_dir, float)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(b, z), float(b @ z)
    s = np.linalg.norm(v)
    if s < 1e-12:
        rot = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rot = np.eye(3) + vx + vx @ vx * ((1 - c) / s**2)
    aff = np.eye(4)
    aff[:3, :3] = rot * vs[None, :]
    aff[:3, 3] = -aff[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return aff


# Receive array of the simulated head coil: loops on an ellipsoidal helmet around the head
# (template mm; ~15 mm off the scalp), covering the cranium and the occiput down to the
# upper neck, as a 32-channel head coil does. Loop radius as in such arrays (diameters 6-9 cm).
_HELMET_CENTRE = np.array([0.0, -14.0, 4.0])
_HELMET_SEMI_AXES = np.array([92.0, 108.0, 94.0])
_HELMET_LOWEST_MM = -75.0
_LOOP_RADIUS_MM = 37.0


def receive_profile(axes, n_coils, *, fov_centre):
    """Root-sum-of-squares receive sensitivity of ``n_coils`` loops around the head.

    Each loop's sensitivity falls off with the distance ``d`` from its centre as the
    on-axis field of a circular loop, ``a³ / (a² + d²)^(3/2)`` (Biot-Savart; radius
    ``a``); coil-combined magnitude carries the root-sum-of-squares of the channels
    (Roemer et al. 1990): bright under the coils, about half as bright in the centre of
    the brain, and falling off below the coil (neck). ``axes`` are physical mm from the
    FOV centre, ``fov_centre`` the template position of the FOV centre. Returns float32
    with maximum 1.

    References
    ----------
    Roemer PB, Edelstein WA, Hayes CE, Souza SP, Mueller OM. The NMR phased array. Magn
    Reson Med 1990;16:192-225. doi:10.1002/mrm.1910160203
    """
    # Fibonacci points on the unit sphere, kept above the helmet's lower edge
    n_try = 4 * n_coils
    pts = []
    k = np.arange(n_try) + 0.5
    polar, azim = np.arccos(1 - 2 * k / n_try), np.pi * (1 + 5**0.5) * k
    unit = np.stack([np.sin(polar) * np.cos(azim), np.sin(polar) * np.sin(azim), np.cos(polar)], 1)
    centres = _HELMET_CENTRE + unit * _HELMET_SEMI_AXES
    centres = centres[centres[:, 2] >= _HELMET_LOWEST_MM]
    # take n_coils of them spread evenly over the helmet
    idx = np.round(np.linspace(0, len(centres) - 1, n_coils)).astype(int)
    pts = centres[idx] - np.asarray(fov_centre, float)
    g = [np.asarray(a, F32) for a in axes]
    a2 = F32(_LOOP_RADIUS_MM**2)
    total = np.zeros(tuple(x.size for x in g), F32)
    for c in pts:
        d2 = ((g[0] - F32(c[0])) ** 2)[:, None, None] + ((g[1] - F32(c[1])) ** 2)[None, :, None] \
            + ((g[2] - F32(c[2])) ** 2)[None, None, :]
        s = (a2 / (a2 + d2)) ** F32(1.5)
        total += s * s
    prof = np.sqrt(total)
    return prof / prof.max()
