"""The peel's redraw for the χ uncertainty map: what a moving LBV boundary does to the local field."""

import numpy as np
from conftest import ellipsoid, grid_mm, radial_source

from qsmflow import bgremove, masking
from qsmflow.workflows.jitter import peel_field_jitter

SHAPE, VS = (40, 44, 36), (1.0, 1.0, 1.0)
TE = np.array([0.004, 0.010, 0.016, 0.022, 0.028])


def _scene(band_noise):
    """A head-sized ellipsoid whose outer 2 mm on the +x side have the field noise
    ``band_noise`` times the rest's, each voxel ±3 %: near the peel's threshold (3x the
    median) with 3.0, so a redraw of the noise map moves the boundary there. The noise map is
    what a fit gives at an image SNR of 70 (``σ/(2π·sqrt(Σ|S|²TE²))``, raised by the model's
    failure in the band)."""
    mask = ellipsoid(SHAPE, VS, (17, 19, 15))
    depth = masking.distance_to_outside(mask, VS)
    x, _, _ = grid_mm(SHAPE, VS)
    rng = np.random.default_rng(4)
    band = mask & (depth <= 2) & (x > 6)
    magnitude = (np.ones(SHAPE + (TE.size,)) * np.exp(-20 * TE)).astype(np.float32)
    base = 0.01 / (2 * np.pi * np.sqrt(np.sum(np.exp(-40 * TE) * TE * TE)))
    noise = np.where(band, band_noise * rng.uniform(0.97, 1.03, SHAPE), 1.0).astype(np.float32) * np.float32(base)
    return mask, noise, magnitude


def _jitter(field, mask, noise, magnitude, samples=2):
    region = masking.reliable_field_mask(mask, noise, VS, verbose=False)
    local, eroded = bgremove.lbv(np.where(region, field, 0), region, VS)
    js = peel_field_jitter(field, mask, region, local, eroded, VS, noise, samples=samples, magnitude=magnitude,
                           echo_times=TE, sigma=0.01)
    return js, region, local, eroded


def test_the_peels_redraw_moves_the_local_field_only_through_the_tissues_field():
    """One redraw per two samples, as +δ and -δ. LBV removes a harmonic background whatever its region (here the closed-form field of
    an air cavity outside the head, up to 0.19 ppm inside it), so a redrawn peel changes next
    to nothing unless the field holds a tissue source: with a 0.3 ppm sphere 5 mm inside the
    edge the change near the moved boundary is ~700x larger (measured RMS within 6 mm of the
    peeled voxels 0.9e-6 against 6-8e-4 ppm); it stays there (the far side of the head
    1 % of it) and is zero outside the region's interior."""
    mask, noise, magnitude = _scene(3.0)
    x, _, _ = grid_mm(SHAPE, VS)
    _, cavity, _ = radial_source(SHAPE, VS, (30, 0, -20), 9.0, 9.4)
    background = np.where(mask, cavity, 0).astype(np.float32)
    _, source, _ = radial_source(SHAPE, VS, (12, 0, 0), 3.0, 0.3)
    js_bg, region, _, _ = _jitter(background, mask, noise, magnitude)
    js, region_src, _, eroded = _jitter((background + np.where(mask, source, 0)).astype(np.float32), mask, noise,
                                        magnitude)
    assert np.array_equal(region, region_src) and 0 < region.sum() < mask.sum()  # the band is partly peeled
    assert len(js) == 2 and all(j.dtype == np.float32 and j.shape == SHAPE for j in js)
    assert np.array_equal(js[1], -js[0])  # one redraw serves both samples, antithetic
    near = masking.dilate(mask & ~region, 6.0, VS) & eroded
    far = eroded & (x < -6)
    for j, j_bg in zip(js[:1], js_bg[:1]):
        assert not np.any(j[~eroded])
        rms_near, rms_far, rms_bg = (np.sqrt(np.mean(a[r] ** 2)) for a, r in ((j, near), (j, far), (j_bg, near)))
        assert rms_near > 1e-4 and rms_far < rms_near / 10 and rms_bg < rms_near / 100, (rms_near, rms_far, rms_bg)


def test_a_peel_far_from_its_threshold_does_not_move():
    """Field noise in the band at 1.5x the rest (half the threshold): no redraw peels
    anything, so no change of the local field."""
    mask, noise, magnitude = _scene(1.5)
    _, source, _ = radial_source(SHAPE, VS, (12, 0, 0), 3.0, 0.3)
    js, region, _, _ = _jitter(np.where(mask, source, 0).astype(np.float32), mask, noise, magnitude)
    assert np.array_equal(region, mask)
    assert all(not np.any(j) for j in js)
