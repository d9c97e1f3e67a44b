"""Plausibility checks: of a loaded acquisition before any processing (echo order, phase
that evolves, linearly with echo time), of the field map (its noise against the local field)
and of χ (its sign).

A wrong input that would give a silent wrong answer is refused (``ValueError`` with what is
wrong and the fix); one that is only suspicious is logged as a warning, which reaches the
provenance file and the QC report's warning box.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from .. import kernels, masking, reference
from .._shared import units
from .._shared.constants import CSF_MIN_ECHO_SPAN_S
from .._shared.echoes import rss

log = logging.getLogger(__name__)

__all__ = ["TYPICAL_LOCAL_FIELD_PPM", "check_chi_range", "check_chi_sign", "check_echo_order", "check_empty_echoes", "check_field_is_local", "check_field_noise",
           "check_phase_evolves", "check_phase_is_not_magnitude", "check_phase_is_linear_in_te",
           "check_r2star_span", "check_single_echo_offset", "check_chi_echo_span", "tissue"]

# Magnitude decays with echo time (R2* > 0); across the head's tissue its median may rise
# by noise alone only by a fraction of a percent. A larger rise means echoes out of order.
_RISE_TOLERANCE = 0.01
# Phase that changes by less than this (rad, median over the head) between echoes does
# not evolve: the same phase given for every echo, or not a phase image.
_STATIC_PHASE_RAD = 1e-3
# RMS of the local field over the brain (ppm): 0.0099 on the benchmark head at 1 mm, 0.0083 at
# 2x2x3 mm; in vivo local fields span about ±0.05 ppm between white matter, grey matter and nuclei.
TYPICAL_LOCAL_FIELD_PPM = 0.01
# Field noise above this share of it is warned about: on the benchmark matrix a median noise of
# 0.2x the local field (1 mm, SNR 20) still gave χ NRMSE 41 %, 0.9x (two echoes 2.3/4.6 ms at
# 2x2x3 mm, SNR 60) gave 93 % whatever the background removal.
NOISY_FIELD_FRACTION = 0.5
# The receive phase offset beyond what a smooth fit holds (rad RMS over the brain): 0.050 on the
# real Philips head of ../shared/data after a cubic (φ0 = 2φ1 - φ2, smoothed over 3 mm; 0.031
# deeper than 15 mm). One echo cannot tell it from the field, where it reads as
# offset / (2π TE): at 3 T 2.0 Hz at 4 ms (χ NRMSE 103 % on the benchmark head cut to its 4 ms
# echo, TFI; V-SHARP + MEDI+0 114 %), 0.36 Hz at 22 ms (44 %).
SINGLE_ECHO_OFFSET_RAD = 0.05
# The χ sign check looks at the voxels of highest R2* (top 2 %, each more than 4 SD of its
# R2* noise above the median) deeper than 10 mm inside the region χ was solved on (away from
# the air-tissue edges, where R2* is high for other reasons): veins and iron-rich nuclei,
# paramagnetic in every brain. With the phase's sign right, 90-91 % of them lie above the
# median χ of the rest on the 1 mm and 2 mm benchmark heads, 89 % at SNR 20 and 80 % on the
# real 3 mm Philips head (2 echoes at 2.3/4.6 ms); with it reversed, 9-11 % and 20 %. Where
# χ is mostly noise and regularisation (the simulated 2x2x3 mm head with two echoes at
# 2.3/4.6 ms and SNR 60: χ NRMSE 82 %) the share is 41 % right and 60 % reversed: no
# evidence either way. The warning sits between: below 30 %.
_SIGN_DEPTH_MM = 10.0
_SIGN_TOP_PERCENT = 2.0
_SIGN_MIN_VOXELS = 30
_SIGN_WARN_BELOW = 0.30
_SIGN_R2STAR_Z = 4.0
# Brain χ lies within about ±0.2 ppm of CSF: white matter -0.05, iron-rich nuclei up to +0.2,
# veins +0.3-0.5. Beyond ±0.5 ppm lie only large veins, haemorrhage and calcification: 0.002 %
# of the voxels on the 1 mm benchmark head (at most 0.08 % on the matrix's SNR 20, two-echo, 2D and
# 7 T rows), 0.05 % on the real Philips head; its first echo alone (2.3 ms), whose phase offset
# could not be removed, gave 27 % (8 % at an earlier stop). More than this share is warned about.
_CHI_PLAUSIBLE_PPM = 0.5
_CHI_OUTSIDE_WARN = 0.02
# A phase image whose correlation with its magnitude over the head exceeds this in every echo is
# a magnitude image.
_PHASE_LIKE_MAGNITUDE_R = 0.8
# A voxel's phase advances linearly with echo time, plus with bipolar readouts an offset that
# alternates in sign from echo to echo. Over four echoes n..n+3 the departure
# (φ_{n+3} - φ_{n+2}) - r (φ_{n+1} - φ_n), r = ΔTE_{n+2}/ΔTE_n, cancels both (the offset exactly
# for even spacing). Averaged as a unit phasor over 3x3x3 voxels (the field is smooth, the noise
# is not), its median |angle| over the head was 0.013-0.044 rad on the 3 mm benchmark head (1.5,
# 3 and 7 T, SNR 20 and 100, 5 echoes), 0.007-0.024 on the benchmark matrix's 16 heads with 4 or
# more echoes (0.4-1.6 s at 1 mm and finer), and 0.58-1.2 rad in the worst four echoes when two echoes'
# phase files were swapped (echoes 1-2, 2-3, 3-4 or 4-5). Above the first
# level a warning, above the second the run is refused. A reversal of every echo keeps the phase
# linear: the magnitude check (both reversed) or the χ sign check (phase alone) finds it.
_PHASE_LINEAR_WARN_RAD = 0.15
# T2* of cortical grey matter at 1.5 / 3 / 7 T: 84.0 / 66.0 / 33.2 ms (Peters et al. 2007);
# between them R2* is interpolated linearly in the field, outside them held at the end's.
_GM_T2STAR_S = ((1.5, 3.0, 7.0), (0.0840, 0.0660, 0.0332))
# Grey matter must decay by at least this share between the first and the last echo for R2*
# to mean something: over shorter spans an echo-to-echo intensity error of 1 % (noise, ringing
# from the scalp, readout differences between echoes) is already a tenth of its R2* or more. On
# the real Philips head (3 T, echoes 2.3 / 4.6 ms: grey matter decays by 3.4 %) the R2* map
# shows bands of a few /s along the slice and readout axes that no slice's median shows.
_R2STAR_MIN_DECAY = 0.10
_PHASE_LINEAR_REFUSE_RAD = 0.3


def tissue(magnitude: np.ndarray) -> np.ndarray:
    """Voxels of the head's tissue: the echo-combined magnitude above its Otsu threshold."""
    combined = rss(np.asarray(magnitude, np.float32))
    values = combined[combined > 0]
    if values.size < 2 or values.min() == values.max():
        return combined > 0
    return combined > threshold_otsu(values)


