"""k-space grids and the convolution kernels every stage shares.

All kernels are built for real FFTs (``scipy.fft.rfftn``: the last axis is halved)
unless ``real=False``, honour anisotropic voxels (mm) and take the B0 direction as a
unit vector in voxel axes, so nothing here assumes an axial, isotropic slab.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import scipy.fft as sfft

from ._shared import checks as _checks
from ._shared.parallel import THREADS_ENV, cores, threads  # noqa: F401  (re-exported)

__all__ = [
    "bounding_box",
    "crop",
    "dipole_kernel",
    "fft_library",
    "fft_shape",
    "forward_field",
    "gradient_kernel_sq",
    "irfft",
    "kspace_coords",
    "laplacian_kernel",
    "masked_gaussian",
    "pad",
    "rfft",
    "smv_kernel",
]


#: Environment variable choosing the library of the real 3D FFTs: ``pyfftw`` or ``scipy``
#: (scipy's own pocketfft). Unset or ``auto``: pyFFTW when it is installed (``pip install
#: 'qsmflow[fftw]'``), else scipy.
FFT_ENV = "QSMFLOW_FFT"
FFT_LIBRARIES = ("auto", "pyfftw", "scipy")
# A transform of one shape, type and direction used this many times gets a measured FFTW plan
# (FFTW_MEASURE: about 1.3 s of planning for the 1 mm inversion's box, then each pair of
# transforms 25-28 % faster than pocketfft's; the inversion makes ~300 pairs). Transforms used
# fewer times keep FFTW's estimated plan, which costs no planning (5-10 % faster than pocketfft).
_MEASURE_FROM_CALL = 4
_fftw_calls: dict[tuple, int] = {}


@functools.lru_cache(maxsize=None)
def _fft_backend(choice: str):
    if choice not in FFT_LIBRARIES:
        raise ValueError(f"{FFT_ENV}={choice!r} is not an FFT library qsmflow knows: set it to one of "
                         f"{', '.join(FFT_LIBRARIES)}, or unset it")
    if choice == "scipy":
        return None
    try:
        import pyfftw
        import pyfftw.interfaces.cache
        import pyfftw.interfaces.scipy_fft as fftw
    except ImportError:
        if choice == "pyfftw":
            raise ValueError(f"{FFT_ENV}=pyfftw but pyFFTW is not installed: pip install 'qsmflow[fftw]', "
                             f"or unset {FFT_ENV}") from None
        return None
    # keep each plan and its aligned buffers while a solver loops over it; a plan unused for a
    # second is dropped with its buffers (FFTW's wisdom stays, so planning it again is quick)
    pyfftw.interfaces.cache.enable()
    pyfftw.interfaces.cache.set_keepalive_time(1.0)
    return fftw


def _backend():
    """pyFFTW's scipy-like interface, or None for scipy's own FFTs."""
    return _fft_backend(os.environ.get(FFT_ENV, "").strip().lower() or "auto")


def fft_library() -> str:
    """The library qsmflow's real 3D FFTs use, with its version: ``"pyfftw <v>"`` or ``"scipy <v> (pocketfft)"``.

    Chosen by ``$QSMFLOW_FFT`` (see :data:`FFT_ENV`).

    Raises
    ------
    ValueError
        ``$QSMFLOW_FFT`` names an unknown library, or pyFFTW when it is not installed.
    """
    backend = _backend()
    if backend is None:
        import scipy
        return f"scipy {scipy.__version__} (pocketfft)"
    import pyfftw
    return f"pyfftw {pyfftw.__version__}"


def _fftw_effort(kind: str, x: np.ndarray, shape) -> str:
    key = (kind, x.shape, x.dtype.str, tuple(shape))
    _fftw_calls[key] = n = _fftw_calls.get(key, 0) + 1
    return "FFTW_MEASURE" if n >= _MEASURE_FROM_CALL else "FFTW_ESTIMATE"


def rfft(x: np.ndarray) -> np.ndarray:
    """Real 3D FFT on all cores (or ``$QSMFLOW_THREADS``), by pyFFTW or scipy (``$QSMFLOW_FFT``)."""
    fftw = _backend()
    if fftw is None:
        return sfft.rfftn(x, workers=threads())
    return fftw.rfftn(x, workers=cores(), planner_effort=_fftw_effort("r2c", x, x.shape))


def irfft(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`rfft` back to ``shape``."""
    fftw = _backend()
    if fftw is None:
        return sfft.irfftn(x, s=shape, workers=threads())
    return fftw.irfftn(x, s=shape, workers=cores(), planner_effort=_fftw_effort("c2r", x, shape))


