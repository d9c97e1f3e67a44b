"""The QSM and R2* chain: ``run()`` composes the stages on a loaded acquisition."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import NamedTuple

import numpy as np

from .. import (
    bgremove,
    fieldmap,
    inversion,
    io,
    kernels,
    masking,
    phaseoffset,
    reference,
    relaxometry,
    swi,
)
from .._shared import checks as _checks
from .._shared import echoes, units
from .._shared.constants import (
    CSF_MIN_ECHO_SPAN_S,
    CSF_MIN_VOLUME_ML,
    CSF_R2STAR_ZERO_PER_S,
)
from .._shared.registry import Method, choose, references
from ..io import GreInput
from . import jitter, sanity
from .local_field import background_removal, field_region, lbv_refinement
from .relaxation import r2star_noise_sigma, r2star_parameters, relaxation_maps
from .options import (
    STAGES,
    UNTIL,
    Options,
    QSMResult,
    resolve_bgremove,
    resolve_inversion,
)

log = logging.getLogger(__name__)

# Voxels kept around the mask when the volume is cropped for the computation.
_CROP_MARGIN = 8



class _Timer:
    def __init__(self, timings: dict, stage: str, progress=None):
        self.timings, self.stage, self.progress = timings, stage, progress

    def __enter__(self):
        log.info("%s ...", self.stage)
        if self.progress:
            self.progress(self.stage, "start")
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t0
        self.timings[self.stage] = round(dt, 3)
        if exc[0] is None:
            log.info("%s done in %.1f s", self.stage, dt)
            if self.progress:
                self.progress(self.stage, "end")


def collecting_warnings(func):
    """Decorate a run returning a :class:`QSMResult`: the warnings its stages log join
    ``result.warnings`` (for the provenance file and the report), once each."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        collector = _WarningCollector()
        logging.getLogger("qsmflow").addHandler(collector)
        try:
            result = func(*args, **kwargs)
        finally:
            logging.getLogger("qsmflow").removeHandler(collector)
        result.warnings.extend(w for w in collector.messages if w not in result.warnings)
        return result

    return wrapper


@collecting_warnings
def run(data: GreInput, options: Options | None = None, *, mask: np.ndarray | None = None,
        progress=None, until: str | None = None) -> QSMResult:
    """Run the chain on a loaded acquisition.

    Parameters
    ----------
    data : GreInput
        From :func:`qsmflow.io.load_gre`.
    options : Options
        Methods and their options (defaults: the package's default chain).
    mask : ndarray of bool, optional
        Brain mask to use instead of computing one.
    progress : callable, optional
        Called as ``progress(stage, "start" | "end")`` around each stage.
    until : {"mask", "unwrap", "field_fit"}, optional
        Stop after this stage (the stage commands); default: the whole chain.

    Returns
    -------
    QSMResult
    """
    if until is not None and until not in UNTIL:
        raise ValueError(f"until must be one of {', '.join(UNTIL)}, got {until!r}")
    return _run(data, options or Options(), mask, progress, until)