def check_empty_echoes(magnitude: np.ndarray, phase: np.ndarray | None = None) -> None:
    """Refuse an echo whose magnitude is zero everywhere or whose phase is one value everywhere
    (an empty or failed export: Siemens' integer phase of an empty echo reads -π), or a
    magnitude of one value in every voxel and echo, naming it; asked before the echo order,
    which such an echo would fail with the wrong cause (the files are in order)."""
    n_e = magnitude.shape[3]
    for kind, data in (("magnitude", magnitude), ("phase", phase)):
        if data is None:
            continue
        flat = data.reshape(-1, n_e)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        if kind == "magnitude" and np.all(lo == hi) and np.all(hi == hi[0]):
            raise ValueError(f"the magnitude is {float(hi[0]):g} in every voxel of every echo: it is not a magnitude "
                             "image; give the scan's magnitude images (BIDS part-mag)")
        same = np.flatnonzero((lo == hi) & ((hi == 0) if kind == "magnitude" else True))
        if same.size:
            which = ", ".join(str(int(e) + 1) for e in same)
            raise ValueError(f"the {kind} of echo {which} is {float(hi[same[0]]):.4g} in every voxel: an empty or "
                             "failed export of that echo; export it again")


# The 95th percentile of |f - median f| over the brain: a local field (the tissue's own) reads
# 0.016 ppm on the benchmark head and 0.023 ppm on the real Philips head; their total fields
# (the background of air, bone and body) 0.39 and 0.37 ppm. Above this a "local" field still
# holds the background.
LOCAL_FIELD_SPREAD_PPM = 0.15


