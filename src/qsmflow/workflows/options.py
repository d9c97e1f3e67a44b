"""What a run is asked for (``Options``: a method per stage and its options), what it gives
(``QSMResult``), and the "auto" choices by voxel size."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .. import (
    bgremove,
    fieldmap,
    inversion,
    masking,
    phaseoffset,
    reference,
    relaxometry,
    unwrap,
)
from .._shared import checks as _checks
from .._shared.constants import CSF_MIN_ECHO_SPAN_S
from .._shared.registry import choose

log = logging.getLogger(__name__)

STAGES = {
    "mask": masking.METHODS,
    "phase_offset": phaseoffset.METHODS,
    "unwrap": unwrap.METHODS,
    "field_fit": fieldmap.METHODS,
    "bgremove": bgremove.METHODS,
    "inversion": inversion.METHODS,
    "reference": reference.METHODS,
    "r2star": relaxometry.METHODS,
}


@dataclass
class Options:
    """Which method each stage uses, and keyword options per stage."""

    mask: str = "bet"
    phase_offset: str = "mcpc3ds"
    unwrap: str = "romeo"
    field_fit: str = "complex"
    bgremove: str = "auto"
    inversion: str = "auto"
    reference: str = "csf"
    r2star: str = "loglinear"
    r2star_gradient_correction: bool = False
    swi: bool = False
    minip_slab_mm: float = 16.0
    phase_sign: int = 1
    bg_polynomial: int = 0
    # after LBV, with an inversion that can restart from χ (MEDI): add the tissue field LBV
    # took for background, estimated from χ (bgremove.lbv_boundary_field), and invert again
    lbv_refine: bool = True
    peel_noise_factor: float = masking.PEEL_NOISE_FACTOR
    chi_sd: bool = True
    stage_options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.phase_sign not in (1, -1):
            raise ValueError(f"phase_sign must be 1 or -1, got {self.phase_sign}")
        _checks.positive("minip_slab_mm", self.minip_slab_mm)
        _checks.positive("peel_noise_factor", self.peel_noise_factor, allow_zero=True)
        if self.bg_polynomial not in range(5):
            raise ValueError(f"bg_polynomial must be an order from 0 (off) to 4, got {self.bg_polynomial}")
        for stage, methods in STAGES.items():
            if getattr(self, stage) != "auto" or stage not in ("bgremove", "inversion"):
                choose(methods, getattr(self, stage), stage)
        unknown = set(self.stage_options) - set(STAGES)
        if unknown:
            raise ValueError(f"stage_options has unknown stages {sorted(unknown)}; stages are {sorted(STAGES)}")


@dataclass
class QSMResult:
    """Every intermediate of a run, on the input grid (None for stages not run)."""

    mask: np.ndarray
    phase_offset: np.ndarray | None = None
    unwrapped_phase: np.ndarray | None = None
    total_field_hz: np.ndarray | None = None
    field_noise_hz: np.ndarray | None = None
    local_field_ppm: np.ndarray | None = None
    eroded_mask: np.ndarray | None = None
    csf_mask: np.ndarray | None = None  # CSF weights in [0, 1] (float32), not a boolean mask: the name is older
    chi: np.ndarray | None = None
    chi_sd: np.ndarray | None = None
    r2star: np.ndarray | None = None
    r2star_fit: np.ndarray | None = None
    t2star: np.ndarray | None = None
    s0: np.ndarray | None = None
    mwf: np.ndarray | None = None
    swi: np.ndarray | None = None
    minip: np.ndarray | None = None
    timings: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    citations: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def optional_outputs(opt: Options) -> list[str]:
    """The maps beyond the usual ones that a run with these options may write."""
    return (["swi", "minIP"] if opt.swi else []) + (["desc-sd_Chimap"] if opt.chi_sd else [])


# the checkpoints ``run(..., until=...)`` may stop after
UNTIL = ("mask", "unwrap", "field_fit")


# "auto" background removal, chosen by the worst variant of benchmarks/matrix.py: LBV when no
# voxel axis exceeds this (mm), PDF for coarser voxels. With the field-reliability peel LBV
# was the most accurate or within 1.6 points of V-SHARP on every variant up to 1.5 mm (worst
# 45.1 % χ NRMSE, deep-grey slopes >= 0.88, 95-98 % of the brain kept; V-SHARP's slope falls
# to 0.84 at SNR 20). Above, PDF has the best worst case: 92.6 % on two echoes at 2x2x3 mm
# against 145 % (V-SHARP) and 159 % (LBV), whose boundary-value problem propagates the noisy
# edge; 51-71 % elsewhere.
AUTO_LBV_MAX_VOXEL_MM = 1.5


AUTO_COARSE_METHOD = "pdf"


# "auto" inversion, by the same matrix: MEDI+0 after background removal up to 1.5 mm voxels,
# total field inversion (no background removal) above, where the separate background step
# is what limits χ. On the five rows above 1.5 mm (1x1x2, 2, 2x2x3 mm, 2D 2x2x3 mm, two
# echoes at 2x2x3 mm) PDF + MEDI+0 gave 49.9 / 58.8 / 62.1 / 67.5 / 91.3 % (slopes down to
# 0.15) and TFI 40.1 / 48.7 / 53.6 / 53.1 / 81.6 % (slopes 0.60-0.96), at 3-5x the chain's
# time (91 s at 1x1x2 mm).
AUTO_COARSE_INVERSION = "tfi"

# "auto" inversion where the field of view cuts the brain (the mask reaches a face of the
# volume: a slab thinner than the brain), whatever the voxel size. Background removal takes
# the local field to be zero on the mask's edge, which a cut face is not: its error spreads
# through a thin slab. On the benchmark head cut to a 64 mm axial slab at 1 mm, LBV + MEDI+0
# gave χ NRMSE 85.3 % (deep-grey slope 1.33) and TFI 26.3 % (0.99; the whole 1 mm head: 25.1 %);
# an 80 mm slab at 1x1x2 mm (TFI by voxel size) 34.1 % (the whole head 32.8 %). With the cut
# faces counted as the field's edge (masking.distance_to_outside's volume_edge) 26.7 / 34.4 %,
# and slabs tilted 20° (1 mm) / 35° (1x1x1.4 mm) 25.0 / 29.8 % (40.0 % without).
AUTO_SLAB_INVERSION = "tfi"

# "auto" inversion for single-echo data, whatever the voxel size. One echo's phase holds the
# receive phase offset, which only a second echo separates from the field; a background
# removal takes out its harmonic part and leaves the rest in the local field. On six matrix
# heads cut to one echo (benchmarks/README.md, "One echo") the worst χ NRMSE was LBV + MEDI+0's
# 87.3 %, V-SHARP + MEDI+0's 74.3 % (slope 0.66) and TFI's 72.6 % (slope 0.91); TFI was best
# on five of the six (41.2-62.1 %, slopes 0.91-1.00; LBV + MEDI+0 73.2-87.3 % on five).
AUTO_SINGLE_ECHO_INVERSION = "tfi"

# "auto" inversion for echoes spanning less than CSF_MIN_ECHO_SPAN_S (10 ms), whatever the voxel
# size (stop 58). R2* from so short a span cannot tell CSF, so MEDI+0 loses its uniform-CSF term,
# and the early echoes' field holds the most model error (the k-space cut-off's, which LBV's edge
# and MEDI's weights then amplify). Chain from magnitude and phase, χ NRMSE % (deep-grey slope),
# MEDI+0 / TFI: 1 mm, two echoes 2.3/4.6 ms, SNR 60: 104.4 (0.85) / 54.3 (0.91); 1.5 mm, three
# echoes 2-8 ms (a matrix row since): 55.9 (0.93) / 48.6 (0.95); 1 mm, four echoes 3-12 ms:
# 38.6 (1.01) / 37.3 (0.85). The worst case decides: TFI.
AUTO_SHORT_SPAN_INVERSION = "tfi"


def resolve_inversion(name: str, voxel_size, fov_cuts_brain: bool = False, single_echo: bool = False,
                      short_span: bool = False) -> str:
    """The inversion ``name`` stands for ("auto": by voxel size, see AUTO_COARSE_INVERSION, and
    total field inversion wherever the field of view cuts the brain, see AUTO_SLAB_INVERSION,
    the data have one echo, see AUTO_SINGLE_ECHO_INVERSION, or echoes spanning less than
    10 ms, see AUTO_SHORT_SPAN_INVERSION)."""
    if name != "auto":
        return choose(STAGES["inversion"], name, "inversion").name
    if fov_cuts_brain:
        log.info("inversion 'auto': %s, since the field of view cuts the brain (a slab or a crop)",
                 AUTO_SLAB_INVERSION.upper())
        return AUTO_SLAB_INVERSION
    if single_echo:
        log.info("inversion 'auto': %s, since one echo cannot separate the receive phase offset from the "
                 "field (a background removal would leave its non-harmonic part in the local field)",
                 AUTO_SINGLE_ECHO_INVERSION.upper())
        return AUTO_SINGLE_ECHO_INVERSION
    if short_span:
        log.info("inversion 'auto': %s, since the echoes span less than %g ms (R2* cannot tell CSF for MEDI+0, "
                 "and the early echoes' field error is largest)", AUTO_SHORT_SPAN_INVERSION.upper(),
                 1e3 * CSF_MIN_ECHO_SPAN_S)
        return AUTO_SHORT_SPAN_INVERSION
    return _by_voxel_size("inversion", voxel_size, "medi", AUTO_COARSE_INVERSION)


def resolve_local_inversion(name: str) -> str:
    """The inversion ``name`` stands for on a given local field: "auto" is MEDI+0 there, since
    total field inversion, the coarse voxels' choice, needs the total field."""
    return "medi" if name == "auto" else name


def _by_voxel_size(stage: str, voxel_size, fine: str, coarse: str) -> str:
    """An 'auto' choice: ``fine`` when no voxel axis exceeds AUTO_LBV_MAX_VOXEL_MM, else ``coarse``."""
    chosen = coarse if float(np.max(voxel_size)) > AUTO_LBV_MAX_VOXEL_MM + 1e-6 else fine
    log.info("%s 'auto': %s for %s mm voxels", stage, chosen.upper(), "x".join(f"{v:g}" for v in np.asarray(voxel_size)))
    return chosen


def resolve_bgremove(name: str, voxel_size) -> str:
    """The background method ``name`` stands for ("auto": by voxel size, see AUTO_LBV_MAX_VOXEL_MM)."""
    if name != "auto":
        return choose(STAGES["bgremove"], name, "bgremove").name
    return _by_voxel_size("background removal", voxel_size, "lbv", AUTO_COARSE_METHOD)
