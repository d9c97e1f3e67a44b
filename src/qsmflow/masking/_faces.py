"""Which faces of the field of view cut a region: one criterion for the chain's choice of
inversion (:func:`qsmflow.masking.faces_cutting`) and BET's slab handling."""

from __future__ import annotations

import numpy as np

# A region whose section on a face of the field of view is at least this share of its largest
# section along that axis is cut by it (a slab): the 64 / 80 mm axial slabs of the benchmark
# head 0.55-0.89; the BET masks of the whole benchmark heads touch no face, the Philips head's
# 0.016 (its top slice).
FOV_CUT_SECTION = 0.25


def cut_faces(region: np.ndarray) -> list[tuple[bool, bool]]:
    """Per axis, whether the first and the last face cut ``region`` (see ``FOV_CUT_SECTION``)."""
    region = np.asarray(region, bool)
    out = []
    for axis in range(region.ndim):
        section = region.sum(axis=tuple(a for a in range(region.ndim) if a != axis))
        out.append(tuple(bool(section[i] >= FOV_CUT_SECTION * section.max() > 0) for i in (0, -1)))
    return out