class _WarningCollector(logging.Handler):
    """Keeps the warnings the stages log, for the provenance file."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _run(data: GreInput, opt: Options, mask, progress, until) -> QSMResult:
    shape = data.magnitude.shape[:3]
    vs, te = data.voxel_size, data.echo_times
    so = opt.stage_options
    used = _methods(opt)
    res = QSMResult(mask=np.zeros(shape, bool), warnings=list(data.warnings))
    timer = functools.partial(_Timer, res.timings, progress=progress)
    res.parameters = {"stage_options": so, "phase_sign": opt.phase_sign}
    brain, mask_source = _brain_mask(data, opt, used, mask, timer, until)
    res.mask = brain
    if until is None:
        short = data.n_echoes > 1 and reference.echo_span_too_short(float(np.ptp(data.echo_times)))
        opt = _late_methods(opt, vs, used, brain, single_echo=data.n_echoes == 1, short_span=short)
    done = ["mask"]
    if until == "mask":
        return _finish(res, used, done, mask_source)

    if data.n_echoes == 1:
        if until is None:  # the whole chain: χ and R2* (the stage commands and SWI make neither)
            log.warning("single-echo data: the field comes from one echo, whose phase also holds the receive "
                        "phase offset (a second echo is needed to remove it), so χ carries a smooth error from it; "
                        "no R2*/T2* map is made")
            sanity.check_single_echo_offset(te[0], data.field_strength)
        else:
            log.info("single-echo data: the field comes from one echo, whose phase also holds the receive phase "
                     "offset (a second echo is needed to remove it), so the field carries a smooth error from it")
        used["phase_offset"] = phaseoffset.METHODS["none"]
    else:
        sanity.check_r2star_span(te, data.field_strength)
    box = kernels.PaddedBox(brain, margin=_CROP_MARGIN)
    res.parameters["crop_box"] = [[s.start, s.stop] for s in box.slices]
    m = box.cut(brain)
    mag = box.cut(data.magnitude)
    pha = box.cut(data.phase) * np.float32(opt.phase_sign)

    with timer("phase_offset"):
        pha, offset = used["phase_offset"].func(pha, mag, te, vs, mask=m, **so.get("phase_offset", {}))
    with timer("unwrap"):
        unwrapped = used["unwrap"].func(pha, vs, mask=m, magnitude=mag, echo_times=te, **so.get("unwrap", {}))
        del pha
    res.phase_offset = box.full(offset, np.float32)
    res.unwrapped_phase = box.full(np.where(m[..., None], unwrapped, 0), np.float32)
    done += ["phase_offset", "unwrap"]
    if until == "unwrap":
        return _finish(res, used, done, mask_source)

    # through the origin where the phase offset was removed; the free line without offset removal
    fit_kw = {"intercept": "fit"} if used["phase_offset"].name == "none" else {}
    fit_kw["voxel_size"] = vs  # with one or two echoes, for the field model's error in the noise map
    # the image noise, read once in the far air of the whole volume (the cropped box has little air):
    # the field fit's noise map with one or two echoes, R2*, the χ SD's thermal noise, the sign check
    sigma = fieldmap.background_sigma(data.magnitude[..., 0], brain, vs)
    fit_kw["noise_sigma"] = sigma
    fit_kw.update(so.get("field_fit", {}))
    with timer("field_fit"):
        f_hz, noise_hz = used["field_fit"].func(unwrapped, mag, te, mask=m, **fit_kw)
    del unwrapped
    res.total_field_hz = box.full(np.where(m, f_hz, 0), np.float32)
    res.field_noise_hz = box.full(np.where(m, noise_hz, 0), np.float32)
    # a field too noisy for χ: said where χ is made (SWI and the stage commands make none)
    noisy = until is None and sanity.check_field_noise(noise_hz, m, data.field_strength, te)
    res.parameters["hz_per_ppm"] = units.hz_per_ppm(data.field_strength)
    done.append("field_fit")
    if opt.swi:
        with timer("swi"):
            res.swi, res.minip, res.parameters["swi"] = swi_maps(data, res.total_field_hz, brain, opt)
    if until == "field_fit":
        return _finish(res, used, done, mask_source)
    if not noisy:  # a field map too noisy for χ has been warned about already, its echoes named
        sanity.check_chi_echo_span(te)
    done += _chi_and_relaxation(res, data, opt, used, timer, box, m, mag, f_hz, noise_hz, sigma)
    return _finish(res, used, done, mask_source)


def _methods(opt: Options) -> dict:
    """The method of each stage but background removal and inversion (see :func:`_late_methods`)."""
    return {stage: choose(methods, getattr(opt, stage), stage) for stage, methods in STAGES.items()
            if stage not in ("bgremove", "inversion")}


def _late_methods(opt: Options, vs, used: dict, brain: np.ndarray, *, single_echo: bool = False,
                  short_span: bool = False) -> Options:
    """Background removal and inversion ("auto" resolved by voxel size, by whether the field of
    view cuts the ``brain`` mask, by whether the data have a ``single_echo`` and by whether the
    echoes span less than 10 ms, ``short_span``) into ``used``,
    and the options naming them. Resolved once the mask is known; a run that stops at the field
    map neither uses nor logs them."""
    cut = masking.faces_cutting(brain)
    used["inversion"] = STAGES["inversion"][resolve_inversion(opt.inversion, vs, fov_cuts_brain=bool(cut),
                                                              single_echo=single_echo, short_span=short_span)]
    opt = dataclasses.replace(opt, inversion=used["inversion"].name)
    if used["inversion"].name != "tfi":
        used["bgremove"] = STAGES["bgremove"][resolve_bgremove(opt.bgremove, vs)]
        opt = dataclasses.replace(opt, bgremove=used["bgremove"].name)  # resolved once, logged once
        if cut:
            log.warning("the field of view cuts the brain (at %s), and background removal (%s) cannot tell the "
                        "field of the tissue at a cut face from the background (LBV takes it to be zero there): "
                        "χ is unreliable near those faces, and through a thin slab; total field inversion "
                        "(--inversion tfi, the default for slabs) needs no background removal", " and ".join(cut),
                        used["bgremove"].name.upper())
        elif single_echo:
            log.warning("single-echo data with background removal (%s): it removes only the harmonic part of "
                        "the receive phase offset, which one echo cannot separate from the field; the rest "
                        "stays in the local field and χ (total field inversion, --inversion tfi, the default "
                        "for one echo, fares better)", used["bgremove"].name.upper())
    return opt


def _brain_mask(data: GreInput, opt: Options, used: dict, mask, timer, until):
    """The input checks, then the brain mask (given or computed) and where it came from."""
    shape = data.magnitude.shape[:3]
    sanity.check_empty_echoes(data.magnitude, data.phase if until != "mask" else None)
    region = sanity.tissue(data.magnitude)
    # echo order matters to the mask too: BET's surface also moves on the last echo
    sanity.check_echo_order(data.magnitude, data.echo_times, region)
    if until != "mask":  # the mask needs no phase
        sanity.check_phase_is_not_magnitude(data.phase, data.magnitude, region)
        sanity.check_phase_evolves(data.phase, region)
        sanity.check_phase_is_linear_in_te(data.phase, data.echo_times, region)
    del region
    with timer("mask"):
        if mask is not None:
            brain = _checks.as_mask("mask", mask, shape) & data.finite
            mask_source = "given"
        else:
            brain = used["mask"].func(data.magnitude, data.voxel_size, valid=data.finite,
                                      **opt.stage_options.get("mask", {}))
            mask_source = opt.mask
        if brain.sum() < 27:
            raise ValueError(f"the brain mask holds only {int(brain.sum())} voxels; check the mask or the magnitude")
    return brain, mask_source


def _chi_and_relaxation(res: QSMResult, data: GreInput, opt: Options, used: dict, timer, box, m, mag, f_hz,
                        noise_hz, sigma) -> list:
    """R2* (it marks the sinuses for the field region and the CSF for MEDI+0 and the reference),
    the local field, χ and its SD, on the cropped box ``m``; returns the stages that ran."""
    brain = res.mask
    vs, te = data.voxel_size, data.echo_times
    hz_per_ppm = res.parameters["hz_per_ppm"]
    done = []
    r2_c = r2_sd = r2_sd_map = None
    if data.n_echoes >= 2:  # before background removal: R2* marks the dural sinuses at the mask's edge
        with timer("r2star"):
            r2_c, s0_c, fit_c = relaxation_maps(mag, te, m, opt, noise_sigma=sigma, field_hz=f_hz,
                                                slice_axis=data.slice_axis)
            r2_sd_map = relaxometry.r2star_noise_map(mag, te, r2star_noise_sigma(sigma, te, mag.shape, data.slice_axis), m)
            r2_sd = float(np.median(r2_sd_map[m])) if np.isfinite(sigma) else float("nan")
        res.r2star = box.full(r2_c)
        res.s0 = box.full(s0_c)
        res.r2star_fit = box.full(fit_c)
        res.t2star = relaxometry.t2star_from_r2star(res.r2star, brain)
        res.parameters["r2star"] = r2star_parameters(sigma, r2_sd, te, opt, data.slice_axis)
    total_ppm = np.where(m, f_hz / hz_per_ppm, 0)
    # the peel's distance to the mask's outside, computed once for the uncertainty map's redraws too
    depth = (masking.distance_to_outside(m, vs, volume_edge=True)
             if noise_hz is not None and opt.peel_noise_factor > 0 else None)
    peel = dict(r2star=r2_c, r2star_noise=r2_sd, field_strength=data.field_strength, depth=depth)
    tfi = used["inversion"].name == "tfi"
    refine = None
    if tfi:  # total field inversion fits the total field itself: no background removal
        with timer("field_region"):
            local_c, eroded_c = field_region(total_ppm, m, vs, noise_hz, opt, **peel)
    else:
        with timer("bgremove"):
            local_c, eroded_c, region_c = background_removal(total_ppm, m, vs, data.b0_direction, noise_hz, opt,
                                                             **peel)
        refine = lbv_refinement(opt, vs, data.b0_direction, region_c)
        res.parameters["bg_polynomial"] = opt.bg_polynomial
        done.append("bgremove")
    t_jitter = time.perf_counter()
    jitter = None if tfi else sd_peel_jitter(opt, total_ppm, m, region_c, local_c, eroded_c, vs, noise_hz, mag, te,
                                             sigma, r2_c, r2_sd_map, r2_sd, data.field_strength, depth)
    t_jitter = time.perf_counter() - t_jitter
    del total_ppm
    res.eroded_mask = box.full(eroded_c, bool)
    thermal_ppm = None
    if opt.chi_sd:  # the uncertainty map propagates the thermal noise, not the field model's error
        thermal_hz, ratio = fieldmap.thermal_noise(noise_hz, mag, te, m, sigma)
        res.parameters["chi_sd_noise_ratio"] = round(ratio, 4)
        if ratio < 1:
            log.info("χ uncertainty map: the thermal noise (from the air) is %.2f of the field fit's residual noise; "
                     "the rest is field-model error, a bias the map leaves out", ratio)
        thermal_ppm = thermal_hz / hz_per_ppm
    chi_c, sd_c, csf_c, used["inversion"], used["reference"], local_c = inversion_and_reference(
        local_c, eroded_c, vs, data.b0_direction, opt, res, timer, noise_ppm=noise_hz / hz_per_ppm,
        magnitude=echoes.rss(mag), phase_scale=units.rad_per_ppm(data.field_strength, float(np.mean(te))), r2star=r2_c,
        r2star_noise=r2_sd_map, echo_span_s=float(np.ptp(te)), sd_noise_ppm=thermal_ppm, refine=refine,
        sd_field_jitter=jitter, superior=io.superior_from_affine(data.affine))
    if "chi_sd" in res.timings and jitter is not None:  # the peel's redraws are part of the map's cost
        res.timings["chi_sd"] = round(res.timings["chi_sd"] + t_jitter, 3)
    if r2_c is not None:
        res.parameters["chi_sign_share"] = sanity.check_chi_sign(chi_c, r2_c, eroded_c, vs, r2star_noise=r2_sd_map,
                                                                     phase_sign=opt.phase_sign)
    res.chi = box.full(chi_c, np.float32)
    if sd_c is not None:
        res.chi_sd = box.full(sd_c, np.float32)
    if tfi:  # the local field TFI explains: the field of χ inside the region it was fitted on
        local_c = np.where(eroded_c, kernels.forward_field(chi_c, vs, data.b0_direction), 0)
    res.local_field_ppm = box.full(local_c, np.float32)
    if csf_c is not None:
        res.csf_mask = box.full(csf_c, np.float32)
    return done + ["inversion", "reference"] + (["r2star"] if r2_c is not None else [])


def sd_peel_jitter(opt: Options, field, mask, region, local, eroded, vs, noise_hz, mag, te, sigma, r2star, r2star_sd,
                   r2star_noise, field_strength, depth):
    """The local field's changes from redrawing the peel (:func:`jitter.peel_field_jitter`), one
    per χ uncertainty sample, when the map is asked for from an inversion that carries them
    and LBV ran on a peeled region (None otherwise: the other background removals are not
    restarted, and a polynomial clean-up would enter the difference)."""
    inv = STAGES["inversion"][resolve_inversion(opt.inversion, vs)]
    if not opt.chi_sd or "sd_field_jitter" not in inv.needs or noise_hz is None or opt.peel_noise_factor <= 0 \
            or opt.bg_polynomial or resolve_bgremove(opt.bgremove, vs) != "lbv" or "bgremove" in opt.stage_options:
        return None
    return jitter.peel_field_jitter(field, mask, region, local, eroded, vs, noise_hz, samples=_sd_samples(opt),
                                    magnitude=mag, echo_times=te, sigma=sigma, r2star=r2star, r2star_sd=r2star_sd,
                                    r2star_noise=r2star_noise, field_strength=field_strength,
                                    factor=opt.peel_noise_factor, depth=depth)


def _sd_samples(opt: Options) -> int:
    """The χ uncertainty map's samples: the user's ``sd_samples`` for the inversion, else the default
    (also for a count that is no whole number of at least 1: the inversion refuses it in words)."""
    n = opt.stage_options.get("inversion", {}).get("sd_samples", inversion.SD_SAMPLES)
    return n if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 else inversion.SD_SAMPLES


def inversion_and_reference(local, eroded, voxel_size, b0_direction, opt: Options, res: QSMResult, timer, *,
                            noise_ppm=None, magnitude=None, phase_scale=None, r2star=None, r2star_noise=None,
                            echo_span_s=None, sd_noise_ppm=None, refine=None, sd_field_jitter=None,
                            superior=None) -> Inverted:
    """Dipole inversion and referencing of a local field (ppm): (χ, its noise SD or None, CSF mask
    or None, inversion used (citing what it was given), reference used, the local field
    inverted).

    ``refine`` (e.g. from :func:`lbv_refinement`) maps χ to a field the background removal
    missed: with an inversion that can restart (``Method.warm_start``) the field is added to
    the local field and the inversion runs again from χ with the same weight, and the noise
    SD follows both passes. The first pass's weight, steps and seconds go to
    ``res.parameters["inversion"]["first_pass"]``; ``res.parameters["lbv_refine"]`` says
    whether it ran.

    Each method gets what it accepts of: the noise map (ppm), the magnitude, the phase
    per ppm at the mean echo time, the head's ``superior`` direction in voxel axes (from the
    affine: which face of the field of view is the body's), and the CSF weights found from R2*
    (when the inversion takes them or the reference is CSF; ``r2star_noise`` and
    ``echo_span_s`` as for :func:`qsmflow.reference.csf_weights`). With ``opt.chi_sd``, a noise map and an inversion
    that propagates noise (``inversion.SD_METHODS``), χ's SD comes too (see
    :func:`qsmflow.inversion.medi`), carrying ``sd_field_jitter`` where the inversion takes it
    (:func:`sd_peel_jitter`). The inversion's choices (weights, iterations)
    go to ``res.parameters["inversion"]``, the reference offset to
    ``res.parameters["reference_offset_ppm"]``.
    """
    so = opt.stage_options
    inv = STAGES["inversion"][resolve_inversion(opt.inversion, voxel_size)]
    ref = choose(STAGES["reference"], opt.reference, "reference")
    needs = set(inv.needs)  # declared in the registry, not guessed from the signature
    csf = csf_jitter = None
    if r2star is not None and ("csf_mask" in needs or ref.name == "csf"):
        csf = reference.csf_weights(r2star, eroded, voxel_size, r2star_noise=r2star_noise, echo_span_s=echo_span_s)
        if not csf.any():
            csf = None
        elif opt.chi_sd and r2star_noise is not None and "sd_csf_jitter" in needs:
            csf_jitter = reference.csf_weight_redraws(csf, r2star, eroded, r2star_noise, samples=_sd_samples(opt))
    if ref.name == "csf" and csf is None:
        why = ("finding it needs R2*, i.e. two or more echoes" if r2star is None else
               f"the echoes span less than {1e3 * CSF_MIN_ECHO_SPAN_S:g} ms" if reference.echo_span_too_short(echo_span_s)
               else f"less than {CSF_MIN_VOLUME_ML:g} mL of the brain has a reliable R2* below {CSF_R2STAR_ZERO_PER_S:g}/s")
        log.warning("no CSF found for the reference (%s); χ is referenced to the whole-brain mean instead", why)
        ref = reference.METHODS["mean"]
    context = {"noise": noise_ppm, "magnitude": magnitude, "phase_scale": phase_scale, "csf_mask": csf,
               "sd_csf_jitter": csf_jitter, "sd_field_jitter": sd_field_jitter, "superior": superior}
    # what the user set in stage_options wins over what the chain provides
    kwargs = {k: v for k, v in context.items() if k in needs and v is not None}
    kwargs.update(so.get("inversion", {}))
    if "csf_mask" in so.get("inversion", {}) and "sd_csf_jitter" not in so["inversion"]:
        kwargs.pop("sd_csf_jitter", None)  # the chain's weights' changes do not describe the user's CSF mask
    if "magnitude" in needs and "magnitude" not in kwargs:
        raise ValueError(f"inversion {inv.name!r} needs a magnitude image")
    sd = None
    if opt.chi_sd and "return_sd" not in kwargs:
        if not inv.noise_sd:
            log.info("no χ uncertainty map: inversion %r does not propagate the field noise (%s do)", inv.name,
                     " and ".join(inversion.SD_METHODS))
        elif noise_ppm is None:
            log.info("no χ uncertainty map: there is no field-noise map")
        else:
            kwargs["return_sd"] = True
            if sd_noise_ppm is not None and "sd_noise" not in kwargs:
                kwargs["sd_noise"] = sd_noise_ppm
    if not kwargs.get("return_sd"):  # no map: nothing for the redraws to go into
        kwargs.pop("sd_csf_jitter", None)
        kwargs.pop("sd_field_jitter", None)
    info: dict = {}
    if refine is not None and not inv.warm_start:
        log.info("no LBV refinement: inversion %r cannot restart from a χ (medi can)", inv.name)
        refine = None
    res.parameters["lbv_refine"] = refine is not None
    with timer("inversion"):
        if refine is not None:
            local, kwargs, first = _first_pass(inv, local, eroded, voxel_size, b0_direction, kwargs, refine)
        chi = inv.func(local, eroded, voxel_size, b0_direction, info=info, **kwargs)
        if refine is not None:
            info["first_pass"] = first
    if kwargs.get("return_sd"):
        chi, sd = chi
        # the noise propagation ran inside the inversion: book its time apart
        res.timings["chi_sd"] = round(info.get("sd_seconds", 0.0), 3)
        res.timings["inversion"] = round(res.timings["inversion"] - res.timings["chi_sd"], 3)
    res.parameters["inversion"] = info
    ref_kwargs = {"csf": csf} if ref.name == "csf" else {}
    ref_kwargs.update(so.get("reference", {}))
    with timer("reference"):
        chi, offset = ref.func(chi, eroded, **ref_kwargs)
    res.parameters["reference_offset_ppm"] = offset
    res.parameters["chi_implausible_share"] = round(sanity.check_chi_range(chi, eroded), 5)
    if csf is not None:
        res.parameters["csf_ml"] = round(float(csf.sum(dtype=np.float64)) * float(np.prod(voxel_size)) / 1000, 2)
    return Inverted(chi, sd, csf, dataclasses.replace(inv, citations=inv.cited(kwargs)), ref, local)


class Inverted(NamedTuple):
    """What :func:`inversion_and_reference` gives."""

    chi: np.ndarray
    sd: np.ndarray | None
    csf: np.ndarray | None
    inversion: Method
    reference: Method
    local: np.ndarray


# the inversion's inputs that serve the uncertainty map alone (not its first pass)
_SD_ONLY = ("return_sd", "sd_noise", "sd_csf_jitter", "sd_field_jitter")


def _first_pass(inv, local, eroded, voxel_size, b0_direction, kwargs, refine):
    """The refinement's first inversion and the field it adds: (refined local field, keyword
    arguments of the second pass, what the first pass did)."""
    t0 = time.perf_counter()
    info: dict = {}
    # the first pass only seeds the refinement and the restart: it starts from the weight
    # search's TV solution (``search_start``, see :func:`qsmflow.inversion.medi`)
    first_kwargs = {"search_start": True, **{k: v for k, v in kwargs.items() if k not in _SD_ONLY}}
    chi0 = inv.func(local, eroded, voxel_size, b0_direction, info=info, **first_kwargs)
    t1 = time.perf_counter()
    extra = refine(chi0)
    eroded = np.asarray(eroded, bool)
    rms = float(np.sqrt(np.mean(np.square(extra[eroded], dtype=np.float64)))) if eroded.any() else 0.0
    log.info("LBV refinement: the tissue field LBV had taken for background is %.3g ppm RMS (%.2g of the local "
             "field's); inverting again from χ", rms,
             rms / max(float(np.sqrt(np.mean(np.square(local[eroded], dtype=np.float64)))), 1e-30))
    first = {"alpha": info.get("alpha"), "gauss_newton_steps": info.get("gauss_newton_steps"),
             "start": info.get("start"),
             "seconds": round(t1 - t0, 3), "boundary_field_seconds": round(time.perf_counter() - t1, 3),
             "boundary_field_rms_ppm": rms}
    again = dict(kwargs, alpha=info["alpha"], chi0=chi0, chi0_steps=info.get("gauss_newton_steps", 0))
    return (local + extra).astype(np.float32), again, first


def _finish(res: QSMResult, used: dict, done: list, mask_source: str) -> QSMResult:
    """Methods and citations of the stages that ran."""
    res.parameters["methods"] = {s: (mask_source if s == "mask" else used[s].name) for s in done}
    cites = list(references(kernels.dipole_kernel)) if "field_fit" in done else []
    for stage in done:
        if stage == "mask" and mask_source == "given":
            continue
        cites.extend(c for c in used[stage].citations if c not in cites)
    if res.parameters.get("lbv_refine"):
        cites.extend(c for c in references(bgremove.lbv_boundary_field) if c not in cites)
    if res.swi is not None:
        cites.extend(c for c in swi.CITATIONS["clear"] if c not in cites)
    res.citations = cites
    return res


def minip_axis(affine) -> int:
    """The voxel axis closest to the head's superior-inferior (world z) axis: axial minIP slabs."""
    cols = np.asarray(affine, float)[:3, :3]
    return int(np.argmax(np.abs(cols[2]) / np.linalg.norm(cols, axis=0)))


