"""Numerical head phantom and its multi-echo gradient-echo (GRE) forward model.

:func:`simulate_head` draws a procedurally generated adult head (seeded, no data files)
and simulates what a 3D multi-echo GRE scan of it would record, together with the ground
truth every qsmflow test, the ``qsmflow demo`` and the benchmarks are measured against.

The head (see :mod:`qsmflow._head_geometry`) has air around the scalp; skin, subcutaneous
fat, skull with diploë; frontal, sphenoid, ethmoid and maxillary sinuses, nasal cavity,
mastoid air cells, middle ears and ear canals, airway; eyes, orbital fat and optic nerves;
a CSF layer, two cerebral hemispheres with a grey-matter ribbon folded into meandering
sulci, interhemispheric and Sylvian fissures with falx and tentorium, cerebellum with
folia, brainstem, lateral/third/fourth ventricles, corpus callosum, caudate, putamen,
globus pallidus, thalamus, red nucleus, substantia nigra, dentate nuclei, hippocampus
and amygdala; dural venous sinuses, deep veins, cortical veins and ~150 thin tortuous
medullary veins (radius 0.2-0.7 mm, a few up to 1.3 mm) at all angles to B0 (vessels
cover fractions of fine voxels, normalised so that each keeps its true cross-section and
hence its magnetic moment); smooth random texture of χ and
R2* within tissues; optionally a calcification and a haemorrhage. A smooth random
deformation, size and position jitter and a random gyral pattern make every seed a
different head.

Forward model (no inverse crime):

1. The anatomy is evaluated on a grid ``oversample`` times finer than the output.
2. The total field is the dipole convolution (Salomir et al. 2003; Marques & Bowtell
   2005) of the full susceptibility map, air taken as the zero reference (tissue χ − 9.4
   ppm, so zero padding is air), zero-padded by half the grid per axis; the body outside
   the field of view (neck, face) adds its field computed on a coarse grid. The local
   field is the field of the χ inside the brain-mask voxels only: what an ideal
   background-field removal leaves.
3. A 2nd-order spherical-harmonic shim (least squares over the brain) is removed from the
   total field, as a scanner's shim does.
4. The complex signal ``M0 exp(-R2* TE) exp(i(φ0 + 2π Δf TE))`` is formed per echo on the
   fine grid and brought to the output grid by keeping the central k-space (what a
   Cartesian acquisition samples): this reproduces intravoxel dephasing and signal voids
   near air-tissue interfaces and Gibbs ringing. Complex Gaussian noise is added last.

Fat is given its susceptibility but no chemical shift; white-matter susceptibility
anisotropy and microstructure effects are not modelled; the receive coil sensitivity is
uniform and the magnitude is proton-density weighted (no T1 saturation, so CSF is
bright). The truth maps are partial-volume averages of the fine grid; labels are
evaluated at the voxel centres.

References
----------
Marques JP, Meineke J, Milovic C, et al. QSM reconstruction challenge 2.0: a realistic in
silico head phantom for MRI data simulation and evaluation of susceptibility mapping
procedures. Magn Reson Med 2021;86:526-542. doi:10.1002/mrm.28716

Marques JP, Bowtell R. Application of a Fourier-based method for rapid calculation of
field inhomogeneity due to spatial variation of magnetic susceptibility. Concepts Magn
Reson B 2005;25B:65-78. doi:10.1002/cmr.b.20034

Salomir R, de Senneville BD, Moonen CT. A fast calculation method for magnetic field
inhomogeneity due to an arbitrary distribution of bulk susceptibility. Concepts Magn
Reson B 2003;19B:26-34. doi:10.1002/cmr.b.10083
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from . import _checks, kernels
from . import _head_geometry as geo
from .constants import GAMMA_BAR_HZ_PER_T

__all__ = ["TISSUES", "Tissue", "HeadPhantom", "simulate_head", "oblique_direction"]

logger = logging.getLogger(__name__)

F32 = np.float32


@dataclass(frozen=True)
class Tissue:
    """Properties of one tissue class at 3 T.

    Attributes
    ----------
    label : int
        Label value in :attr:`HeadPhantom.labels`.
    chi_ppm : float
        Volume susceptibility relative to water/CSF (ppm, SI).
    r2star_per_s : float
        Intrinsic R2* (1/s) at 3 T, without macroscopic dephasing.
    m0 : float
        Apparent proton density (water = 1).
    """

    label: int
    chi_ppm: float
    r2star_per_s: float
    m0: float


#: Tissue classes of the phantom (3 T values; χ relative to water/CSF).
#:
#: Sources: χ of deep grey matter and R2* from Li et al. 2011, Deistung et al. 2013,
#: Péran et al. 2007 and Gelman et al. 1999 (rounded typical adult values); water
#: content (M0) from Neeb et al. 2006; venous blood χ from Jain et al. 2012 (Hct 0.42,
#: Y ≈ 0.65) and R2* from Zhao et al. 2007; air from Schenck 1996 (+9.4 ppm rel. water);
#: cortical bone χ from Hopkins & Wehrli 1997 (−0.90e-6 cgs → −2.2 ppm rel. water) and
#: T2* ≈ 0.5 ms from Du & Bydder 2013; calcification/haemorrhage χ from Chen et al. 2014;
#: grey/white-matter χ and M0 and muscle R2* as in the simulation code accompanying
#: Marques et al. 2021. Fat χ (+0.6 ppm rel. water: lipid is less diamagnetic than
#: water), diploë (a mix of ~25 % bone and fatty marrow), dura and optic nerve are
#: approximate assumed values.
TISSUES: dict[str, Tissue] = {
    "air": Tissue(geo.AIR, 9.4, 0.0, 0.0),
    "csf": Tissue(geo.CSF, 0.0, 4.0, 1.0),
    "ventricle": Tissue(geo.VENTRICLE, 0.0, 4.0, 1.0),
    "gm": Tissue(geo.GM, 0.02, 16.5, 0.84),
    "wm": Tissue(geo.WM, -0.03, 20.5, 0.70),
    "caudate": Tissue(geo.CAUDATE, 0.07, 19.0, 0.82),
    "putamen": Tissue(geo.PUTAMEN, 0.06, 23.0, 0.80),
    "globus_pallidus": Tissue(geo.PALLIDUS, 0.17, 33.0, 0.72),
    "thalamus": Tissue(geo.THALAMUS, 0.03, 19.5, 0.76),
    "red_nucleus": Tissue(geo.RED_NUCLEUS, 0.12, 27.0, 0.74),
    "substantia_nigra": Tissue(geo.NIGRA, 0.15, 30.0, 0.74),
    "dentate": Tissue(geo.DENTATE, 0.12, 25.0, 0.75),
    "cerebellar_gm": Tissue(geo.CB_GM, 0.01, 16.0, 0.84),
    "cerebellar_wm": Tissue(geo.CB_WM, -0.03, 21.0, 0.70),
    "brainstem": Tissue(geo.BRAINSTEM, -0.02, 21.0, 0.72),
    "vein": Tissue(geo.VEIN, 0.38, 45.0, 0.85),
    "sinus": Tissue(geo.SINUS, 0.38, 45.0, 0.85),
    "dura": Tissue(geo.DURA, -0.05, 60.0, 0.45),
    "soft_tissue": Tissue(geo.SOFT, 0.0, 32.0, 0.80),
    "fat": Tissue(geo.FAT, 0.6, 15.0, 0.90),
    "bone": Tissue(geo.BONE, -2.2, 2000.0, 0.15),
    "marrow": Tissue(geo.MARROW, -0.1, 150.0, 0.60),
    "eye": Tissue(geo.EYE, 0.0, 4.0, 1.0),
    "nerve": Tissue(geo.NERVE, -0.03, 22.0, 0.70),
    "calcification": Tissue(geo.CALCIFICATION, -0.5, 150.0, 0.30),
    "haemorrhage": Tissue(geo.HAEMORRHAGE, 1.0, 120.0, 0.75),
}

LABEL_NAMES: dict[int, str] = {t.label: name for name, t in TISSUES.items()}

# Parenchyma gets the smooth χ texture; iron-rich nuclei also an iron gradient.
_PARENCHYMA = (geo.GM, geo.WM, geo.CAUDATE, geo.PUTAMEN, geo.PALLIDUS, geo.THALAMUS, geo.RED_NUCLEUS,
               geo.NIGRA, geo.DENTATE, geo.CB_GM, geo.CB_WM, geo.BRAINSTEM, geo.NERVE)
_IRON_NUCLEI = (geo.CAUDATE, geo.PUTAMEN, geo.PALLIDUS, geo.THALAMUS, geo.RED_NUCLEUS, geo.NIGRA, geo.DENTATE)
_CHI_TEXTURE_PPM = 0.010  # SD of the smooth χ variation within parenchyma
_IRON_TEXTURE = 0.12  # relative SD of χ within iron-rich nuclei
_R2S_TEXTURE = 0.04  # relative SD of R2* within every tissue
_R2S_PER_PPM_IRON = 80.0  # R2* rises ~80 1/s per ppm of iron χ in deep grey matter at 3 T
_TEXTURE_MM = 9.0  # correlation length of the textures

# Body outside the field of view: coarse grid spacing and extension (mm) per side.
_OUTSIDE_SPACING_MM = 4.0
_OUTSIDE_EXTENT_MM = ((24, 24), (24, 48), (144, 16))
# Smallest brain that fits: FOV smaller than this cuts the brain (a warning is logged).
_BRAIN_EXTENT_MM = (130.0, 155.0, 125.0)


@dataclass
class HeadPhantom:
    """A simulated multi-echo GRE dataset with its ground truth.

    Attributes
    ----------
    magnitude : numpy.ndarray
        (X, Y, Z, E) float32 ≥ 0.
    phase : numpy.ndarray
        (X, Y, Z, E) float32, radians wrapped to [-π, π).
    echo_times : numpy.ndarray
        (E,) float64, seconds.
    field_strength : float
        B0 in tesla.
    voxel_size : numpy.ndarray
        (3,) mm.
    b0_direction : numpy.ndarray
        (3,) unit vector of B0 in voxel axes.
    affine : numpy.ndarray
        (4, 4) voxel → world (mm, RAS); ``R.T @ (0, 0, 1) == b0_direction`` with ``R`` the
        affine's rotation; the FOV centre is at the world origin.
    chi : numpy.ndarray
        (X, Y, Z) float32 true susceptibility (ppm, relative to CSF; 0 in air), the
        partial-volume average of the fine simulation grid.
    r2star : numpy.ndarray
        (X, Y, Z) float32 intrinsic R2* (1/s), without macroscopic dephasing
        (partial-volume average).
    m0 : numpy.ndarray
        (X, Y, Z) float32 proton density (partial-volume average).
    labels : numpy.ndarray
        (X, Y, Z) int16 tissue label at each voxel centre (see ``label_names``).
    brain_mask : numpy.ndarray
        (X, Y, Z) bool: brain parenchyma, ventricles and CSF inside the brain's hull
        (≥ half of the voxel), without skull, scalp, dural sinuses or eyes.
    total_field_hz : numpy.ndarray
        (X, Y, Z) float32 field offset (Hz) of all sources, air and the body outside the
        FOV included, after shimming (partial-volume average of the fine grid).
    local_field_ppm : numpy.ndarray
        (X, Y, Z) float32 field (ppm) produced only by the χ inside the brain-mask voxels
        (including partial-volume sinus or bone in its edge voxels), i.e. the field an
        ideal background removal leaves.
    phase_offset : numpy.ndarray
        (X, Y, Z) float32 echo-independent phase φ0 (radians, not wrapped).
    noise_sigma : float
        Standard deviation of the complex Gaussian noise per real/imaginary channel.
    label_names : dict
        Label value → tissue name (keys of :data:`TISSUES`).
    """

    magnitude: np.ndarray
    phase: np.ndarray
    echo_times: np.ndarray
    field_strength: float
    voxel_size: np.ndarray
    b0_direction: np.ndarray
    affine: np.ndarray
    chi: np.ndarray
    r2star: np.ndarray
    m0: np.ndarray
    labels: np.ndarray
    brain_mask: np.ndarray
    total_field_hz: np.ndarray
    local_field_ppm: np.ndarray
    phase_offset: np.ndarray
    noise_sigma: float
    label_names: dict


def oblique_direction(angle_deg: float, axis: str = "x") -> np.ndarray:
    """B0 direction in voxel axes for a slab tilted by ``angle_deg`` about a voxel axis.

    The voxel axes are the world axes rotated by ``angle_deg`` (right-hand rule) about
    ``axis``; B0 is world z. 20° about x is a typical AC-PC aligned axial slab: the voxel
    y axis points anterior-superior and B0 = (0, sin 20°, cos 20°).

    Parameters
    ----------
    angle_deg : float
        Tilt in degrees.
    axis : {"x", "y", "z"}
        Voxel axis of the rotation (a rotation about z leaves B0 along z).

    Returns
    -------
    numpy.ndarray
        (3,) unit vector.

    Raises
    ------
    ValueError
        If ``axis`` is not x, y or z or the angle is not finite.
    """
    try:
        a = float(angle_deg)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"angle_deg must be a number of degrees, got {angle_deg!r}") from exc
    if not np.isfinite(a):
        raise ValueError(f"angle_deg must be finite, got {a}")
    if axis not in ("x", "y", "z"):
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    s, c = np.sin(np.radians(a)), np.cos(np.radians(a))
    return {"x": np.array([0.0, s, c]), "y": np.array([-s, 0.0, c]), "z": np.array([0.0, 0.0, 1.0])}[axis]


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
        B0 (T). Tissue values are 3 T values; the field scales with B0.
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
    for name, value in (("lesions", lesions), ("shim", shim)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    fov = np.asarray(shape) * vs
    if np.any(fov < _BRAIN_EXTENT_MM):
        logger.warning(
            "field of view %s mm is smaller than the brain %s mm: the phantom is cut",
            fov.tolist(),
            list(_BRAIN_EXTENT_MM),
        )

    seq = np.random.SeedSequence(seed)
    head_seq, phase_seq, noise_seq = seq.spawn(3)
    model = geo.HeadModel(head_seq, lesions=bool(lesions))
    fine_shape = tuple(n * os_ for n in shape)
    fine_vs = vs / os_
    fine_axes = _axes(fine_shape, fine_vs)
    model.prepare(fine_vs)

    # 1. anatomy and tissue properties on the fine grid
    t0 = time.perf_counter()
    painted = model.paint(fine_axes, fine_vs)
    logger.info("phantom: anatomy on the %s fine grid in %.1f s", fine_shape, time.perf_counter() - t0)
    chi, r2s, m0, brain, air = _properties(painted, model, fine_axes)
    del painted

    # 2. fields (ppm): total (air as zero reference, body outside the FOV included) and local
    t0 = time.perf_counter()
    # the brain mask holds the voxels at least half inside the brain; the local field is
    # the field of every source inside those voxels (what ideal background removal leaves)
    brain_mask = _block_mean(brain, os_) >= 0.5
    source = np.where(air, F32(0.0), chi - F32(TISSUES["air"].chi_ppm))
    del air
    local_src = np.where(_upsample(brain_mask, os_), chi, F32(0.0))
    total, local = _dipole_fields([source, local_src], fine_vs, b0_dir)
    del source, local_src
    total += _outside_fov_field(model, shape, vs, b0_dir, fine_axes)
    if shim:
        _remove_shim(total, brain, fine_axes)
    logger.info("phantom: fields in %.1f s", time.perf_counter() - t0)

    # 3. ground truth on the output grid (partial-volume averages)
    gamma_b0 = GAMMA_BAR_HZ_PER_T * b0 * 1e-6
    truth = {
        "chi": _block_mean(chi, os_),
        "r2star": _block_mean(r2s, os_),
        "m0": _block_mean(m0, os_),
        "total_field_hz": _block_mean(total, os_) * F32(gamma_b0),
        "local_field_ppm": _block_mean(local, os_),
    }
    del chi, local, brain

    # 4. signal: phase offset, echoes on the fine grid, k-space cropped to the output grid
    t0 = time.perf_counter()
    phi0 = _PhaseOffset(np.random.default_rng(phase_seq), fov)
    phi0_fine = phi0(fine_axes)
    out_axes = _axes(shape, vs)
    signal = np.empty((len(te),) + tuple(shape), np.complex64)
    for e, t in enumerate(te):
        arg = phi0_fine + total * F32(2 * np.pi * gamma_b0 * t)
        amp = m0 * np.exp(r2s * F32(-t))
        fine_sig = np.empty(fine_shape, np.complex64)
        fine_sig.real = amp * np.cos(arg)
        fine_sig.imag = amp * np.sin(arg)
        del arg, amp
        signal[e] = _kspace_downsample(fine_sig, os_)
        del fine_sig
    del phi0_fine, total, m0, r2s
    logger.info("phantom: %d echoes in %.1f s", len(te), time.perf_counter() - t0)

    if np.isinf(snr):
        sigma = 0.0
    else:
        sigma = float(np.abs(signal[0][brain_mask]).mean() / snr)
        rng = np.random.default_rng(noise_seq)
        for e in range(len(te)):
            noise = rng.standard_normal((2,) + tuple(shape), dtype=np.float32) * F32(sigma)
            signal[e].real += noise[0]
            signal[e].imag += noise[1]
            del noise
    magnitude = np.moveaxis(np.abs(signal), 0, -1)
    phase = np.moveaxis(_wrap(np.angle(signal)), 0, -1)
    del signal

    out_painted = model.paint(out_axes, vs)
    labels = out_painted.labels.astype(np.int16)
    vessel = out_painted.vessel_cover >= 128
    labels[vessel] = out_painted.vessel_type[vessel]

    logger.info("phantom: %s at %s mm simulated in %.1f s", shape, vs.tolist(), time.perf_counter() - t_start)
    return HeadPhantom(
        magnitude=np.ascontiguousarray(magnitude, dtype=F32),
        phase=np.ascontiguousarray(phase, dtype=F32),
        echo_times=te.astype(np.float64),
        field_strength=float(b0),
        voxel_size=vs.astype(np.float64),
        b0_direction=b0_dir,
        affine=_affine(shape, vs, b0_dir),
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
    )


# --------------------------------------------------------------------------- arguments


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


# --------------------------------------------------------------------------- helpers


def _axes(shape, vs):
    """Physical coordinates (mm from the FOV centre) of the voxel centres along each axis."""
    return tuple((np.arange(n) - (n - 1) / 2.0) * d for n, d in zip(shape, vs))


def _properties(painted, model, axes):
    """χ (ppm rel. CSF, 0 in air), R2*, M0, brain mask and air mask on the painted grid."""
    n = max(TISSUES[k].label for k in TISSUES) + 1
    lut = np.zeros((3, n), F32)
    for name, t in TISSUES.items():
        lut[:, t.label] = (0.0 if name == "air" else t.chi_ppm, t.r2star_per_s, t.m0)
    lab = painted.labels
    chi, r2s, m0 = lut[0][lab], lut[1][lab], lut[2][lab]
    # smooth random texture: χ in parenchyma (+ iron gradients in the nuclei), R2* everywhere
    rng_fields = [geo.TensorNoise(np.random.default_rng(s), _TEXTURE_MM) for s in model.texture_seeds]
    paren = np.isin(lab, _PARENCHYMA)
    tex = rng_fields[0].grid(*axes)
    chi += np.where(paren, tex * F32(_CHI_TEXTURE_PPM), F32(0.0))
    iron = np.isin(lab, _IRON_NUCLEI)
    tex = rng_fields[1].grid(*axes)
    d_iron = np.where(iron, tex * chi * F32(_IRON_TEXTURE), F32(0.0))
    chi += d_iron
    tex = rng_fields[2].grid(*axes)
    r2s *= F32(1.0) + F32(_R2S_TEXTURE) * tex
    r2s += F32(_R2S_PER_PPM_IRON) * d_iron
    del tex, d_iron, paren, iron
    # blood vessels cover part of a voxel: mix blood with the tissue around them
    cover = painted.vessel_cover.astype(F32) * F32(1.0 / 255.0)
    blood = TISSUES["vein"]
    for arr, value in ((chi, blood.chi_ppm), (r2s, blood.r2star_per_s), (m0, blood.m0)):
        arr += cover * (F32(value) - arr)
    sinus = (lab == geo.SINUS) | ((painted.vessel_cover >= 128) & (painted.vessel_type == geo.SINUS))
    brain = painted.brain & ~sinus
    air = (lab == geo.AIR) & (painted.vessel_cover == 0)
    np.maximum(r2s, F32(0.0), out=r2s)
    return chi, r2s, m0, brain, air


def _dipole_fields(sources, voxel_size, b0_dir):
    """Fields (ppm) of several χ maps on one grid, sharing one dipole kernel."""
    shape = sources[0].shape
    fshape = kernels.fft_shape(shape, [n // 2 for n in shape])
    d = kernels.dipole_kernel(fshape, voxel_size, b0_dir)
    out = []
    for src in sources:
        k = kernels.rfft(kernels.pad(src, fshape))
        k *= d
        field = kernels.irfft(k, fshape)
        del k
        out.append(np.ascontiguousarray(kernels.crop(field, shape), dtype=F32))
        del field
    return out


def _outside_fov_field(model, shape, vs, b0_dir, fine_axes):
    """Field (ppm) inside the FOV of the body outside it (neck, face), on a coarse grid."""
    fov = np.asarray(shape) * vs
    n_in = np.maximum(2, np.round(fov / _OUTSIDE_SPACING_MM)).astype(int)
    step = fov / n_in  # the FOV is tiled exactly by coarse cells
    axes, inside = [], []
    for i in range(3):
        lo, hi = (int(np.ceil(m / step[i])) for m in _OUTSIDE_EXTENT_MM[i])
        idx = np.arange(-lo, n_in[i] + hi)
        axes.append(-fov[i] / 2 + (idx + 0.5) * step[i])
        inside.append(slice(lo, lo + n_in[i]))
    painted = model.paint(axes, step, detail=False, vessels=False)
    chi = np.zeros(painted.labels.shape, F32)
    for name, t in TISSUES.items():
        if name != "air":
            chi[painted.labels == t.label] = t.chi_ppm - TISSUES["air"].chi_ppm
    chi[tuple(inside)] = 0.0
    field = kernels.forward_field(chi, step, b0_dir)
    # interpolate from the cells inside the FOV only: the field jumps across the FOV
    # boundary where the body is cut, and the fine grid lies entirely inside it
    coarse = _interp_separable(field[tuple(inside)], [a[s] for a, s in zip(axes, inside)], fine_axes)
    return _harmonic_interior(coarse, [a[1] - a[0] for a in fine_axes])


def _harmonic_interior(g, spacing):
    """The harmonic function equal to ``g`` on the grid's outer faces (Dirichlet problem).

    The body outside the FOV has no sources inside it, so its field there is harmonic;
    a coarse-grid computation cut at the FOV and interpolated is not (with oblique B0
    the sharp cut rings through the volume and V-SHARP could not remove it). Solving
    Laplace's equation with the interpolated values on the boundary restores a field
    of purely external sources: ``u = g + v`` with ``∇²v = -∇²g`` inside, ``v = 0`` on the
    faces, by a sine-transform Poisson solver.
    """
    g = np.asarray(g, np.float64)
    inner = tuple(slice(1, -1) for _ in range(3))
    lap = np.zeros(tuple(n - 2 for n in g.shape))
    for ax, h in enumerate(spacing):
        lo = [slice(1, -1)] * 3
        hi = [slice(1, -1)] * 3
        lo[ax], hi[ax] = slice(0, -2), slice(2, None)
        lap += (g[tuple(lo)] - 2 * g[inner] + g[tuple(hi)]) / (h * h)
    eig = 0.0
    for ax, (n, h) in enumerate(zip(lap.shape, spacing)):
        lam = (2 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)) - 2) / (h * h)
        view = [1, 1, 1]
        view[ax] = n
        eig = eig + lam.reshape(view)
    v = sfft.idstn(sfft.dstn(-lap, type=1, workers=-1) / eig, type=1, workers=-1)
    out = g.copy()
    out[inner] += v
    return out.astype(F32)


def _interp_separable(a, src_axes, dst_axes):
    """Trilinear interpolation of ``a`` (on ``src_axes``) at the grid ``dst_axes``."""
    out = a
    for ax in range(3):
        src, dst = np.asarray(src_axes[ax]), np.asarray(dst_axes[ax])
        pos = np.clip((dst - src[0]) / (src[1] - src[0]), 0, src.size - 1)
        i0 = np.minimum(pos.astype(int), src.size - 2)
        w = (pos - i0).astype(F32)
        view = [1, 1, 1]
        view[ax] = -1
        w = w.reshape(view)
        out = np.take(out, i0, axis=ax) * (1 - w) + np.take(out, i0 + 1, axis=ax) * w
    return out.astype(F32)


def _remove_shim(field, mask, axes):
    """Subtract (in place) the least-squares 0th-2nd order spherical harmonics over ``mask``."""
    step = max(1, int(round(np.cbrt(mask.sum() / 1.5e6))))
    sub = mask[::step, ::step, ::step]
    idx = np.nonzero(sub)
    x, y, z = (axes[i][::step][idx[i]] / 100.0 for i in range(3))

    def basis(x, y, z):
        return [np.ones_like(x * y * z), x, y, z, x * y, x * z, y * z, x * x - y * y, 2 * z * z - x * x - y * y]

    a = np.stack(basis(x, y, z), 1)
    c = np.linalg.lstsq(a, field[::step, ::step, ::step][idx].astype(np.float64), rcond=None)[0]
    gx, gy, gz = (np.asarray(axes[i]) / 100.0 for i in range(3))
    gx, gy, gz = gx[:, None, None], gy[None, :, None], gz[None, None, :]
    field -= (c[0] + c[1] * gx + (c[7] - c[8]) * gx * gx).astype(F32)
    field -= (c[2] * gy - (c[7] + c[8]) * gy * gy + c[4] * gx * gy).astype(F32)
    field -= (c[3] * gz + 2 * c[8] * gz * gz + c[5] * gx * gz + c[6] * gy * gz).astype(F32)
    logger.debug("phantom: shim coefficients %s", np.round(c, 3).tolist())


class _PhaseOffset:
    """Smooth random φ0: a 3rd-order polynomial spanning 2-5 rad over the FOV plus a constant."""

    def __init__(self, rng, fov):
        self.half = np.asarray(fov, float) / 2
        self.powers = [(i, j, k) for i in range(4) for j in range(4) for k in range(4) if 0 < i + j + k <= 3]
        coef = rng.normal(0, 1, len(self.powers)) / np.array([1.0 + (i + j + k) for i, j, k in self.powers])
        t = np.linspace(-0.8, 0.8, 9)
        g = np.meshgrid(t, t, t, indexing="ij")
        vals = sum(c * g[0] ** i * g[1] ** j * g[2] ** k for c, (i, j, k) in zip(coef, self.powers))
        self.coef = coef * rng.uniform(2.0, 5.0) / np.ptp(vals)
        self.offset = rng.uniform(-np.pi, np.pi)

    def __call__(self, axes):
        u = [np.asarray(a) / h for a, h in zip(axes, self.half)]
        out = np.full(tuple(a.size for a in axes), F32(self.offset), F32)
        for c, (i, j, k) in zip(self.coef, self.powers):
            ux, uy, uz = ((v**p).astype(F32) for v, p in zip(u, (i, j, k)))
            out += F32(c) * ux[:, None, None] * uy[None, :, None] * uz[None, None, :]
        return out


def _block_mean(a, f):
    """Average of ``f``×``f``×``f`` blocks (partial volume of the fine grid)."""
    if f == 1:
        return np.asarray(a, F32).copy()
    x, y, z = (n // f for n in a.shape)
    return a.reshape(x, f, y, f, z, f).mean(axis=(1, 3, 5), dtype=np.float64).astype(F32)


def _upsample(a, f):
    """Repeat each voxel ``f`` times along every axis (inverse of the block structure)."""
    if f == 1:
        return a.copy()
    x, y, z = a.shape
    return np.broadcast_to(a[:, None, :, None, :, None], (x, f, y, f, z, f)).reshape(x * f, y * f, z * f)


def _kspace_downsample(sig, f):
    """Keep the central k-space of a fine complex image: the output-grid image a scanner samples.

    One axis at a time (FFT, keep the lowest ``n/f`` frequencies, inverse FFT), with a
    linear phase that centres each output voxel on its block of fine voxels.
    """
    if f == 1:
        return sig.astype(np.complex64)
    out = sig
    for ax in range(3):
        n_in = out.shape[ax]
        n_out = n_in // f
        k = sfft.fft(out, axis=ax, workers=-1)
        keep = np.r_[0 : (n_out + 1) // 2, n_in - n_out // 2 : n_in]
        k = np.take(k, keep, axis=ax)
        freq = np.r_[0 : (n_out + 1) // 2, -(n_out // 2) : 0]
        shift = np.exp(2j * np.pi * freq * ((f - 1) / 2.0) / n_in).astype(np.complex64) / F32(f)
        view = [1, 1, 1]
        view[ax] = -1
        k *= shift.reshape(view)
        out = sfft.ifft(k, axis=ax, workers=-1)
        del k
    return out.astype(np.complex64)


def _wrap(phase):
    """Wrap to [-π, π) in float32 (the largest float32 below π is the upper bound)."""
    w = np.mod(phase.astype(np.float64) + np.pi, 2 * np.pi) - np.pi
    hi = np.nextafter(F32(np.pi), F32(0))
    return np.clip(w.astype(F32), -hi, hi)


def _affine(shape, vs, b0_dir):
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