def fft_shape(shape, margin=0) -> tuple[int, ...]:
    """Smallest fast FFT size holding ``shape`` plus ``margin`` voxels per axis.

    ``margin`` is an int or one int per axis. The padded grid keeps periodic copies of
    the volume at least ``margin`` voxels apart.
    """
    margin = np.broadcast_to(np.asarray(margin, dtype=int), (len(shape),))
    return tuple(int(sfft.next_fast_len(int(n + m), real=True)) for n, m in zip(shape, margin))


def pad(x: np.ndarray, shape: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    """Pad ``x`` at the end of each axis up to ``shape`` (a new array)."""
    widths = [(0, s - n) for n, s in zip(x.shape, shape)]
    if any(w[1] < 0 for w in widths):
        raise ValueError(f"cannot pad shape {x.shape} to the smaller shape {shape}")
    widths += [(0, 0)] * (x.ndim - len(shape))
    return np.pad(x, widths, mode="constant", constant_values=value)


def crop(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pad`: the leading ``shape`` corner of ``x``."""
    return x[tuple(slice(0, n) for n in shape)]


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``, grown by ``margin`` voxels (clipped)."""
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        raise ValueError("mask is empty: no voxel is inside it")
    return tuple(
        slice(max(int(i.min()) - margin, 0), min(int(i.max()) + 1 + margin, n))
        for i, n in zip(idx, mask.shape)
    )


class PaddedBox:
    """A mask's bounding box, and the zero-padded grid around it that FFT kernels run on.

    The one crop → pad → scatter-back engine of qsmflow: the chain crops the volume to the
    brain's box (``margin`` voxels around it), background removal and the inversions pad
    that box to a fast FFT size with at least ``pad`` voxels of zeros (periodic copies of
    the field then stay that far apart), and every result goes back to the full volume
    with :meth:`full`.

    Parameters
    ----------
    mask : ndarray of bool
        The region; its bounding box is grown by ``margin`` voxels (clipped at the volume).
    margin : int
        Voxels kept around the mask in the box.
    pad : int or sequence of int, optional
        Zero padding per axis of the FFT grid (``shape``); None: no FFT grid (``shape`` is
        the box's).
    """

    def __init__(self, mask: np.ndarray, *, margin: int = 0, pad=None):
        self.full_shape = tuple(mask.shape)
        self.slices = bounding_box(mask, margin)
        self.inner = tuple(s.stop - s.start for s in self.slices)
        self.shape = self.inner if pad is None else fft_shape(self.inner, pad)

    def cut(self, full: np.ndarray) -> np.ndarray:
        """The box of a full-size array (a view; extra trailing axes, e.g. echoes, kept)."""
        return full[self.slices]

    def put(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """A box-sized array on the padded grid, zero in the padding (a new array)."""
        return pad(np.asarray(x, dtype), self.shape)

    def crop(self, x: np.ndarray) -> np.ndarray:
        """A padded-grid array back to the box (a view)."""
        return crop(x, self.inner)

    def full(self, x: np.ndarray, dtype=None) -> np.ndarray:
        """A box-sized or padded-grid array on the full volume, zero outside the box."""
        x = self.crop(x)
        out = np.zeros(self.full_shape + x.shape[len(self.inner):], dtype or x.dtype)
        out[self.slices] = x
        return out


def kspace_coords(shape, voxel_size, *, real: bool = True) -> tuple[np.ndarray, ...]:
    """Spatial frequencies (cycles/mm) of an FFT grid, as broadcastable arrays.

    With ``real=True`` the last axis has ``n // 2 + 1`` entries, matching ``rfftn``.
    """
    vs = _checks.voxel_size(voxel_size, len(shape))
    coords = []
    for axis, (n, d) in enumerate(zip(shape, vs)):
        if real and axis == len(shape) - 1:
            k = sfft.rfftfreq(n, d=d)
        else:
            k = sfft.fftfreq(n, d=d)
        view = [1] * len(shape)
        view[axis] = k.size
        coords.append(k.reshape(view))
    return tuple(coords)


def dipole_kernel(shape, voxel_size, b0_direction, *, real: bool = True) -> np.ndarray:
    """Unit dipole kernel in k-space, ``D(k) = 1/3 - (k·b)^2 / |k|^2``.

    Parameters
    ----------
    shape : tuple of int
        Grid shape (voxels) of the FFT.
    voxel_size : sequence of float
        Voxel size (mm) along each axis.
    b0_direction : sequence of float
        Direction of B0 in voxel axes (normalised here).
    real : bool
        Kernel for ``rfftn`` (last axis halved) when True.

    Returns
    -------
    numpy.ndarray
        float32 kernel; ``D(0) = 0`` (the mean field is not determined by χ).

    References
    ----------
    Salomir R, de Senneville BD, Moonen CT. A fast calculation method for magnetic
    field inhomogeneity due to an arbitrary distribution of bulk susceptibility.
    Concepts Magn Reson B 2003;19B:26-34. doi:10.1002/cmr.b.10083

    Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation
    of field inhomogeneity due to spatial variation of magnetic susceptibility.
    Concepts Magn Reson B 2005;25B:65-78. doi:10.1002/cmr.b.20034
    """
    b = _checks.b0_direction(b0_direction)
    # float32 coordinates: the full-size temporaries below dominate the memory of a
    # large padded grid, and single precision is ample for a ratio of squares
    ks = tuple(k.astype(np.float32) for k in kspace_coords(shape, voxel_size, real=real))
    k2 = sum(k * k for k in ks)
    # (k·b)^2, symmetrised over the sign of Nyquist components: an even-sized axis's
    # Nyquist bin stands for both +N/2 and -N/2, and only the average of the two keeps
    # the kernel even in k (real fields, and results independent of which axis the
    # real FFT halves).
    linear, nyquist_sq = np.float32(0), np.float32(0)
    for k, n, bi in zip(ks, shape, b):
        bi = np.float32(bi)
        is_nyq = (np.arange(k.size).reshape(k.shape) == n // 2) if n % 2 == 0 else False
        linear = linear + np.where(is_nyq, np.float32(0), k * bi)
        nyquist_sq = nyquist_sq + np.where(is_nyq, (k * bi) ** 2, np.float32(0))
    d = linear * linear
    d += nyquist_sq
    k2.flat[0] = 1.0
    d /= k2
    np.subtract(np.float32(1.0 / 3.0), d, out=d)
    d.flat[0] = 0.0
    return d


def _centred_offsets_mm(shape, voxel_size) -> tuple[np.ndarray, ...]:
    """Signed distance (mm) of each voxel from voxel 0 on a periodic grid."""
    out = []
    for axis, (n, d) in enumerate(zip(shape, voxel_size)):
        i = np.arange(n)
        i = np.where(i <= n // 2, i, i - n) * d
        view = [1] * len(shape)
        view[axis] = n
        out.append(i.reshape(view))
    return tuple(out)


def smv_kernel(shape, voxel_size, radius_mm: float, *, real: bool = True) -> np.ndarray:
    """k-space transform of a normalised sphere of ``radius_mm`` (spherical mean value).

    The sphere is drawn in mm, so it is an ellipsoid in voxels when voxels are
    anisotropic. Its voxels sum to 1, so the kernel is 1 at k = 0. A sphere that
    covers a single voxel is refused: it would be the identity.

    References
    ----------
    Li L, Leigh JS. High-precision mapping of the magnetic field utilizing the
    harmonic function mean value property. J Magn Reson 2001;148:442-448.
    doi:10.1006/jmre.2000.2267
    """
    vs = _checks.voxel_size(voxel_size, len(shape))
    r = _checks.positive("radius_mm", radius_mm)
    x, y, z = _centred_offsets_mm(shape, vs)
    ball = (x * x + y * y + z * z) <= r * r * (1 + 1e-9)
    count = int(ball.sum())
    if count <= 1:
        raise ValueError(f"radius_mm={r} is smaller than the voxel size {vs.tolist()}: the sphere holds one voxel")
    ball = ball.astype(np.float64) / count
    k = sfft.rfftn(ball, workers=threads()) if real else sfft.fftn(ball, workers=threads())
    return np.real(k).astype(np.float32)


def laplacian_kernel(shape, voxel_size, *, real: bool = True) -> np.ndarray:
    """k-space transform of the 7-point discrete Laplacian (1/mm²), ≤ 0 everywhere."""
    vs = _checks.voxel_size(voxel_size, len(shape))
    out = None
    for axis, (n, d) in enumerate(zip(shape, vs)):
        m = n // 2 + 1 if (real and axis == len(shape) - 1) else n
        term = (2.0 * np.cos(2.0 * np.pi * np.arange(m) / n) - 2.0) / (d * d)
        view = [1] * len(shape)
        view[axis] = m
        term = term.reshape(view)
        out = term if out is None else out + term
    return out.astype(np.float32)


def gradient_kernel_sq(shape, voxel_size, *, real: bool = True) -> np.ndarray:
    """``sum_i |G_i(k)|^2`` of forward differences per mm: equals ``-laplacian_kernel``."""
    return -laplacian_kernel(shape, voxel_size, real=real)


def forward_field(chi: np.ndarray, voxel_size, b0_direction, *, margin=None) -> np.ndarray:
    """Field perturbation (ppm of B0) produced by a susceptibility map ``chi`` (ppm).

    The volume is zero-padded by ``margin`` voxels per axis (default: half its size)
    before the FFT so that periodic copies barely interact; returns float32 on the
    input grid.

    References
    ----------
    Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of
    field inhomogeneity due to spatial variation of magnetic susceptibility. Concepts Magn
    Reson B 2005;25B:65-78. doi:10.1002/cmr.b.20034
    """
    chi = _checks.as_volume("chi", chi, dtype=None, finite=True)
    if margin is None:
        margin = [n // 2 for n in chi.shape]
    shape = fft_shape(chi.shape, margin)
    d = dipole_kernel(shape, voxel_size, b0_direction)
    field = irfft(rfft(pad(chi.astype(np.float32), shape)) * d, shape)
    return np.ascontiguousarray(crop(field, chi.shape), dtype=np.float32)


def masked_gaussian(volume: np.ndarray, weight: np.ndarray, sigma_mm: float, voxel_size, *, density=None):
    """Normalised Gaussian smoothing: ``G*(w·v) / G*w`` and the local weight ``G*w``.

    Voxels of weight 0 (outside a mask) neither contribute nor dilute, so the smoothing
    never pulls values across a mask's edge. ``G`` is a unit-sum Gaussian of ``sigma_mm``
    (per axis ``sigma_mm / voxel_size``, truncated at 3σ, zero beyond the volume). Where
    ``G*w`` is below 1e-6 the first output is 0. Real volumes only; pass the ``density``
    returned by an earlier call with the same weight to smooth several volumes.
    """
    from scipy import ndimage

    vs = _checks.voxel_size(voxel_size)
    gauss = dict(sigma=float(sigma_mm) / vs, mode="constant", truncate=3.0)
    w = np.asarray(weight, np.float64)
    _checks.same_shape("weight", w, "volume", np.asarray(volume))
    if density is None:
        density = ndimage.gaussian_filter(w, **gauss)
    smooth = ndimage.gaussian_filter(np.asarray(volume, np.float64) * w, **gauss)
    return np.where(density > 1e-6, smooth / np.maximum(density, 1e-6), 0.0), density