def check_field_is_local(field_ppm: np.ndarray, mask: np.ndarray) -> float:
    """Warn when a field given as local (to the inversion alone) spreads as a total field does;
    returns the spread (ppm, the 95th percentile of its distance from the median over ``mask``)."""
    values = np.asarray(field_ppm, np.float32)[np.asarray(mask, bool)]
    if values.size == 0:
        return 0.0
    spread = float(np.percentile(np.abs(values - np.median(values)), 95))
    if spread > LOCAL_FIELD_SPREAD_PPM:
        log.warning("the local field spreads like a total field: 95 %% of the brain lies within ±%.2f ppm of its "
                    "median, where a local field (the tissue's own) stays within about ±0.03 ppm and a total "
                    "field (with the background of air, bone and body) reaches ±0.4 ppm; remove the background "
                    "first (qsmflow bgremove), or invert the total field with --inversion tfi", spread)
    return spread


def check_echo_order(magnitude: np.ndarray, echo_times, region: np.ndarray) -> None:
    """Refuse echoes whose magnitude rises with echo time over the head's tissue.

    ``echo_times`` may be None (a magnitude alone, for the brain mask: BET's surface also
    moves on the last echo, so the order matters there too).

    Raises
    ------
    ValueError
        Naming the echoes' medians and the fix (echo order, or echo times given in
        the wrong order).
    """
    if magnitude.shape[3] < 2 or not region.any():
        return
    med = np.array([np.median(magnitude[..., e][region]) for e in range(magnitude.shape[3])])
    ratio = np.median(magnitude[..., -1][region] / np.maximum(magnitude[..., 0][region], 1e-30))
    if ratio > 1 + _RISE_TOLERANCE or np.any(med[1:] > med[:-1] * (1 + 2 * _RISE_TOLERANCE)):
        shown = ", ".join(f"{m:.4g}" for m in med)
        at = (f"at TE {', '.join(f'{t * 1000:g}' for t in np.asarray(echo_times, float))} ms" if echo_times is not None
              else "in the order given")
        raise ValueError(
            f"the magnitude rises with echo time (median over the head {shown} {at}), so the echoes are out of "
            "order: give the files echo 1 first (BIDS echo-N names or sidecars with EchoNumber fix the order)"
            + (", and echo times in the same order" if echo_times is not None else ""))


def check_phase_is_not_magnitude(phase: np.ndarray, magnitude: np.ndarray, region: np.ndarray) -> None:
    """Refuse "phase" that follows the magnitude voxel by voxel in every echo: a magnitude image
    given as the phase (with a --phase-scale that maps it into [-π, π), nothing else shows it).

    A real phase image over the head is uncorrelated with its magnitude (|r| < 0.2 on the
    benchmark heads and the Philips head); above :data:`_PHASE_LIKE_MAGNITUDE_R` in every echo
    it is the magnitude.
    """
    voxels = np.flatnonzero(region)[::8]  # every 8th: a correlation needs far fewer than a head's voxels
    if voxels.size < 100:
        return
    rs = []
    n_e = phase.shape[3]
    ph, mag = phase.reshape(-1, n_e), magnitude.reshape(-1, n_e)  # views for C-ordered (x, y, z, echo) data
    for e in range(n_e):
        p, m = ph[voxels, e].astype(np.float64), mag[voxels, e].astype(np.float64)
        if p.std() == 0 or m.std() == 0:
            return
        rs.append(float(np.corrcoef(p, m)[0, 1]))
    if min(rs) > _PHASE_LIKE_MAGNITUDE_R:
        raise ValueError(f"the phase follows the magnitude voxel by voxel in every echo (correlation "
                         f"{min(rs):.2f}-{max(rs):.2f} over the head; a phase image's is near 0): a magnitude image "
                         "was given as --phase; give the phase images (BIDS part-phase)")


def check_phase_evolves(phase: np.ndarray, region: np.ndarray) -> None:
    """Warn when the phase does not change from one echo to the next over the head's tissue."""
    if phase.shape[3] < 2 or not region.any():
        return
    for e in range(phase.shape[3] - 1):
        d = units.wrap(phase[..., e + 1][region] - phase[..., e][region])
        if np.median(np.abs(d)) < _STATIC_PHASE_RAD:
            log.warning("the phase does not change between echoes %d and %d (median %.2g rad over the head): was "
                        "the same phase file given for every echo, or a magnitude as --phase? The field and χ "
                        "will be zero", e + 1, e + 2, float(np.median(np.abs(d))))
            return


