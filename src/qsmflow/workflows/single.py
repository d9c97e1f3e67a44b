"""The one-stage runs behind the stage commands (SWI, background removal, R2*, inversion,
a dual-echo field map)."""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from .. import fieldmap, masking, relaxometry, swi
from . import sanity
from .._shared import checks as _checks
from .._shared import units
from .._shared.echoes import rss
from .. import mwf as mwf_fit  # ``mwf`` is r2star_run's flag
from ..io import GreInput
from .._shared.registry import choose, references
from .chain import _Timer, collecting_warnings, inversion_and_reference, run, swi_maps
from .local_field import background_removal
from .relaxation import r2star_noise_sigma, r2star_parameters, relaxation_maps
from .options import STAGES, Options, QSMResult, resolve_bgremove, resolve_local_inversion

log = logging.getLogger(__name__)

@collecting_warnings
def swi_run(data: GreInput, options: Options | None = None, *, mask: np.ndarray | None = None,
            method: str = "clear", echo: int | None = None) -> QSMResult:
    """SWI and minIP alone (the ``qsmflow swi`` command): ``clear`` runs the chain to the field
    fit first, ``homodyne`` needs only the mask."""
    opt = options or Options()
    if method not in ("clear", "homodyne"):
        raise ValueError(f"SWI method {method!r} is unknown; choose clear or homodyne")
    res = run(data, opt, mask=mask, until="field_fit" if method == "clear" else "mask")
    with _Timer(res.timings, "swi"):
        res.swi, res.minip, res.parameters["swi"] = swi_maps(data, res.total_field_hz, res.mask, opt,
                                                             method=method, echo=echo)
    res.citations += [c for c in swi.CITATIONS[method] if c not in res.citations]
    return res


@collecting_warnings
def bgremove_run(field_ppm: np.ndarray, mask: np.ndarray, voxel_size, b0_direction, *,
                 noise: np.ndarray | None = None, options: Options | None = None) -> QSMResult:
    """Background removal alone (the ``qsmflow bgremove`` command): local field (ppm) and its mask."""
    opt = options or Options()
    res = QSMResult(mask=_checks.as_mask("mask", mask, np.shape(field_ppm)))
    method = STAGES["bgremove"][resolve_bgremove(opt.bgremove, voxel_size)]
    opt = dataclasses.replace(opt, bgremove=method.name)  # resolved (and logged) once
    with _Timer(res.timings, "bgremove"):
        res.local_field_ppm, res.eroded_mask, _ = background_removal(np.where(res.mask, field_ppm, 0), res.mask,
                                                                  voxel_size, b0_direction, noise, opt)
    res.parameters = {"methods": {"bgremove": method.name}, "bg_polynomial": opt.bg_polynomial,
                      "stage_options": opt.stage_options}
    res.citations = list(method.citations)
    return res


def _given_or_computed_mask(mask, magnitude, voxel_size, finite, method: str):
    """(brain mask, source): the given mask within the finite voxels, or one from the magnitude
    by the mask method ``method``."""
    if mask is None:
        return choose(masking.METHODS, method, "mask").func(magnitude, voxel_size, valid=finite), method
    return _checks.as_mask("mask", mask, finite.shape) & finite, "given"


@collecting_warnings
def r2star_run(data, options: Options | None = None, *, mask: np.ndarray | None = None,
               field_hz: np.ndarray | None = None, mwf_mask: np.ndarray | None = None,
               mwf: bool = False) -> QSMResult:
    """R2*, T2*, S0 and the fit residual (the ``qsmflow r2star`` command), and the myelin
    water fraction when ``mwf`` is set.

    ``data`` from :func:`qsmflow.io.load_magnitude` (echo times required), or from
    :func:`qsmflow.io.load_gre` for the MWF, which fits the complex signal; the mask comes
    from the magnitude unless given; ``field_hz`` (a field map, Hz) is needed for the
    gradient correction and helps the MWF fit demodulate; ``mwf_mask`` (default: the
    brain mask) is where the MWF is fitted, smoothing never crossing its edge.
    """
    opt = options or Options()
    if data.echo_times is None:
        raise ValueError("R2* needs the echo times; give --echo-times (seconds; echo_times= in Python) or sidecars with EchoTime")
    if data.n_echoes < 2:
        raise ValueError("R2* needs at least 2 echoes; a single echo has no decay to fit")
    if mwf and data.phase is None:
        raise ValueError("the myelin water fraction fits the complex signal; give the phase (--phase) too")
    if mwf and data.n_echoes < mwf_fit.MIN_ECHOES:
        raise ValueError(f"the myelin water fraction needs at least {mwf_fit.MIN_ECHOES} echoes (e.g. 24 echoes "
                         f"2 ms apart), these data have {data.n_echoes}; leave out --mwf")
    sanity.check_empty_echoes(data.magnitude)
    sanity.check_echo_order(data.magnitude, data.echo_times, sanity.tissue(data.magnitude))
    res = QSMResult(mask=np.zeros(data.magnitude.shape[:3], bool))
    timer = functools.partial(_Timer, res.timings)
    with timer("mask"):
        brain, source = _given_or_computed_mask(mask, data.magnitude, data.voxel_size, data.finite, opt.mask)
    res.mask = brain
    with timer("r2star"):
        sigma = fieldmap.background_sigma(data.magnitude[..., 0], brain, data.voxel_size)
        res.r2star, res.s0, res.r2star_fit = relaxation_maps(data.magnitude, data.echo_times, brain, opt,
                                                             noise_sigma=sigma, field_hz=field_hz,
                                                             slice_axis=data.slice_axis)
    res.t2star = relaxometry.t2star_from_r2star(res.r2star, brain)
    method = STAGES["r2star"][opt.r2star]
    r2_sd = relaxometry.r2star_noise(data.magnitude, data.echo_times,
                                     r2star_noise_sigma(sigma, data.echo_times, data.magnitude.shape, data.slice_axis),
                                     brain)
    res.parameters = {"methods": {"mask": source, "r2star": method.name},
                      "r2star": r2star_parameters(sigma, r2_sd, data.echo_times, opt, data.slice_axis)}
    res.citations = ([] if source == "given" else list(masking.METHODS[source].citations)) + list(
        method.citations)
    if mwf:
        fit_mask = brain if mwf_mask is None else _checks.as_mask("mwf_mask", mwf_mask, brain.shape) & data.finite
        with timer("mwf"):
            maps = mwf_fit.three_pool_mwf(data.magnitude, data.phase, data.echo_times, mask=fit_mask,
                                          voxel_size=data.voxel_size, field_hz=field_hz)
        res.mwf = maps["mwf"]
        res.parameters["methods"]["mwf"] = "three-pool complex fit, spatially regularised"
        res.parameters["mwf"] = {"mask": "brain" if mwf_mask is None else "given", "echoes": data.n_echoes,
                                 "field_map_demodulation": field_hz is not None}
        res.citations += list(references(mwf_fit.three_pool_mwf))
    return res


