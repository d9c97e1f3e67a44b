"""Dipole inversion: local field (ppm) -> susceptibility χ (ppm).

Every method has the signature ``(local_field, mask, voxel_size, b0_direction, *, ...) -> chi``
and works on the mask's bounding box, zero-padded (``_common._PAD_VOXELS``; TV and MEDI
``_PAD_VOXELS_TV``). Methods with a regularisation weight accept ``"auto"`` (see
:mod:`qsmflow.inversion.regularisation`) or a number.
"""

from __future__ import annotations

from .._shared.registry import Method
from .direct import closed_form_l2, tkd
from .ilsqr import ilsqr
from .total_field import TFI_BACKGROUND_PRECONDITIONER, tfi
from ._medi_shared import SD_CG_ITER, SD_CG_ITER_TFI, SD_MAX_STEPS, SD_SAMPLES
from .tv import medi, tv

__all__ = ["METHODS", "SD_CG_ITER", "SD_CG_ITER_TFI", "SD_MAX_STEPS", "SD_METHODS", "SD_SAMPLES", "TFI_BACKGROUND_PRECONDITIONER", "closed_form_l2", "ilsqr",
           "medi", "tfi", "tkd", "tv"]

METHODS = {
    "tkd": Method("tkd", tkd, "thresholded k-space division, bias-corrected"),
    "l2": Method("l2", closed_form_l2, "closed-form L2 with gradient regularisation"),
    "ilsqr": Method("ilsqr", ilsqr, "LSQR with streak estimation and removal"),
    "tv": Method("tv", tv, "weighted total variation by ADMM (FANSI)", needs=("noise", "phase_scale")),
    "medi": Method("medi", medi, "morphology-enabled nonlinear TV (MEDI, MEDI+0 with a CSF mask)",
                   needs=("noise", "magnitude", "phase_scale", "csf_mask", "sd_csf_jitter", "sd_field_jitter"), noise_sd=True,
                   warm_start=True, only_with={"csf_mask": "MEDI+0"}),
    "tfi": Method("tfi", tfi, "total field inversion: MEDI+0 on the total field with background sources, "
                  "preconditioned (no background removal)",
                  needs=("noise", "magnitude", "phase_scale", "csf_mask", "sd_csf_jitter", "superior"), noise_sd=True),
}

# the inversions that can return the χ uncertainty map
SD_METHODS = tuple(name for name, m in METHODS.items() if m.noise_sd)