def check_phase_is_linear_in_te(phase: np.ndarray, echo_times, region: np.ndarray) -> float:
    """Refuse phase images out of echo order: a voxel's phase must advance linearly with TE.

    Needs 4 echoes or more (fewer: returns NaN). For each four consecutive echoes the departure
    from linear evolution (see :data:`_PHASE_LINEAR_REFUSE_RAD`) is averaged as a unit phasor
    over 3x3x3 voxels and its median |angle| taken over the head's tissue; the largest is
    returned (rad).

    Raises
    ------
    ValueError
        When it exceeds :data:`_PHASE_LINEAR_REFUSE_RAD`: naming the echoes and the fix.
    """
    te = np.asarray(echo_times, float)
    n_e = phase.shape[3]
    if n_e < 4 or not region.any():
        return float("nan")
    box = kernels.bounding_box(region)
    reg = region[box]
    ph = phase[box]
    dte = np.diff(te)
    worst, where = 0.0, 0
    for n in range(n_e - 3):
        step = (ph[..., n + 3] - ph[..., n + 2]) - np.float32(dte[n + 2] / dte[n]) * units.wrap(ph[..., n + 1] - ph[..., n])
        # the unit phasor of the departure, averaged over 3x3x3 voxels of tissue
        re = ndimage.uniform_filter(np.where(reg, np.cos(step), 0).astype(np.float32), 3)
        im = ndimage.uniform_filter(np.where(reg, np.sin(step), 0).astype(np.float32), 3)
        level = float(np.median(np.abs(np.arctan2(im[reg], re[reg]))))
        if level > worst:
            worst, where = level, n
    echoes = f"{where + 1}-{where + 4}"
    if worst > _PHASE_LINEAR_REFUSE_RAD:
        raise ValueError(
            f"the phase does not advance linearly with echo time: over echoes {echoes} it departs from a "
            f"straight line by {worst:.2f} rad (median over the head; phase in echo order gives under 0.05), so "
            "the phase images are not in the same echo order as the echo times: give the phase files echo 1 "
            "first, in the magnitudes' order (BIDS echo-N names or sidecars with EchoNumber fix the order)")
    if worst > _PHASE_LINEAR_WARN_RAD:
        log.warning("the phase departs from linear evolution with echo time over echoes %s by %.2f rad (median "
                    "over the head; phase in echo order gives under 0.05): check that the phase files are in echo "
                    "order; unevenly spaced bipolar echoes or strong eddy currents can also do this", echoes, worst)
    return worst


def check_field_noise(noise_hz: np.ndarray, mask: np.ndarray, field_strength: float, echo_times) -> bool:
    """Warn when the field map's median noise exceeds half the typical local field of brain
    tissue; returns whether it warned."""
    if not mask.any():
        return False
    finite = noise_hz[mask][np.isfinite(noise_hz[mask])]
    if finite.size == 0:
        return False
    hz_per_ppm = units.hz_per_ppm(field_strength)
    med = float(np.median(finite))
    if med / hz_per_ppm > NOISY_FIELD_FRACTION * TYPICAL_LOCAL_FIELD_PPM:
        te = ", ".join(f"{t * 1000:g}" for t in np.asarray(echo_times))
        log.warning("the field map is too uncertain (median SD %.2f Hz = %.4f ppm, from the noise and, with few "
                    "echoes, the field model's typical error) for the local field of brain tissue "
                    "(~%.2f ppm RMS = %.2f Hz at %g T): echo times %s ms are too short (or the SNR too low) for "
                    "reliable QSM; χ will show mostly noise and regularisation. Later echoes (up to ~T2* of "
                    "grey matter, 25-40 ms at 3 T) fix this", med, med / hz_per_ppm, TYPICAL_LOCAL_FIELD_PPM,
                    TYPICAL_LOCAL_FIELD_PPM * hz_per_ppm, field_strength, te)
        return True
    return False


def check_single_echo_offset(echo_time: float, field_strength: float) -> float:
    """Warn when one echo is so short that the receive phase offset's rough part
    (:data:`SINGLE_ECHO_OFFSET_RAD`, which no one-echo method separates from the field) exceeds
    :data:`NOISY_FIELD_FRACTION` of the typical local field; returns that part (Hz)."""
    offset_hz = SINGLE_ECHO_OFFSET_RAD / (2 * np.pi * float(echo_time))
    typical_hz = TYPICAL_LOCAL_FIELD_PPM * units.hz_per_ppm(field_strength)
    if offset_hz > NOISY_FIELD_FRACTION * typical_hz:
        log.warning("one echo at %g ms is too short for QSM: the receive phase offset varies over a real head by "
                    "about %.2f rad beyond a smooth fit, which one echo reads as %.2f Hz of field, more than half the "
                    "local field of brain tissue (~%.2f Hz at %g T); χ will carry an error of the order of its "
                    "contrast. An echo of %.0f ms or later, or a second echo, fixes this", float(echo_time) * 1000, SINGLE_ECHO_OFFSET_RAD,
                    offset_hz, typical_hz, field_strength,
                    np.ceil(1000 * SINGLE_ECHO_OFFSET_RAD / (2 * np.pi * NOISY_FIELD_FRACTION * typical_hz)))
    return offset_hz