def swi_maps(data: GreInput, field_hz: np.ndarray, mask: np.ndarray, opt: Options, *, method: str = "clear",
             echo: int | None = None):
    """SWI, its minIP over ``opt.minip_slab_mm`` (axial slabs) and the parameters used.

    ``clear``: the multi-echo variant on the fitted total field (``field_hz``, already in
    qsmflow's sign, so veins have positive phase); ``homodyne``: Haacke's filter on the
    phase of echo ``echo`` (0-based; default the middle one), with ``opt.phase_sign``.
    """
    if method == "clear":
        image, _ = swi.clear_swi(data.magnitude, field_hz, data.echo_times, mask=mask, voxel_size=data.voxel_size)
        params = {"method": "clear", "effective_te_s": float(np.mean(data.echo_times))}
    elif method == "homodyne":
        e = data.n_echoes // 2 if echo is None else echo
        if not 0 <= e < data.n_echoes:
            raise ValueError(f"the SWI echo must be between 1 and {data.n_echoes}, got {e + 1}")
        image, _ = swi.homodyne_swi(data.magnitude[..., e], data.phase[..., e], mask=mask,
                                    voxel_size=data.voxel_size, phase_sign=opt.phase_sign)
        params = {"method": "homodyne", "echo": e + 1, "filter_mm": swi.HOMODYNE_FILTER_MM}
    else:
        raise ValueError(f"SWI method {method!r} is unknown; choose clear or homodyne")
    axis = minip_axis(data.affine)
    minip = swi.min_intensity_projection(image, data.voxel_size, slab_mm=opt.minip_slab_mm, axis=axis)
    params.update({"phase_mask_power": swi.MASK_POWER, "minip_slab_mm": opt.minip_slab_mm, "minip_axis": axis,
                   "minip_slices": swi.minip_slices(opt.minip_slab_mm, data.voxel_size[axis])})
    return image, minip, params
