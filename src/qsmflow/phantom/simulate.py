"""simulate_head(): the numerical head, its fields and its multi-echo GRE signal."""

from __future__ import annotations

import logging
import time

import numpy as np

from .._shared import checks as _checks
from .._shared import units
from .fields import dipole_fields, outside_fov_field, remove_shim
from .geometry import FOV_CENTRE, HeadModel
from .model import (_BRAIN_EXTENT_MM, FAT_FRACTION, LABEL_NAMES, TISSUES, HeadPhantom, r2star_at_field,
                    steady_state_signal)
from .myelin import MyelinWater
from .signal import (PhaseOffset, affine, block_mean, fat_modulation, kspace_downsample, receive_profile,
                     upsample, voxel_axes, wrap)
from .tissue import tissue_properties

logger = logging.getLogger(__name__)

F32 = np.float32


def simulate_head(
    shape=(160, 192, 160),
    voxel_size=(1.0, 1.0, 1.0),
    *,
    echo_times=(0.004, 0.010, 0.016, 0.022, 0.028),
    field_strength=3.0,
    b0_direction=(0.0, 0.0, 1.0),
    snr=100.0,
    oversample=2,
    seed=0,
    lesions=False,
    shim=True,
    myelin_water=False,
    slice_axis=None,
    receive_coils=32,
    repetition_time=None,
    flip_angle=None,
) -> HeadPhantom:
    """Simulate a multi-echo 3D GRE scan of a procedurally generated head.

    Parameters
    ----------
    shape : tuple of int
        Output matrix (X, Y, Z); the field of view is ``shape * voxel_size`` mm, centred on
        the head. Axes are x left→right, y posterior→anterior, z inferior→superior. The
        default 160×192×160 mm FOV holds the whole head with air around it and cuts the
        face and neck at the bottom, as a brain slab does.
    voxel_size : sequence of float
        Voxel size (mm); anisotropic voxels are allowed.
    echo_times : sequence of float
        Echo times (s), increasing.
    field_strength : float
        B0 (T). Tissue values are 3 T values; the field scales with B0, and so does the
        part of R2* above 6/s (the reversible, susceptibility-driven part R2'; see
        :func:`r2star_at_field`).
    b0_direction : sequence of float
        B0 direction in voxel axes (an oblique slab: see :func:`oblique_direction`). The
        anatomy stays aligned with the voxel axes; the affine carries the tilt.
    snr : float
        Mean first-echo magnitude in the brain over the noise SD; ``numpy.inf`` for
        noise-free data.
    oversample : int
        Simulation grid refinement per axis (1-4). 1 commits the inverse crime and is
        meant for quick tests only.
    seed : int
        Seed of every random choice (anatomy, phase offset, noise).
    lesions : bool
        Add a calcification (χ −0.5 ppm) and a haemorrhage (χ +1.0 ppm) in white matter.
    shim : bool
        Remove a 2nd-order spherical-harmonic fit (over the brain) from the total field.
    myelin_water : bool
        White matter as three water pools (myelin, axonal, extracellular; see
        :mod:`qsmflow.phantom.myelin`) instead of one exponential; the truth ``mwf``
        holds the myelin water fraction. Use with many closely spaced echoes.
    slice_axis : {0, 1, 2} or None
        None simulates a 3D acquisition (every axis Fourier-encoded). An axis simulates a
        2D multi-slice acquisition with its slices stacked along that axis: the slice
        profile is a box ``voxel_size[slice_axis]`` thick, so a field gradient across the
        slice dephases the spins (the fine complex signal is averaged along that axis
        instead of k-space cropped).
    receive_coils : int
        Channels of the simulated receive array (loops around the head, combined as
        root-sum-of-squares): the magnitude is bright under the coils, about half as
        bright in the brain's centre and darker below the skull base, as with every
        multi-channel head coil. 0 gives a uniform receive sensitivity.
    repetition_time, flip_angle : float, optional
        TR (s) and flip angle (degrees) of a spoiled gradient echo: each tissue's signal is
        then its proton density times its T1 steady state (:func:`steady_state_signal`, T1
        from the tissue table at ``field_strength``), scaled so that white matter keeps its
        proton density. CSF's long T1 saturates: at TR 35 ms and 15° it gives 0.49x grey
        matter's signal per unit of proton density (0.59x with their proton densities), where
        proton density alone makes it the brightest tissue. None (both): proton density alone.

    Returns
    -------
    HeadPhantom
        Data and ground truth.

    Raises
    ------
    ValueError, TypeError
        For invalid arguments (the message names the argument).

    References
    ----------
    Marques JP, Meineke J, Milovic C, et al. Magn Reson Med 2021;86:526-542.
    doi:10.1002/mrm.28716

    Marques JP, Bowtell R. Concepts Magn Reson B 2005;25B:65-78. doi:10.1002/cmr.b.20034

    Li W, Wu B, Liu C. Quantitative susceptibility mapping of human brain reflects spatial
    variation in tissue composition. NeuroImage 2011;55:1645-1656.
    doi:10.1016/j.neuroimage.2010.11.088

    Deistung A, Schäfer A, Schweser F, et al. Toward in vivo histology: a comparison of
    quantitative susceptibility mapping (QSM) with magnitude-, phase-, and R2*-imaging at
    ultra-high magnetic field strength. NeuroImage 2013;65:299-314.
    doi:10.1016/j.neuroimage.2012.09.055

    Péran P, Hagberg G, Luccichenti G, et al. Voxel-based analysis of R2* maps in the
    healthy human brain. J Magn Reson Imaging 2007;26:1413-1420. doi:10.1002/jmri.21204

    Gelman N, Gorell JM, Barker PB, et al. MR imaging of human brain at 3.0 T: preliminary
    report on transverse relaxation rates and relation to estimated iron content.
    Radiology 1999;210:759-767. doi:10.1148/radiology.210.3.r99fe41759

    Neeb H, Zilles K, Shah NJ. A new method for fast quantitative mapping of absolute
    water content in vivo. NeuroImage 2006;31:1156-1168.
    doi:10.1016/j.neuroimage.2005.12.063

    Jain V, Abdulmalik O, Propert KJ, Wehrli FW. Investigating the magnetic susceptibility
    properties of fresh human blood for noninvasive oxygen saturation quantification.
    Magn Reson Med 2012;68:863-867. doi:10.1002/mrm.23282

    Zhao JM, Clingman CS, Närväinen MJ, Kauppinen RA, van Zijl PCM. Oxygenation and
    hematocrit dependence of transverse relaxation rates of blood at 3T. Magn Reson Med
    2007;58:592-597. doi:10.1002/mrm.21342

    Schenck JF. The role of magnetic susceptibility in magnetic resonance imaging: MRI
    magnetic compatibility of the first and second kinds. Med Phys 1996;23:815-850.
    doi:10.1118/1.597854

    Hopkins JA, Wehrli FW. Magnetic susceptibility measurement of insoluble solids by NMR:
    magnetic susceptibility of bone. Magn Reson Med 1997;37:494-500.
    doi:10.1002/mrm.1910370404

    Du J, Bydder GM. Qualitative and quantitative ultrashort-TE MRI of cortical bone. NMR
    Biomed 2013;26:489-506. doi:10.1002/nbm.2906

    Chen W, Zhu W, Kovanlikaya I, et al. Intracranial calcifications and hemorrhages:
    characterization with quantitative susceptibility mapping. Radiology
    2014;270:496-505. doi:10.1148/radiol.13122640
    """
    t_start = time.perf_counter()
    shape = _shape_arg(shape)
    vs = _checks.voxel_size(voxel_size)
    te = _checks.echo_times(echo_times)
    b0 = _checks.field_strength(field_strength)
    b0_dir = _checks.b0_direction(b0_direction)
    snr = _snr_arg(snr)
    os_ = _oversample_arg(oversample)
    seed = _seed_arg(seed)
    _check_options(receive_coils, slice_axis, lesions=lesions, shim=shim, myelin_water=myelin_water)
    saturation = _saturation(repetition_time, flip_angle, b0, te)
    fov = np.asarray(shape) * vs
    if np.any(fov < _BRAIN_EXTENT_MM):
        logger.warning("field of view %s mm is smaller than the brain %s mm: the phantom is cut", fov.tolist(),
                       list(_BRAIN_EXTENT_MM))

    head_seq, phase_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    fine_axes = voxel_axes(tuple(n * os_ for n in shape), vs / os_)
    # 1. anatomy and tissue properties on the fine grid
    model, painted = _painted_head(head_seq, (seed, bool(lesions), shape, tuple(vs.tolist()), os_), fine_axes,
                                   vs / os_)
    chi, r2s, m0, brain, air, pools, fat = _anatomy(model, painted, fine_axes, b0, phase_seq, myelin_water,
                                                    saturation)

    # 2-3. fields and the ground truth on the output grid
    total, brain_mask, truth = _fields_and_truth(chi, r2s, m0, brain, air, pools, model, shape, vs, os_, fine_axes,
                                                 b0, b0_dir, shim)
    del chi, brain, air
    gamma_b0 = units.hz_per_ppm(b0)

    # 4. signal: phase offset, echoes on the fine grid, k-space cropped to the output grid
    t0 = time.perf_counter()
    phi0 = PhaseOffset(np.random.default_rng(phase_seq), fov)
    phi0_fine = phi0(fine_axes)
    out_axes = voxel_axes(shape, vs)
    signal = _echoes(te, phi0_fine, total, gamma_b0, m0, r2s, pools, fat, shape, os_, slice_axis)
    del phi0_fine, total, m0, r2s, fat
    logger.info("phantom: %d echoes in %.1f s", len(te), time.perf_counter() - t0)

    sigma, profile = _coils_and_noise(signal, out_axes, receive_coils, brain_mask, snr, noise_seq)
    magnitude = np.moveaxis(np.abs(signal), 0, -1)
    phase = np.moveaxis(wrap(np.angle(signal)), 0, -1)
    del signal

    labels = _labels(model, out_axes, vs)

    logger.info("phantom: %s at %s mm simulated in %.1f s", shape, vs.tolist(), time.perf_counter() - t_start)
    return HeadPhantom(
        magnitude=np.ascontiguousarray(magnitude, dtype=F32),
        phase=np.ascontiguousarray(phase, dtype=F32),
        echo_times=te.astype(np.float64),
        field_strength=float(b0),
        voxel_size=vs.astype(np.float64),
        b0_direction=b0_dir,
        affine=affine(shape, vs, b0_dir),
        chi=truth["chi"],
        r2star=truth["r2star"],
        m0=truth["m0"],
        labels=labels,
        brain_mask=brain_mask,
        total_field_hz=truth["total_field_hz"],
        local_field_ppm=truth["local_field_ppm"],
        phase_offset=phi0(out_axes),
        noise_sigma=sigma,
        label_names=dict(LABEL_NAMES),
        mwf=truth.get("mwf"),
        slice_axis=slice_axis,
        receive_sensitivity=profile,
    )


