"""Physical constants and named defaults, each with the reason for its value."""

# Proton gyromagnetic ratio over 2π (CODATA 2018: 42.577 478 MHz/T).
# field(ppm) · 1e-6 · GAMMA_BAR_HZ_PER_T · B0(T) = off-resonance in Hz.
GAMMA_BAR_HZ_PER_T = 42.577478e6

# Echo times are stored in seconds (BIDS EchoTime). No GRE echo lasts a second,
# so a value above this is almost certainly milliseconds.
MAX_ECHO_TIME_S = 1.0
# Gradient echoes end long before this (s): tissue T2* is 10-80 ms at 1.5-7 T and even CSF
# has lost its signal by 0.2 s; a longer echo time is a wrong value or unit.
MAX_GRE_ECHO_TIME_S = 0.2

# Clinical and research scanners run from 0.35 T to 11.7 T; 0 or 100 is a typo.
FIELD_STRENGTH_RANGE_T = (0.05, 21.2)

# Two affines are "the same grid" when every entry agrees within this (mm):
# dcm2niix writes float32 affines, so per-echo files differ in the 5th digit.
AFFINE_TOLERANCE_MM = 1e-3

# Default V-SHARP radii (mm): Wu et al. 2012 used spheres from 12 mm down to one
# voxel; below 2 mm the kernel is too small to reject background on 1 mm data.
VSHARP_RADII_MM = tuple(float(r) for r in range(12, 1, -1))

# Truncation threshold of the V-SHARP deconvolution (Wu et al. 2012; Schweser 2011).
VSHARP_THRESHOLD = 0.05

# Closed-form L2 gradient regularisation weight (mm², gradients per mm). A sweep on
# the 1 mm benchmark head (0.003 / 0.01 / 0.03) put the NRMSE minimum between 0.01
# (oblique) and 0.03 (axial, SNR 40); an automatic choice is to replace it.
L2_LAMBDA = 0.02

# T2* is reported as 1/R2*, capped here (s): beyond ~ CSF's T2* the fit cannot tell
# values apart with echoes under 50 ms, and R2* ≤ 0 has no finite T2*.
T2STAR_CAP_S = 0.5

# R2* is clipped to [0, this] 1/s: skull and air have no meaningful decay rate
# beyond what the first echo interval can resolve.
R2STAR_CAP_PER_S = 1000.0

# TKD truncation threshold on |D| (D in [-2/3, 1/3]); QSM.jl's default. Lower keeps more
# of the cone at the price of streaks; the bias correction divides out the scaling.
TKD_THRESHOLD = 0.15

# MEDI edge mask: the share of gradient components (three per voxel) taken as edges.
# MEDI's "percentage 0.9" counts components over voxels, i.e. 30 % per axis. Chosen on the
# benchmark matrix's worst row (MEDI+0 and TFI): 30 / 20 / 15 / 10 % give 82.0 / 76.4 / 74.2 /
# 73.2 % χ NRMSE on it (two echoes 2.3/4.6 ms). 10 % flattens the deep grey nuclei on coarse
# data (5 mm head: slope 0.89 / 0.87 / 0.84 at 20 / 15 / 10 %, below the matrix's 0.85) and
# costs the other rows 0.1-0.7 points against 20 %; 15 % keeps the slope, and every other row
# is within +0.5 points of 20 % (SNR 20 37.1 -> 37.6, the rest +0.3 or less; benchmarks/README.md); 40 % was
# worse than 30 %.
MEDI_EDGE_FRACTION = 0.15

# MEDI's data weights taper toward the edge of the local field's region: the noise there is
# taken as (1 + TAPER·exp(-(d - h)/TAPER_MM)) times the noise map, d the distance (mm) to the
# region's outside, h the smallest voxel side (so the outermost voxel gets 1 + TAPER). A
# background removal's error is largest at the region's edge (LBV takes the local field to be
# zero on it), which the thermal noise map does not hold. On the benchmark matrix's twelve
# MEDI+0 rows it gained 0.6-1.7 points on each, the worst (SNR 20) 37.6 -> 37.0 % and the
# 1 mm head 27.9 -> 26.5 %; on the 1 mm head's captured problem, with the weight fixed, a taper
# of 1 / 3 / 10 over 2 mm gave 27.0 / 26.6 / 27.6 %, 3 over 1 / 2 / 4 mm 26.7 / 26.6 / 26.8 %
# (benchmarks/README.md, stop 38).
MEDI_EDGE_TAPER = 3.0
MEDI_EDGE_TAPER_MM = 2.0

