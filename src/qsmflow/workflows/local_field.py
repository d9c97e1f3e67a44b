"""The local field of the chain: the field region (the mask without its unreliable edge), the
chosen background removal on it without the region's small pieces, and LBV's boundary-value
refinement for MEDI+0's restart."""

from __future__ import annotations

import functools
import logging

import numpy as np

from .. import bgremove, masking
from .options import STAGES, Options, resolve_bgremove

log = logging.getLogger(__name__)


def field_region(field, mask, voxel_size, noise, opt: Options, *, r2star=None, r2star_noise=None,
                 field_strength=3.0, depth=None):
    """The field on the mask without its unreliable edge (:func:`qsmflow.masking.reliable_field_mask`
    from ``noise`` and ``r2star``; the whole mask when ``opt.peel_noise_factor`` is 0 or there
    is no noise map): (field, mask)."""
    if noise is not None and opt.peel_noise_factor > 0:
        mask = masking.reliable_field_mask(mask, noise, voxel_size, r2star=r2star, r2star_noise=r2star_noise,
                                           field_strength=field_strength, factor=opt.peel_noise_factor, depth=depth)
        field = np.where(mask, field, 0)
    return field, mask


def background_removal(field, mask, voxel_size, b0_direction, noise, opt: Options, *, r2star=None,
                       r2star_noise=None, field_strength=3.0, depth=None):
    """The chosen background removal on :func:`field_region`, then the optional polynomial
    clean-up (``opt.bg_polynomial``): (local field, its mask, the region it was removed on)."""
    method = STAGES["bgremove"][resolve_bgremove(opt.bgremove, voxel_size)]
    field, mask = field_region(field, mask, voxel_size, noise, opt, r2star=r2star, r2star_noise=r2star_noise,
                               field_strength=field_strength, depth=depth)
    local, eroded = method.func(field, mask, voxel_size, b0_direction, noise=noise,
                                **opt.stage_options.get("bgremove", {}))
    local, eroded = _drop_islands(local, eroded, voxel_size)
    if opt.bg_polynomial:
        local = bgremove.remove_polynomial(local, eroded, voxel_size, order=opt.bg_polynomial, noise=noise)
        log.info("removed a polynomial of order %d from the local field", opt.bg_polynomial)
    return local, eroded, mask


def _drop_islands(local, eroded, voxel_size):
    """The local field and its region without the region's small pieces (:func:`masking.without_small_pieces`)."""
    kept = masking.without_small_pieces(np.asarray(eroded, bool), voxel_size)
    return (local if kept is eroded else np.where(kept, local, 0).astype(np.float32)), kept


def lbv_refinement(opt: Options, voxel_size, b0_direction, region):
    """The ``refine`` of :func:`inversion_and_reference` for a local field from LBV on
    ``region`` (see ``Options.lbv_refine``), or None when it does not apply."""
    if not opt.lbv_refine or opt.bgremove != "lbv" or opt.bg_polynomial:
        return None
    return functools.partial(bgremove.lbv_boundary_field, mask=region, voxel_size=voxel_size,
                             b0_direction=b0_direction, **{k: v for k, v in opt.stage_options.get("bgremove", {}).items()
                                                            if k in ("tol", "max_iter")})