# --------------------------------------------------------------------------- arguments


def _saturation(repetition_time, flip_angle, b0, te):
    """Each tissue's T1 steady-state factor relative to white matter's, or None (proton
    density alone) when neither TR nor flip angle is given."""
    if repetition_time is None and flip_angle is None:
        return None
    if repetition_time is None or flip_angle is None:
        raise ValueError("give both repetition_time (s) and flip_angle (degrees) for T1 weighting, or neither")
    tr = _checks.positive("repetition_time", repetition_time)
    if tr <= float(np.max(te)) or tr > 10:
        raise ValueError(f"repetition_time must be in seconds and longer than the last echo time "
                         f"({float(np.max(te)):g} s), got {tr!r}")
    alpha = _checks.positive("flip_angle", flip_angle)
    if alpha > 90:
        raise ValueError(f"flip_angle must be in degrees, at most 90, got {alpha!r}")
    ref = steady_state_signal(TISSUES["wm"].t1_s, "wm", b0, tr, alpha)
    return {name: steady_state_signal(t.t1_s, name, b0, tr, alpha) / ref for name, t in TISSUES.items()}


# Heads drawn from the same seed on the same grid (an acquisition study: field strength, echo
# times, SNR, B0 direction, T1 weighting, shim, coils; the tests' phantoms) share the drawn
# model and its painting on the fine grid, the costliest part of a small head (about 3.5 of
# 6 s at 3 mm), when that grid has at most this many voxels: the last two are kept, read-only.
_KEEP_PAINTED_VOXELS = 4_000_000
_PAINTED: dict = {}