def check_r2star_span(echo_times, field_strength: float) -> float:
    """Warn when the echoes span so little time that grey matter decays by less than
    :data:`_R2STAR_MIN_DECAY` between the first and the last: R2* (and T2*) is then mostly the
    echoes' intensity errors. Returns that decay (a fraction).

    References
    ----------
    Peters AM, Brookes MJ, Hoogenraad FG, Gowland PA, Francis ST, Morris PG, Bowtell R. T2*
    measurements in human brain at 1.5, 3 and 7 T. Magn Reson Imaging 2007;25:748-753.
    doi:10.1016/j.mri.2007.02.014
    """
    te = np.asarray(echo_times, float)
    span = float(te.max() - te.min())
    r2_gm = float(np.interp(float(field_strength), _GM_T2STAR_S[0], [1 / t for t in _GM_T2STAR_S[1]]))
    decay = 1.0 - float(np.exp(-r2_gm * span))
    if decay < _R2STAR_MIN_DECAY:
        log.warning("R2*/T2* are unreliable: the echoes span only %.3g ms, over which grey matter (R2* ~%.0f/s at %g T) "
                    "decays by %.1f %%, so each 1 %% of echo-to-echo intensity error (noise, ringing, readout "
                    "differences) moves R2* by %.1f/s; read the R2* and T2* maps as qualitative. Echoes spanning "
                    "%.0f ms or more fix this", 1000 * span, r2_gm, field_strength, 100 * decay, 0.01 / span if span else
                    float("inf"), np.ceil(-1000 * np.log(1 - _R2STAR_MIN_DECAY) / r2_gm))
    return decay


def check_chi_echo_span(echo_times) -> bool:
    """Warn that χ from echoes spanning less than :data:`CSF_MIN_ECHO_SPAN_S` (10 ms; the rule of
    :func:`qsmflow.reference.echo_span_too_short`, by which the chain also gives such echoes
    total field inversion and no CSF term) is less accurate than from a longer echo train;
    returns whether it warned.

    At echo times of a few ms a voxel's phase is still the sum of its neighbours' signals as the
    k-space cut-off's point-spread function mixes them, bright tissue nearby (scalp, fat, marrow,
    veins) included, and that sum's phase does not grow linearly with the echo time; later echoes
    average the faster-precessing neighbours out. The field map's residuals hold little of this
    error, so the field-noise warning (:func:`check_field_noise`) need not fire (the chain asks
    this one only when that one did not: both name the echoes and the fix). On the benchmark
    matrix's 1.5 mm head (stop 62) the default chain gave χ NRMSE 49.0 % with three echoes at
    2-8 ms against 35.8 % with five at 4-28 ms; from the true field the same inversion gave
    38.1 %: the field, not the inversion, loses most of it. One echo has its own warning.
    """
    te = np.asarray(echo_times, float)
    if te.size < 2:
        return False
    span = float(te.max() - te.min())
    if not reference.echo_span_too_short(span):
        return False
    log.warning("χ from echoes spanning only %.3g ms (%s ms) is less accurate than from a longer echo train: at such "
                "short echo times a voxel's phase still holds the ringing of bright tissue nearby (scalp, fat, "
                "marrow, veins), which later echoes average out (on the benchmark head"
                " with 1.5 mm voxels χ's error was 49 %% with echoes at 2-8 ms against 36 %% at 4-28 ms); "
                "compare χ between regions with care. Echoes spanning %.0f ms or more fix this", 1000 * span,
                ", ".join(f"{1000 * t:g}" for t in te), 1000 * CSF_MIN_ECHO_SPAN_S)
    return True