@collecting_warnings
def invert_run(local_ppm: np.ndarray, mask: np.ndarray, voxel_size, b0_direction, *, options: Options | None = None,
               noise_ppm=None, magnitude=None, phase_scale=None, echo_time=None, field_strength=None,
               r2star=None, r2star_noise=None, echo_span_s=None) -> QSMResult:
    """Dipole inversion and referencing alone (the ``qsmflow invert`` command).

    ``magnitude`` is 3D or per echo (4D, combined as the root sum of squares, as the chain
    does). The phase per ppm (rad/ppm) of the nonlinear data terms is ``phase_scale``, or
    else computed from ``echo_time`` (s; several are averaged, as the chain does) and
    ``field_strength`` (T) when both are given. ``r2star_noise`` (1/s, per voxel) and
    ``echo_span_s`` (s) let the CSF weights found from ``r2star`` leave out voxels whose R2*
    cannot tell CSF (see :func:`qsmflow.reference.csf_weights`; from an R2* sidecar by
    :func:`qsmflow.workflows.relaxation.r2star_reliability`).
    """
    opt = options or Options()
    opt = dataclasses.replace(opt, inversion=resolve_local_inversion(opt.inversion))
    res = QSMResult(mask=_checks.as_mask("mask", mask, np.shape(local_ppm)))
    if magnitude is not None:
        magnitude = rss(np.asarray(magnitude, np.float32))
        _checks.same_shape("magnitude", magnitude, "local field", np.asarray(local_ppm))
    if phase_scale is None and echo_time is not None and field_strength is not None:
        te = float(_checks.echo_times([float(np.mean(np.ravel(echo_time)))])[0])
        phase_scale = float(units.rad_per_ppm(_checks.field_strength(field_strength), te))
    local = np.where(res.mask, _checks.as_volume("local field", local_ppm), 0).astype(np.float32)
    vs = _checks.voxel_size(voxel_size)
    res.parameters = {"stage_options": opt.stage_options}
    if opt.inversion != "tfi":  # TFI takes the total field
        res.parameters["local_field_spread_ppm"] = sanity.check_field_is_local(local, res.mask)
    timer = functools.partial(_Timer, res.timings)
    res.chi, res.chi_sd, res.csf_mask, inv, ref, _ = inversion_and_reference(
        local, res.mask, vs, b0_direction, opt, res, timer, noise_ppm=noise_ppm, magnitude=magnitude,
        phase_scale=phase_scale, r2star=r2star, r2star_noise=r2star_noise, echo_span_s=echo_span_s)
    res.parameters["methods"] = {"inversion": inv.name, "reference": ref.name}
    res.citations = list(inv.citations) + [c for c in ref.citations if c not in inv.citations]
    return res


@collecting_warnings
def phasediff_run(data, *, mask: np.ndarray | None = None, mask_method: str = "bet") -> QSMResult:
    """B0 map (Hz) from a dual-echo phase-difference acquisition (:class:`qsmflow.io.PhaseDiffInput`).

    The mask comes from the magnitude (by ``mask_method``) unless given.
    """
    res = QSMResult(mask=np.zeros(data.phasediff.shape, bool))
    with _Timer(res.timings, "mask"):
        mask, source = _given_or_computed_mask(mask, data.magnitude, data.voxel_size, data.finite, mask_method)
    res.mask = mask
    with _Timer(res.timings, "field_fit"):
        res.total_field_hz = fieldmap.phasediff_fieldmap(data.phasediff, data.magnitude, data.delta_te,
                                                         data.voxel_size, mask=mask)
    f = res.total_field_hz[mask]
    log.info("B0 map: %.1f / %.1f / %.1f Hz (min / median / max in the mask)", f.min(), np.median(f), f.max())
    res.parameters = {"methods": {"mask": source, "field_fit": "phasediff"}, "delta_te_s": data.delta_te}
    res.citations = ([] if source == "given" else list(masking.METHODS[source].citations)) + list(
        references(fieldmap.phasediff_fieldmap))
    return res