def _painted_head(head_seq, key, fine_axes, fine_vs):
    """The :class:`HeadModel` drawn from ``head_seq`` and its anatomy painted on the fine grid
    (``fine_axes``, voxels ``fine_vs`` mm); ``key`` (seed, lesions, shape, voxel size,
    oversampling) names the pair."""
    if key in _PAINTED:
        return _PAINTED[key]
    model = HeadModel(head_seq, lesions=key[1])
    model.prepare(fine_vs)
    t0 = time.perf_counter()
    painted = model.paint(fine_axes, fine_vs)
    logger.info("phantom: anatomy on the %s fine grid in %.1f s", tuple(a.size for a in fine_axes),
                time.perf_counter() - t0)
    if np.prod([a.size for a in fine_axes]) <= _KEEP_PAINTED_VOXELS:
        for a in (painted.labels, painted.brain, painted.vessel_cover, painted.vessel_type):
            if a is not None:
                a.flags.writeable = False
        while len(_PAINTED) >= 2:
            _PAINTED.pop(next(iter(_PAINTED)))
        _PAINTED[key] = (model, painted)
    return model, painted


def _anatomy(model, painted, fine_axes, b0, phase_seq, myelin_water, saturation=None):
    """Tissue properties of the head ``painted`` on the fine grid: (χ, R2* at ``b0``, M0,
    brain, air, myelin-water pools or None, (flat indices of the fatty voxels, their signal
    fat fraction))."""
    chi, r2s, m0, brain, air = tissue_properties(painted, model, fine_axes, TISSUES, saturation)
    pools = MyelinWater(painted.labels, fine_axes, np.random.default_rng(phase_seq.spawn(1)[0])) \
        if myelin_water else None
    # the fatty voxels (flat indices, ascending) and their fat fraction: no fine-grid map of it
    fraction = np.zeros(int(painted.labels.max()) + 1, F32)
    for name, ff in FAT_FRACTION.items():
        if TISSUES[name].label < fraction.size:
            fraction[TISSUES[name].label] = F32(ff)
    labels = painted.labels.reshape(-1)
    fat_idx = np.flatnonzero(fraction[labels])
    fat = (fat_idx, fraction[labels[fat_idx]])
    return chi, r2star_at_field(r2s, b0), m0, brain, air, pools, fat