# TFI's data weights taper toward a face of the field of view that the brain leaves through a
# narrow section (the brainstem through the bottom of a tilted slab): the noise there is taken
# as (1 + FACE_TAPER·exp(-d/FACE_TAPER_MM)) times the noise map, d the distance (mm) from the
# face. The field near such a face holds the field of sources beyond it (the neck, the body),
# which TFI's background sources reach last (benchmarks/README.md, "TFI on oblique heads").
TFI_FACE_TAPER = 10.0
TFI_FACE_TAPER_MM = 10.0

# MEDI+0 CSF-uniformity weight, relative to the data term (weights of mean 1, ppm). With the CSF
# weights 0.3 and 1 tie on the matrix (every row within 0.4 points, worst row 82.0 % both); 0.3
# lets the weights' scan-to-scan jitter move χ less (χ SD map in CSF 0.74 / 0.62 of the spread
# at SNR 40 / 100 against 0.66 / 0.53); on the 1 mm row's captured problem
# 0.1 costs 0.2 points, 0.03 1.1 points.
CSF_LAMBDA = 0.3

# CSF weight from R2* (1/s): 1 up to FULL, 0 from ZERO on, linear between. CSF decays at
# 2-5/s, grey and white matter at 15-35/s at 3 T and 10-20/s at 1.5 T; partial-volume voxels
# get a share. Voxels whose R2* noise SD exceeds the ramp's width (two short echoes, low
# SNR) get no weight. Chosen on the benchmark matrix (benchmarks/README.md, Benchmark matrix).
CSF_R2STAR_FULL_PER_S = 4.0
CSF_R2STAR_ZERO_PER_S = 8.0

# Echoes spanning less than this (s) cannot tell CSF from tissue by R2*: across the ramp's
# 4/s the signal then changes by less than 4 % more between the first and last echo, which
# systematic errors between echoes (partial volume, ringing, eddy currents; not in the R2*
# noise map) can reach. A judgement, not fitted: two echoes at 2.3/4.6 ms (the Philips head,
# where R2* put "CSF" along the brain's edge and not in the ventricles) differ by 0.9 %;
# every other matrix row spans 16 ms or more.
CSF_MIN_ECHO_SPAN_S = 0.010

# Echoes spanning less than this (s): R2* is fitted to magnitudes whose k-space is tapered by
# a Tukey window of this share (relaxometry.suppress_ringing). The k-space cut-off's ringing
# differs from echo to echo (bright fat and marrow dephase differently from the brain) and,
# over a short span, each 1 % of it moves R2* by 1/span: on the two-echo 2x2x3 mm matrix head
# (2.3/4.6 ms) the noise-free R2* read 7.2/s MAD and 12.2/s RMS off the truth, 1.0 and 4.2/s
# with the taper (share 0.3 / 0.6 / 0.8 / 1.0: MAD 1.4 / 1.0 / 1.0 / 1.2/s); on the matrix's
# multi-echo rows (span 16-35 ms) the taper's lost resolution costs more than the ringing
# (1 mm: RMS 2.9 -> 4.7/s). The span limit is the CSF rule's, for the same reason.
R2STAR_RINGING_SPAN_S = CSF_MIN_ECHO_SPAN_S
R2STAR_RINGING_TAPER = 0.6

# Less CSF than this (mL, summed weights) is not a reference: adult lateral ventricles hold
# 7-25 mL, so a smaller find is noise, partial volume or a field of view that misses the CSF.
CSF_MIN_VOLUME_ML = 1.0

# TV weight (ppm·mm, data weights of mean 1) used when no noise map allows an automatic
# choice: the optimum of a sweep on the 1 mm benchmark head at SNR 100.
TV_ALPHA = 1e-4

# R2* fits use an echo only while its magnitude stays above this many noise σ (and
# every echo before it does): below ~3σ the Rician floor lifts the magnitude and
# flattens the decay (Feng et al. 2013: truncation is the robust simple remedy).
R2STAR_NOISE_FLOOR_K = 3.0

# Macroscopic-gradient correction: echoes whose intravoxel dephasing factor F(TE)
# has fallen below this are not used (1/F amplifies noise and the sinc model fails
# near its zeros).
GRADIENT_CORRECTION_MIN_FACTOR = 0.3
