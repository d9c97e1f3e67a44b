"""R2*, S0 and the fit residual as the chain and ``qsmflow r2star`` make them, and what an R2*
map's sidecar records for a later ``qsmflow invert --r2star``."""

from __future__ import annotations

import logging

import numpy as np

from .. import relaxometry
from .._shared.constants import R2STAR_RINGING_SPAN_S, R2STAR_RINGING_TAPER
from .._shared.registry import choose
from .options import STAGES, Options

log = logging.getLogger(__name__)


def relaxation_maps(mag, te, mask, opt: Options, *, noise_sigma=None, field_hz=None, slice_axis=None):
    """R2* (1/s), S0 and the relative fit residual by ``opt.r2star``; with
    ``opt.r2star_gradient_correction`` the macroscopic dephasing of ``field_hz`` is divided out
    (a 2D acquisition's slices along ``slice_axis``; None for 3D). Echoes spanning less than
    ``R2STAR_RINGING_SPAN_S`` are fitted to magnitudes whose k-space ringing is damped
    (:func:`qsmflow.relaxometry.suppress_ringing`, not along ``slice_axis``)."""
    method = choose(STAGES["r2star"], opt.r2star, "r2star")
    if ringing_filtered(te):
        # over so short a span the k-space cut-off's ringing, which differs between echoes, is
        # much of the decay: fitted to tapered magnitudes (relaxometry.suppress_ringing)
        mag = relaxometry.suppress_ringing(mag, slice_axis=slice_axis)
        log.info("R2*: echoes span %.3g ms (< %.0f ms), fitted to magnitudes with a Tukey k-space taper of %.1f "
                 "to damp ringing", 1e3 * float(np.ptp(te)), 1e3 * R2STAR_RINGING_SPAN_S, R2STAR_RINGING_TAPER)
    dephasing = None
    if opt.r2star_gradient_correction:
        if field_hz is None:
            raise ValueError("the R2* gradient correction needs a field map (Hz)")
        dephasing = relaxometry.gradient_dephasing(field_hz, te, mask, slice_axis=slice_axis)
    r2, s0 = method.func(mag, te, mask=mask, noise_sigma=noise_sigma, dephasing=dephasing,
                         **opt.stage_options.get("r2star", {}))
    fit_mag = mag if dephasing is None else mag / np.maximum(dephasing, 1e-3)
    return r2, s0, relaxometry.fit_residual(fit_mag, te, r2, s0, mask & (r2 > 0))


def ringing_filtered(echo_times) -> bool:
    """Whether R2* from these echo times (s) is fitted to ringing-damped magnitudes: two or more
    echoes spanning less than ``R2STAR_RINGING_SPAN_S``."""
    te = np.ravel(np.asarray(echo_times, float))
    return te.size >= 2 and float(np.ptp(te)) < R2STAR_RINGING_SPAN_S


def r2star_noise_sigma(sigma: float, echo_times, shape, slice_axis=None) -> float:
    """The image noise σ an R2* noise map of :func:`relaxation_maps`' fit takes: σ, or where the
    magnitudes were tapered (:func:`ringing_filtered`) σ times the taper's noise factor."""
    if not ringing_filtered(echo_times):
        return sigma
    return sigma * relaxometry.ringing_noise_factor(shape, slice_axis=slice_axis)


def r2star_parameters(sigma: float, r2star_sd: float, echo_times, opt: Options, slice_axis) -> dict:
    """What an R2* map's sidecar records (``Parameters.r2star``): the image noise σ, the median
    R2* noise SD in the mask (1/s) and the echo times (s), which are what a later
    ``qsmflow invert --r2star`` needs to decide which voxels' R2* can tell CSF (see
    :func:`r2star_reliability`), and how the map was fitted."""
    sd = float(r2star_sd)
    return {"noise_sigma": sigma, "noise_sd_per_s": round(sd, 4) if np.isfinite(sd) else None,
            "echo_times_s": [float(t) for t in np.ravel(echo_times)],
            "gradient_correction": opt.r2star_gradient_correction, "slice_axis": slice_axis,
            "ringing_taper": R2STAR_RINGING_TAPER if ringing_filtered(echo_times) else None}


def r2star_reliability(sidecar: dict, shape) -> tuple[np.ndarray | None, float | None]:
    """(R2* noise SD map, echo span in s) for the CSF weights, from an R2* map's sidecar written by
    qsmflow (:func:`r2star_parameters`): the recorded median SD everywhere (CSF, being
    bright, is less noisy than the median voxel, so this gates more CSF out than the
    per-voxel map of a whole run would) and the span of the echo times. (None, None) with a
    warning when the sidecar does not hold them (an R2* map from another tool)."""
    params = ((sidecar or {}).get("Parameters") or {}).get("r2star") or {}
    te, sd = params.get("echo_times_s"), params.get("noise_sd_per_s")
    if not te or sd is None:
        log.warning("the R2* map's sidecar does not give its echo times and R2* noise (it was not made by "
                    "qsmflow r2star or run), so the CSF weights cannot leave out voxels whose R2* is too noisy "
                    "to tell CSF from tissue; check the _label-CSF_probseg output, or pass --reference mean")
        return None, None
    return np.full(tuple(shape), float(sd), np.float32), float(np.ptp(np.asarray(te, float)))