def _fields_and_truth(chi, r2s, m0, brain, air, pools, model, shape, vs, os_, fine_axes, b0, b0_dir, shim):
    """The total field (ppm, fine grid; air as zero reference, the body outside the FOV
    included, optionally shimmed), the brain mask and the ground truth on the output grid
    (partial-volume averages)."""
    fine_vs = vs / os_
    t0 = time.perf_counter()
    # the brain mask holds the voxels at least half inside the brain; the local field is
    # the field of every source inside those voxels (what ideal background removal leaves)
    brain_mask = block_mean(brain, os_) >= 0.5
    source = np.where(air, F32(0.0), chi - F32(TISSUES["air"].chi_ppm))
    local_src = np.where(upsample(brain_mask, os_), chi, F32(0.0))
    total, local = dipole_fields([source, local_src], fine_vs, b0_dir)
    del source, local_src
    total += outside_fov_field(model, shape, vs, b0_dir, fine_axes, TISSUES)
    if shim:
        remove_shim(total, brain, fine_axes)
    logger.info("phantom: fields in %.1f s", time.perf_counter() - t0)
    gamma_b0 = units.hz_per_ppm(b0)
    truth = {
        "chi": block_mean(chi, os_),
        "r2star": block_mean(r2s, os_),
        "m0": block_mean(m0, os_),
        "total_field_hz": block_mean(total, os_) * F32(gamma_b0),
        "local_field_ppm": block_mean(local, os_),
    }
    if pools is not None:
        truth["mwf"] = block_mean(np.where(pools.white, pools.mwf, F32(0)), os_)
    return total, brain_mask, truth


