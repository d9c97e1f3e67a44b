"""What the scan's noise does to the local field through the chain's own decisions: the
field-reliability peel of the region's edge, redrawn, for the χ uncertainty map."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import bgremove, fieldmap, kernels, masking

log = logging.getLogger(__name__)


def peel_field_jitter(field, mask, region, local, eroded, voxel_size, noise, *, samples: int, magnitude=None,
                      echo_times=None, sigma: float = float("nan"), r2star=None, r2star_sd=None, r2star_noise=None,
                      field_strength: float = 3.0, factor: float = masking.PEEL_NOISE_FACTOR,
                      depth: np.ndarray | None = None, seed: int = 0) -> list[np.ndarray]:
    """The change of LBV's local field when the scan's noise redraws the peel, once per sample.

    :func:`qsmflow.masking.reliable_field_mask` thresholds two noisy maps, the field noise
    and R2*, so which edge voxels it peels changes from scan to scan; LBV's boundary moves
    with it, and with it the local field in the few millimetres inside (on the 1 mm benchmark
    head at SNR 100 the local field's SD in the region's outer voxel is 0.74 ppb, of which
    the thermal noise is 0.43: holding the peel fixed over repeated scans brings it to 0.43).
    Each sample redraws the noise map as another scan would give it
    (:func:`qsmflow.fieldmap.redraw_noise`) and adds to R2* one draw of its noise
    (``r2star_sd``, 1/s per voxel), peels ``mask`` again, solves LBV on the new region from
    the present background, and returns the local field's change where both regions' LBV
    interiors overlap (zero elsewhere). A draw on top of the measured maps, which already hold
    one draw of the noise, flips a voxel at the threshold more often than a new scan would
    (at most twice as often, right at it), so the term errs on the side of more spread.

    Parameters
    ----------
    field : ndarray
        Total field (ppm) on ``mask``.
    mask : ndarray of bool
        The brain mask the peel starts from.
    region, local, eroded : ndarray
        The peeled region LBV ran on, its local field (ppm) and the interior it is given on.
    voxel_size : sequence of 3 float
        mm.
    noise : ndarray
        The field-noise map the peel used (Hz, from a field fit).
    samples : int
        The χ uncertainty map's samples. They come in antithetic pairs: each redraw's change
        ``δ`` serves two samples as ``+δ`` and ``-δ`` (each sample's own noise draw is
        independent of it, so the expected variance is the same as from two redraws, for
        half the cost: one redraw for the default two samples).
    r2star, r2star_sd, r2star_noise
        R2* (1/s), its noise SD per voxel and the typical (median) one the peel tests; without
        them R2* is not redrawn (nor used by the peel).
    magnitude, echo_times, sigma
        The echoes' magnitude (X, Y, Z, E), their times (s) and the thermal complex-noise σ
        the noise map is redrawn with (NaN: unknown, see :func:`qsmflow.fieldmap.redraw_noise`);
        without a magnitude the noise map is not redrawn.
    field_strength, factor, depth
        As :func:`qsmflow.masking.reliable_field_mask` (``depth``: ``mask``'s distance to
        the outside, mm, when already computed).
    seed : int
        Seeds the redraws.

    Returns
    -------
    list of ndarray (float32)
        ``samples`` local-field changes (ppm), in ± pairs.

    References
    ----------
    Zhou D, Liu T, Spincemaille P, Wang Y. Background field removal by solving the
    Laplacian boundary value problem. NMR Biomed 2014;27:312-319. doi:10.1002/nbm.3064
    """
    mask = np.asarray(mask, bool)
    region = np.asarray(region, bool)
    interior = np.asarray(eroded, bool)
    local = np.asarray(local, np.float32)
    field = np.asarray(field, np.float32)
    if depth is None:
        depth = masking.distance_to_outside(mask, voxel_size, volume_edge=True)
    use_r2 = r2star is not None and r2star_sd is not None and r2star_noise is not None
    background = np.where(region, field - local, np.nan).astype(np.float32)

    def redraw(seq) -> np.ndarray:
        rng = np.random.default_rng(seq)
        r2 = r2star + r2star_sd * rng.standard_normal(mask.shape, dtype=np.float32) if use_r2 else None
        noise_k = noise if magnitude is None else fieldmap.redraw_noise(noise, magnitude, echo_times, mask, sigma, rng)
        peeled = masking.reliable_field_mask(mask, noise_k, voxel_size, r2star=r2,
                                             r2star_noise=r2star_noise if use_r2 else None,
                                             field_strength=field_strength, factor=factor, depth=depth, verbose=False)
        if np.array_equal(peeled, region):
            return np.zeros(mask.shape, np.float32)
        local_k, eroded_k = bgremove.lbv(np.where(peeled, field, 0), peeled, voxel_size, background0=background)
        log.debug("peel redrawn: %d voxels changed sides", int((peeled ^ region).sum()))
        return np.where(interior & eroded_k, local_k - local, 0).astype(np.float32)

    redraws = (samples + 1) // 2
    if redraws < 1:  # no samples (the inversion refuses the count in words)
        return []
    # redraws side by side: much of one (the peel, building LBV's matrix) is one thread's work
    with ThreadPoolExecutor(max_workers=min(redraws, kernels.cores())) as pool:
        changes = list(pool.map(redraw, np.random.SeedSequence(seed).spawn(redraws)))
    return [c if k % 2 == 0 else -c for c in changes for k in range(2)][:samples]
