"""Numerical head phantom and its multi-echo gradient-echo (GRE) forward model.

:func:`simulate_head` draws a procedurally generated adult head (seeded, no data files)
and simulates what a 3D multi-echo GRE scan of it would record, together with the ground
truth every qsmflow test, the ``qsmflow demo`` and the benchmarks are measured against.

The head (see :mod:`qsmflow.phantom.geometry`) has air around the scalp; skin, subcutaneous
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
   near air-tissue interfaces and Gibbs ringing. For a 2D multi-slice acquisition the
   slice axis is averaged instead (a box slice profile, with its through-slice dephasing).
   Complex Gaussian noise is added last.

Fat is given its susceptibility but no chemical shift; white-matter susceptibility
anisotropy and microstructure effects are not modelled; the magnitude is proton-density
weighted (no T1 saturation, so CSF is bright) times the root-sum-of-squares sensitivity of a
32-channel receive array (bright rim, darker centre). Tissue R2* is given at 3 T; its
susceptibility-driven part scales with B0. The truth maps are partial-volume averages of the fine grid; labels are
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

from .._shared import checks as _checks
from . import labels as lbl
from .geometry import FOV_CENTRE, HeadModel
from .myelin import MyelinWater
from .fields import dipole_fields, outside_fov_field, remove_shim
from .signal import (PhaseOffset, affine, block_mean, kspace_downsample, receive_profile, upsample,
                              voxel_axes, wrap)
from .tissue import tissue_properties
from .._shared import units
from .dataset import phantom_paths, write_phantom_dataset

__all__ = ["TISSUES", "Tissue", "HeadPhantom", "simulate_head", "oblique_direction", "phantom_paths", "r2star_at_field",
           "reorient", "write_phantom_dataset"]

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
    "air": Tissue(lbl.AIR, 9.4, 0.0, 0.0),
    "csf": Tissue(lbl.CSF, 0.0, 4.0, 1.0),
    "ventricle": Tissue(lbl.VENTRICLE, 0.0, 4.0, 1.0),
    "gm": Tissue(lbl.GM, 0.02, 16.5, 0.84),
    "wm": Tissue(lbl.WM, -0.03, 20.5, 0.70),
    "caudate": Tissue(lbl.CAUDATE, 0.07, 19.0, 0.82),
    "putamen": Tissue(lbl.PUTAMEN, 0.06, 23.0, 0.80),
    "globus_pallidus": Tissue(lbl.PALLIDUS, 0.17, 33.0, 0.72),
    "thalamus": Tissue(lbl.THALAMUS, 0.03, 19.5, 0.76),
    "red_nucleus": Tissue(lbl.RED_NUCLEUS, 0.12, 27.0, 0.74),
    "substantia_nigra": Tissue(lbl.NIGRA, 0.15, 30.0, 0.74),
    "dentate": Tissue(lbl.DENTATE, 0.12, 25.0, 0.75),
    "cerebellar_gm": Tissue(lbl.CB_GM, 0.01, 16.0, 0.84),
    "cerebellar_wm": Tissue(lbl.CB_WM, -0.03, 21.0, 0.70),
    "brainstem": Tissue(lbl.BRAINSTEM, -0.02, 21.0, 0.72),
    "vein": Tissue(lbl.VEIN, 0.38, 45.0, 0.85),
    "sinus": Tissue(lbl.SINUS, 0.38, 45.0, 0.85),
    "dura": Tissue(lbl.DURA, -0.05, 60.0, 0.45),
    "soft_tissue": Tissue(lbl.SOFT, 0.0, 32.0, 0.80),
    "fat": Tissue(lbl.FAT, 0.6, 15.0, 0.90),
    "bone": Tissue(lbl.BONE, -2.2, 2000.0, 0.15),
    "marrow": Tissue(lbl.MARROW, -0.1, 150.0, 0.60),
    "eye": Tissue(lbl.EYE, 0.0, 4.0, 1.0),
    "nerve": Tissue(lbl.NERVE, -0.03, 22.0, 0.70),
    "calcification": Tissue(lbl.CALCIFICATION, -0.5, 150.0, 0.30),
    "haemorrhage": Tissue(lbl.HAEMORRHAGE, 1.0, 120.0, 0.75),
}

LABEL_NAMES: dict[int, str] = {t.label: name for name, t in TISSUES.items()}

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
    mwf : numpy.ndarray or None
        (X, Y, Z) float32 myelin water fraction (0-1) when simulated with ``myelin_water``.
    slice_axis : int or None
        Slice axis of a simulated 2D multi-slice acquisition; None for 3D.
    receive_sensitivity : numpy.ndarray or None
        (X, Y, Z) float32 receive-coil sensitivity the signal was multiplied by (mean 1
        over the brain); None for a uniform one. The magnitude at TE = 0 is
        ``m0 * receive_sensitivity``.
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
    mwf: np.ndarray | None = None
    slice_axis: int | None = None
    receive_sensitivity: np.ndarray | None = None


# R2* (1/s) below this is taken as field-independent (intrinsic R2 of tissue water and
# CSF); the excess, R2' from iron, myelin and deoxyhaemoglobin, scales linearly with B0.
# Grey matter then goes 11 / 16.5 / 31 1/s and white matter 13 / 20.5 / 40 1/s at
# 1.5 / 3 / 7 T, close to published values (Peters et al. 2007; Yao et al. 2009).
_R2STAR_INTRINSIC_PER_S = 6.0


def r2star_at_field(r2star_3t, field_strength: float):
    """Tissue R2* (1/s) at ``field_strength`` (T) from its 3 T value.

    ``R2* = min(R2*₃ₜ, 6) + max(R2*₃ₜ − 6, 0)·B0/3``: the reversible part R2' scales
    with B0 (static dephasing regime), the intrinsic part does not.

    References
    ----------
    Peters AM, Brookes MJ, Hoogenraad FG, et al. T2* measurements in human brain at 1.5,
    3 and 7 T. Magn Reson Imaging 2007;25:748-753. doi:10.1016/j.mri.2007.02.014

    Yao B, Li TQ, van Gelderen P, et al. Susceptibility contrast in high field MRI of
    human brain as a function of tissue iron content. NeuroImage 2009;44:1259-1266.
    doi:10.1016/j.neuroimage.2008.10.029
    """
    r = np.asarray(r2star_3t, F32)
    if field_strength == 3.0:
        return r
    base = F32(_R2STAR_INTRINSIC_PER_S)
    return np.minimum(r, base) + np.maximum(r - base, F32(0)) * F32(field_strength / 3.0)


def reorient(head: HeadPhantom, order) -> HeadPhantom:
    """The same scan with its voxel axes permuted: a sagittal or coronal slab of the head.

    ``order[i]`` is the simulation axis that becomes voxel axis ``i``: ``(1, 2, 0)``
    gives a sagittal slab (slices left-right, voxel axes anterior and superior in
    plane), ``(0, 2, 1)`` a coronal one. Every array, the voxel size, B0 in voxel axes,
    the affine (same world positions) and the slice axis of a 2D scan follow.
    """
    order = tuple(int(o) for o in order)
    if sorted(order) != [0, 1, 2]:
        raise ValueError(f"order must be a permutation of (0, 1, 2), got {order}")
    vol = lambda a: None if a is None else np.ascontiguousarray(np.transpose(a, order + tuple(range(3, a.ndim))))
    aff = head.affine.copy()
    aff[:, :3] = head.affine[:, list(order)]
    fields = {name: vol(getattr(head, name)) for name in (
        "magnitude", "phase", "chi", "r2star", "m0", "labels", "brain_mask", "total_field_hz", "local_field_ppm",
        "phase_offset", "mwf", "receive_sensitivity")}
    return HeadPhantom(
        **fields, echo_times=head.echo_times, field_strength=head.field_strength,
        voxel_size=head.voxel_size[list(order)], b0_direction=head.b0_direction[list(order)], affine=aff,
        noise_sigma=head.noise_sigma, label_names=head.label_names,
        slice_axis=None if head.slice_axis is None else order.index(head.slice_axis))


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
    myelin_water=False,
    slice_axis=None,
    receive_coils=32,
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
    if isinstance(receive_coils, (bool, np.bool_)) or not isinstance(receive_coils, (int, np.integer)) \
            or receive_coils < 0:
        raise ValueError(f"receive_coils must be a number of channels (0 for uniform), got {receive_coils!r}")
    if slice_axis is not None and (isinstance(slice_axis, (bool, np.bool_)) or slice_axis not in (0, 1, 2)):
        raise ValueError(f"slice_axis must be 0, 1, 2 or None (3D), got {slice_axis!r}")
    for name, value in (("lesions", lesions), ("shim", shim), ("myelin_water", myelin_water)):
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
    model = HeadModel(head_seq, lesions=bool(lesions))
    fine_shape = tuple(n * os_ for n in shape)
    fine_vs = vs / os_
    fine_axes = voxel_axes(fine_shape, fine_vs)
    model.prepare(fine_vs)

    # 1. anatomy and tissue properties on the fine grid
    t0 = time.perf_counter()
    painted = model.paint(fine_axes, fine_vs)
    logger.info("phantom: anatomy on the %s fine grid in %.1f s", fine_shape, time.perf_counter() - t0)
    chi, r2s, m0, brain, air = tissue_properties(painted, model, fine_axes, TISSUES)
    r2s = r2star_at_field(r2s, b0)
    pools = MyelinWater(painted.labels, fine_axes, np.random.default_rng(phase_seq.spawn(1)[0])) \
        if myelin_water else None
    del painted

    # 2. fields (ppm): total (air as zero reference, body outside the FOV included) and local
    t0 = time.perf_counter()
    # the brain mask holds the voxels at least half inside the brain; the local field is
    # the field of every source inside those voxels (what ideal background removal leaves)
    brain_mask = block_mean(brain, os_) >= 0.5
    source = np.where(air, F32(0.0), chi - F32(TISSUES["air"].chi_ppm))
    del air
    local_src = np.where(upsample(brain_mask, os_), chi, F32(0.0))
    total, local = dipole_fields([source, local_src], fine_vs, b0_dir)
    del source, local_src
    total += outside_fov_field(model, shape, vs, b0_dir, fine_axes, TISSUES)
    if shim:
        remove_shim(total, brain, fine_axes)
    logger.info("phantom: fields in %.1f s", time.perf_counter() - t0)

    # 3. ground truth on the output grid (partial-volume averages)
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
    del chi, local, brain

    # 4. signal: phase offset, echoes on the fine grid, k-space cropped to the output grid
    t0 = time.perf_counter()
    phi0 = PhaseOffset(np.random.default_rng(phase_seq), fov)
    phi0_fine = phi0(fine_axes)
    out_axes = voxel_axes(shape, vs)
    signal = np.empty((len(te),) + tuple(shape), np.complex64)
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
        signal[e] = kspace_downsample(fine_sig, os_, slice_axis)
        del fine_sig
    del phi0_fine, total, m0, r2s
    logger.info("phantom: %d echoes in %.1f s", len(te), time.perf_counter() - t0)

    profile = None
    if receive_coils:
        profile = receive_profile(out_axes, int(receive_coils), fov_centre=FOV_CENTRE)
        profile /= F32(profile[brain_mask].mean())
        signal *= profile[None]
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
    phase = np.moveaxis(wrap(np.angle(signal)), 0, -1)
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


