"""Dipole inversion: local field (ppm) -> susceptibility χ (ppm).

Every method has the signature ``(local_field, mask, voxel_size, b0_direction, *, ...) -> chi``
and works on the mask's bounding box, zero-padded by ``_PAD_VOXELS``. Methods with a
regularisation weight accept ``"auto"`` (see :mod:`qsmflow.inversion.regularisation`) or a number.
"""

from __future__ import annotations

from .._shared.registry import Method
from .direct import closed_form_l2, tkd
from .ilsqr import ilsqr
from .tv import SD_CG_ITER, SD_SAMPLES, TFI_BACKGROUND_PRECONDITIONER, medi, tfi, tv

__all__ = ["METHODS", "SD_CG_ITER", "SD_METHODS", "SD_SAMPLES", "TFI_BACKGROUND_PRECONDITIONER", "closed_form_l2", "ilsqr",
           "medi", "tfi", "tkd", "tv"]

_CITE = {
    "tkd": ("Shmueli K, de Zwart JA, van Gelderen P, Li TQ, Dodd SJ, Duyn JH. Magnetic susceptibility mapping of "
            "brain tissue in vivo using MRI phase data. Magn Reson Med 2009;62:1510-1522. doi:10.1002/mrm.22135",
            "Schweser F, Deistung A, Sommer K, Reichenbach JR. Toward online reconstruction of quantitative "
            "susceptibility maps: superfast dipole inversion. Magn Reson Med 2013;69:1582-1594. doi:10.1002/mrm.24405"),
    "l2": ("Bilgic B, Chatnuntawech I, Fan AP, Setsompop K, Cauley SF, Wald LL, Adalsteinsson E. Fast image "
           "reconstruction with L2-regularization. J Magn Reson Imaging 2014;40:181-191. doi:10.1002/jmri.24365",),
    "tv": ("Bilgic B, Fan AP, Polimeni JR, Cauley SF, Bianciardi M, Adalsteinsson E, Wald LL, Setsompop K. Fast "
           "quantitative susceptibility mapping with L1-regularization and automatic parameter selection. Magn "
           "Reson Med 2014;72:1444-1459. doi:10.1002/mrm.25029",
           "Milovic C, Bilgic B, Zhao B, Acosta-Cabronero J, Tejos C. Fast nonlinear susceptibility inversion with "
           "variational regularization. Magn Reson Med 2018;80:814-821. doi:10.1002/mrm.27073"),
    "medi": ("Liu T, Liu J, de Rochefort L, Spincemaille P, Khalidov I, Ledoux JR, Wang Y. Morphology enabled "
             "dipole inversion (MEDI) from a single-angle acquisition: comparison with COSMOS in human brain "
             "imaging. Magn Reson Med 2011;66:777-783. doi:10.1002/mrm.22816",
             "Liu T, Wisnieff C, Lou M, Chen W, Spincemaille P, Wang Y. Nonlinear formulation of the magnetic field "
             "to source relationship for robust quantitative susceptibility mapping. Magn Reson Med "
             "2013;69:467-476. doi:10.1002/mrm.24272",
             "Liu Z, Spincemaille P, Yao Y, Zhang Y, Wang Y. MEDI+0: Morphology enabled dipole inversion with "
             "automatic uniform cerebrospinal fluid zero reference for quantitative susceptibility mapping. Magn "
             "Reson Med 2018;79:2795-2803. doi:10.1002/mrm.26946"),
    "tfi": ("Liu Z, Kee Y, Zhou D, Wang Y, Spincemaille P. Preconditioned total field inversion (TFI) method for "
            "quantitative susceptibility mapping. Magn Reson Med 2017;78:303-315. doi:10.1002/mrm.26331",),
    "ilsqr": ("Li W, Wang N, Yu F, Han H, Cao W, Romero R, Tantiwongkosi B, Duong TQ, Liu C. A method for "
              "estimating and removing streaking artifacts in quantitative susceptibility mapping. NeuroImage "
              "2015;108:111-122. doi:10.1016/j.neuroimage.2014.12.043",),
}

METHODS = {
    "tkd": Method("tkd", tkd, "thresholded k-space division, bias-corrected", _CITE["tkd"]),
    "l2": Method("l2", closed_form_l2, "closed-form L2 with gradient regularisation", _CITE["l2"]),
    "ilsqr": Method("ilsqr", ilsqr, "LSQR with streak estimation and removal", _CITE["ilsqr"]),
    "tv": Method("tv", tv, "weighted total variation by ADMM (FANSI)", _CITE["tv"], needs=("noise", "phase_scale")),
    "medi": Method("medi", medi, "morphology-enabled nonlinear TV (MEDI, MEDI+0 with a CSF mask)", _CITE["medi"],
                   needs=("noise", "magnitude", "phase_scale", "csf_mask"), noise_sd=True),
    "tfi": Method("tfi", tfi, "total field inversion: MEDI+0 on the total field with background sources, "
                  "preconditioned (no background removal)", _CITE["tfi"],
                  needs=("noise", "magnitude", "phase_scale", "csf_mask"), noise_sd=True),
}

# the inversions that can return the χ uncertainty map
SD_METHODS = tuple(name for name, m in METHODS.items() if m.noise_sd)
