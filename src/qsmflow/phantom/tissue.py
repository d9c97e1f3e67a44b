"""Tissue property maps of the numerical head phantom (private helper of :mod:`qsmflow.phantom`).

Turns a painted label grid into susceptibility, R2* and proton-density maps: the values of
the tissue table :data:`qsmflow.phantom.TISSUES`, a smooth random texture within tissues
(with iron gradients in the deep grey nuclei), and blood mixed in where vessels cover part
of a voxel.
"""

from __future__ import annotations

import numpy as np

from .labels import (
    AIR,
    BRAINSTEM,
    CAUDATE,
    CB_GM,
    CB_WM,
    DENTATE,
    GM,
    NERVE,
    NIGRA,
    PALLIDUS,
    PUTAMEN,
    RED_NUCLEUS,
    SINUS,
    THALAMUS,
    WM,
)
from .procedural import TensorNoise

F32 = np.float32

# Parenchyma gets the smooth χ texture; iron-rich nuclei also an iron gradient.
_PARENCHYMA = (GM, WM, CAUDATE, PUTAMEN, PALLIDUS, THALAMUS, RED_NUCLEUS, NIGRA, DENTATE, CB_GM, CB_WM, BRAINSTEM, NERVE)
_IRON_NUCLEI = (CAUDATE, PUTAMEN, PALLIDUS, THALAMUS, RED_NUCLEUS, NIGRA, DENTATE)
_CHI_TEXTURE_PPM = 0.010  # SD of the smooth χ variation within parenchyma
_IRON_TEXTURE = 0.12  # relative SD of χ within iron-rich nuclei
_R2S_TEXTURE = 0.04  # relative SD of R2* within every tissue
_R2S_PER_PPM_IRON = 80.0  # R2* rises ~80 1/s per ppm of iron χ in deep grey matter at 3 T
_TEXTURE_MM = 9.0  # correlation length of the textures


def tissue_properties(painted, model, axes, tissues, saturation=None):
    """χ (ppm rel. CSF, 0 in air), R2*, M0, brain mask and air mask on the painted grid.

    ``tissues`` is the tissue table (:data:`qsmflow.phantom.TISSUES`); ``model`` the
    :class:`~qsmflow.phantom.geometry.HeadModel` whose texture seeds are used.
    ``saturation`` (a tissue name → factor mapping, e.g. from
    :func:`qsmflow.phantom.model.steady_state_signal`) scales each tissue's M0 by its T1
    weighting; None keeps the proton density alone.
    """
    n = max(tissues[k].label for k in tissues) + 1
    lut = np.zeros((3, n), F32)
    for name, t in tissues.items():
        lut[:, t.label] = (0.0 if name == "air" else t.chi_ppm, t.r2star_per_s,
                           t.m0 * (1.0 if saturation is None else saturation[name]))
    lab = painted.labels
    chi, r2s, m0 = lut[0][lab], lut[1][lab], lut[2][lab]
    # smooth random texture: χ in parenchyma (+ iron gradients in the nuclei), R2* everywhere
    rng_fields = [TensorNoise(np.random.default_rng(s), _TEXTURE_MM) for s in model.texture_seeds]
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
    blood = tissues["vein"]
    blood_m0 = blood.m0 * (1.0 if saturation is None else saturation["vein"])
    for arr, value in ((chi, blood.chi_ppm), (r2s, blood.r2star_per_s), (m0, blood_m0)):
        arr += cover * (F32(value) - arr)
    sinus = (lab == SINUS) | ((painted.vessel_cover >= 128) & (painted.vessel_type == SINUS))
    brain = painted.brain & ~sinus
    air = (lab == AIR) & (painted.vessel_cover == 0)
    np.maximum(r2s, F32(0.0), out=r2s)
    return chi, r2s, m0, brain, air
