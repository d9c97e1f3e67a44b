"""The phantom's tissue table and its result type, and helpers on it (R2* at another field,
reorientation, an oblique B0 direction)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import labels as lbl

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
    t1_s : float
        Longitudinal relaxation time T1 (s) at 3 T, for a spoiled-GRE steady state
        (:func:`steady_state_signal`; used when the simulation is given a TR and flip angle).
    """

    label: int
    chi_ppm: float
    r2star_per_s: float
    m0: float
    t1_s: float


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
#: approximate assumed values. T1 at 3 T (typical adult values, rounded): grey and white
#: matter, CSF, blood, muscle and fat from Stanisz et al. 2005 (MRM 54:507) and Wansapura et
#: al. 1999 (JMRI 9:531), between their values; the iron-rich nuclei shorter than grey matter
#: (Rooney et al. 2007, MRM 57:308); marrow, dura, nerve, calcification and haemorrhage
#: (methaemoglobin) approximate assumed values.
TISSUES: dict[str, Tissue] = {
    "air": Tissue(lbl.AIR, 9.4, 0.0, 0.0, 1.0),
    "csf": Tissue(lbl.CSF, 0.0, 4.0, 1.0, 4.3),
    "ventricle": Tissue(lbl.VENTRICLE, 0.0, 4.0, 1.0, 4.3),
    "gm": Tissue(lbl.GM, 0.02, 16.5, 0.84, 1.6),
    "wm": Tissue(lbl.WM, -0.03, 20.5, 0.70, 1.0),
    "caudate": Tissue(lbl.CAUDATE, 0.07, 19.0, 0.82, 1.4),
    "putamen": Tissue(lbl.PUTAMEN, 0.06, 23.0, 0.80, 1.3),
    "globus_pallidus": Tissue(lbl.PALLIDUS, 0.17, 33.0, 0.72, 1.0),
    "thalamus": Tissue(lbl.THALAMUS, 0.03, 19.5, 0.76, 1.2),
    "red_nucleus": Tissue(lbl.RED_NUCLEUS, 0.12, 27.0, 0.74, 1.0),
    "substantia_nigra": Tissue(lbl.NIGRA, 0.15, 30.0, 0.74, 1.0),
    "dentate": Tissue(lbl.DENTATE, 0.12, 25.0, 0.75, 1.1),
    "cerebellar_gm": Tissue(lbl.CB_GM, 0.01, 16.0, 0.84, 1.5),
    "cerebellar_wm": Tissue(lbl.CB_WM, -0.03, 21.0, 0.70, 1.0),
    "brainstem": Tissue(lbl.BRAINSTEM, -0.02, 21.0, 0.72, 1.1),
    "vein": Tissue(lbl.VEIN, 0.38, 45.0, 0.85, 1.6),
    "sinus": Tissue(lbl.SINUS, 0.38, 45.0, 0.85, 1.6),
    "dura": Tissue(lbl.DURA, -0.05, 60.0, 0.45, 1.0),
    "soft_tissue": Tissue(lbl.SOFT, 0.0, 32.0, 0.80, 1.4),
    "fat": Tissue(lbl.FAT, 0.6, 15.0, 0.90, 0.38),
    "bone": Tissue(lbl.BONE, -2.2, 2000.0, 0.15, 0.3),
    "marrow": Tissue(lbl.MARROW, -0.1, 150.0, 0.60, 0.4),
    "eye": Tissue(lbl.EYE, 0.0, 4.0, 1.0, 4.0),
    "nerve": Tissue(lbl.NERVE, -0.03, 22.0, 0.70, 1.1),
    "calcification": Tissue(lbl.CALCIFICATION, -0.5, 150.0, 0.30, 1.0),
    "haemorrhage": Tissue(lbl.HAEMORRHAGE, 1.0, 120.0, 0.75, 0.6),
}

LABEL_NAMES: dict[int, str] = {t.label: name for name, t in TISSUES.items()}

#: Signal fat fraction of the fatty tissues: subcutaneous and orbital fat, and the diploë's
#: yellow marrow (approximate adult values). Their signal holds fat's spectrum
#: (:data:`FAT_PEAKS_PPM`), which beats against water's from echo to echo.
FAT_FRACTION: dict[str, float] = {"fat": 0.9, "marrow": 0.7}
#: Fat's 1H spectrum: six peaks (ppm from water) and their relative amplitudes (summing to 1),
#: as fitted by Yu et al. 2008 (MRM 60:1122, doi:10.1002/mrm.21737) and used by the ISMRM
#: fat-water toolbox. The main peak, -3.4 ppm, is -434 Hz at 3 T.
FAT_PEAKS_PPM = (-3.80, -3.40, -2.60, -1.94, -0.39, 0.60)
FAT_PEAK_AMPLITUDES = (0.087, 0.693, 0.128, 0.004, 0.039, 0.048)

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


#: T1's field dependence, T1(B0) = T1(3 T)·(B0 / 3 T)^β: β for tissue (Rooney et al. 2007
#: fitted 0.3-0.4 for grey and white matter and blood between 0.2 and 7 T); free water (CSF,
#: the eye's vitreous) does not change with B0, nor, much, does fat.
T1_FIELD_EXPONENT = 0.35
_T1_FIELD_FREE = ("air", "csf", "ventricle", "eye", "fat", "marrow")


def steady_state_signal(t1_3t_s: float, tissue: str, field_strength: float, repetition_time_s: float,
                        flip_angle_deg: float) -> float:
    """The spoiled gradient echo's steady-state signal per unit of proton density at TE = 0,
    ``sin α (1 - E1) / (1 - cos α E1)``, ``E1 = exp(-TR/T1)``, for a tissue of T1 ``t1_3t_s``
    at 3 T (scaled to ``field_strength`` by :data:`T1_FIELD_EXPONENT`).

    References
    ----------
    Ernst RR, Anderson WA. Application of Fourier transform spectroscopy to magnetic
    resonance. Rev Sci Instrum 1966;37:93-102. doi:10.1063/1.1719961

    Rooney WD, Johnson G, Li X, et al. Magnetic field and tissue dependencies of human brain
    longitudinal 1H2O relaxation in vivo. Magn Reson Med 2007;57:308-318. doi:10.1002/mrm.21122
    """
    beta = 0.0 if tissue in _T1_FIELD_FREE else T1_FIELD_EXPONENT
    t1 = float(t1_3t_s) * (float(field_strength) / 3.0) ** beta
    e1 = np.exp(-float(repetition_time_s) / t1)
    a = np.deg2rad(float(flip_angle_deg))
    return float(np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1))


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