def check_chi_sign(chi: np.ndarray, r2star: np.ndarray, region: np.ndarray, voxel_size, *,
                   r2star_noise: np.ndarray | None = None, phase_sign: int = 1) -> float | None:
    """Warn when χ is low where R2* is highest deep in the brain: the phase's sign is reversed.

    Veins and iron-rich nuclei (pallidum, putamen, red nucleus, substantia nigra, dentate)
    have the highest R2* of the brain away from air and are paramagnetic, so their χ lies
    above that of the rest of the brain. Returns the share of the highest-R2* voxels whose
    χ is above the median χ of the other voxels (None when too few voxels to tell); below
    0.3 the scanner's phase most likely runs the other way (χ sign flipped everywhere), and
    the warning names the other ``phase_sign`` than the one used. With ``r2star_noise`` (the
    SD of R2* from noise per voxel, 1/s, e.g. :func:`qsmflow.relaxometry.r2star_noise_map`)
    only voxels more than 4 SD above the median R2* count, so that noise does not pick them
    (with two echoes at 2.3/4.6 ms and SNR 60 the top 2 % by R2* alone are white matter with
    noisy R2*, and white matter is diamagnetic). Voxels of unknown (NaN) SD do not count.
    """
    region = region & np.isfinite(chi) & np.isfinite(r2star)
    deep = region & (masking.distance_to_outside(region, voxel_size) > _SIGN_DEPTH_MM)
    if deep.sum() < _SIGN_MIN_VOXELS * 100 / _SIGN_TOP_PERCENT:
        return None
    r2 = r2star[deep]
    n_top = int(np.ceil(r2.size * _SIGN_TOP_PERCENT / 100))
    rank = r2.copy()
    sd = None if r2star_noise is None else np.broadcast_to(np.asarray(r2star_noise, np.float32), r2star.shape)[deep]
    if sd is not None and np.isfinite(sd).any():
        significant = (r2 - np.median(r2)) > _SIGN_R2STAR_Z * sd  # False where the SD is NaN
        n_top = min(n_top, int(significant.sum()))
        if n_top < _SIGN_MIN_VOXELS:
            log.info("χ sign check skipped: R2* is too noisy (median SD %.3g /s) to find the veins and iron-rich "
                     "nuclei", float(np.nanmedian(sd)))
            return None
        rank[~significant] = -np.inf
    top = np.zeros(r2.size, bool)
    top[np.argpartition(rank, r2.size - n_top)[r2.size - n_top:]] = True  # by rank: ties cannot empty it
    values = chi[deep]
    share = float(np.mean(values[top] > np.median(values[~top])))
    log.info("χ sign check: %.0f %% of the %d voxels of highest R2* (>= %.3g /s) deeper than %g mm are above the "
             "other voxels' median χ (veins and iron-rich nuclei are paramagnetic)", 100 * share, n_top,
             float(r2[top].min()), _SIGN_DEPTH_MM)
    if share < _SIGN_WARN_BELOW:
        log.warning("χ looks sign-flipped: only %.0f %% of the voxels of highest R2* deep in the brain (veins, "
                    "iron-rich nuclei, which are paramagnetic) have χ above the rest of the brain; this scanner's "
                    "phase probably runs the other way. Check that veins are bright in the χ map, and if they are "
                    "dark rerun with --phase-sign %d (or, if the echoes were given as separate files, check that the "
                    "phase files are in the same echo order as the magnitudes)", 100 * share, -phase_sign)
    return share


def check_chi_range(chi: np.ndarray, region: np.ndarray) -> float:
    """Warn when much of χ lies beyond what brain tissue holds; returns the share of ``region``
    beyond ±:data:`_CHI_PLAUSIBLE_PPM` ppm.

    More than :data:`_CHI_OUTSIDE_WARN` of the brain there means the field was not what the
    chain took it to be (phase scaling, echo times, B0, a phase offset left in the field, the
    mask running into bone or air), unless the brain holds a large haemorrhage or calcification.
    """
    values = chi[region & np.isfinite(chi)]
    if not values.size:
        return 0.0
    share = float(np.mean(np.abs(values) > _CHI_PLAUSIBLE_PPM))
    if share > _CHI_OUTSIDE_WARN:
        lo, hi = np.percentile(values, [1, 99])
        log.warning("χ looks implausible: %.1f %% of the brain is beyond ±%g ppm (1st-99th percentile %+.2f to %+.2f "
                    "ppm), where brain tissue lies within about ±0.2 ppm. Unless the brain holds a large haemorrhage or "
                    "calcification, check the phase scaling, the echo times and B0, and the mask; a single echo keeps "
                    "its phase offset in the field", 100 * share, _CHI_PLAUSIBLE_PPM, lo, hi)
    return share