def _check_options(receive_coils, slice_axis, **flags) -> None:
    """The phantom's integer and boolean options, each named in its error."""
    if isinstance(receive_coils, (bool, np.bool_)) or not isinstance(receive_coils, (int, np.integer)) \
            or receive_coils < 0:
        raise ValueError(f"receive_coils must be a number of channels (0 for uniform), got {receive_coils!r}")
    if slice_axis is not None and (isinstance(slice_axis, (bool, np.bool_)) or slice_axis not in (0, 1, 2)):
        raise ValueError(f"slice_axis must be 0, 1, 2 or None (3D), got {slice_axis!r}")
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")


def _echoes(te, phi0_fine, total, gamma_b0, m0, r2s, pools, fat, shape, os_, slice_axis) -> np.ndarray:
    """Each echo's complex signal on the fine grid (one exponential, or the myelin water pools;
    fat's spectrum beating against water in the fine grid's voxels that ``fat`` names, as
    (flat indices, fat fractions)), k-space cropped to the output grid: (E, X, Y, Z) complex64."""
    fine_shape = total.shape
    signal = np.empty((len(te),) + tuple(shape), np.complex64)
    fat_idx, fat_w = fat
    for e, t in enumerate(te):
        arg = phi0_fine + total * F32(2 * np.pi * gamma_b0 * t)
        if pools is None:
            amp = m0 * np.exp(r2s * F32(-t))
            fine_sig = np.empty(fine_shape, np.complex64)
            fine_sig.real = amp * np.cos(arg)
            fine_sig.imag = amp * np.sin(arg)
            del amp
        else:
            fine_sig = (m0 * pools.decay(t, r2s) * np.exp(1j * arg)).astype(np.complex64)
        del arg
        flat = fine_sig.reshape(-1)
        flat[fat_idx] *= (F32(1) - fat_w) + fat_w * np.complex64(fat_modulation(t, gamma_b0))
        signal[e] = kspace_downsample(fine_sig, os_, slice_axis)
        del fine_sig
    return signal


def _coils_and_noise(signal, out_axes, receive_coils, brain_mask, snr, noise_seq):
    """Multiply ``signal`` in place by the receive profile (mean 1 over the brain) and add complex
    Gaussian noise of SD mean|first echo| / snr over the brain; returns (that SD, 0 for snr inf;
    the profile, None for a uniform coil)."""
    profile = None
    if receive_coils:
        profile = receive_profile(out_axes, int(receive_coils), fov_centre=FOV_CENTRE)
        profile /= F32(profile[brain_mask].mean())
        signal *= profile[None]
    if np.isinf(snr):
        return 0.0, profile
    sigma = float(np.abs(signal[0][brain_mask]).mean() / snr)
    rng = np.random.default_rng(noise_seq)
    for e in range(signal.shape[0]):
        noise = rng.standard_normal((2,) + signal.shape[1:], dtype=np.float32) * F32(sigma)
        signal[e].real += noise[0]
        signal[e].imag += noise[1]
        del noise
    return sigma, profile


def _labels(model, out_axes, vs) -> np.ndarray:
    """Tissue labels on the output grid; voxels mostly inside a vessel take the vessel's label."""
    out_painted = model.paint(out_axes, vs)
    labels = out_painted.labels.astype(np.int16)
    vessel = out_painted.vessel_cover >= 128
    labels[vessel] = out_painted.vessel_type[vessel]
    return labels


def _shape_arg(shape):
    try:
        out = tuple(int(n) for n in shape)
        ok = len(out) == 3 and all(float(n) == int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be 3 integers (voxels), got {shape!r}") from None
    if not ok or min(out) < 8:
        raise ValueError(f"shape must be 3 integers of at least 8 voxels, got {shape!r}")
    return out


def _snr_arg(snr):
    try:
        snr = float(snr)
    except (TypeError, ValueError):
        raise TypeError(f"snr must be a number (or numpy.inf for no noise), got {snr!r}") from None
    if not snr > 0:  # also refuses NaN
        raise ValueError(f"snr must be positive (or numpy.inf for no noise), got {snr}")
    return snr


def _oversample_arg(oversample):
    if isinstance(oversample, (bool, np.bool_)) or not isinstance(oversample, (int, np.integer)):
        raise TypeError(f"oversample must be an integer from 1 to 4, got {oversample!r}")
    if not 1 <= int(oversample) <= 4:
        raise ValueError(f"oversample must be an integer from 1 to 4, got {oversample}")
    return int(oversample)


def _seed_arg(seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)
