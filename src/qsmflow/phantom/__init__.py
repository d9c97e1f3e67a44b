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

Fat (0.9 of the signal of subcutaneous and orbital fat, 0.7 of the diploë's marrow) has its
susceptibility and its six-peak spectrum (Yu et al. 2008; -434 Hz at 3 T for the main peak),
but no chemical-shift displacement along the readout; white-matter susceptibility
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

from .dataset import phantom_paths, write_phantom_dataset
from .model import LABEL_NAMES, TISSUES, HeadPhantom, Tissue, oblique_direction, r2star_at_field, reorient
from .simulate import simulate_head

__all__ = ["LABEL_NAMES", "TISSUES", "Tissue", "HeadPhantom", "simulate_head", "oblique_direction", "phantom_paths",
           "r2star_at_field", "reorient", "write_phantom_dataset"]
