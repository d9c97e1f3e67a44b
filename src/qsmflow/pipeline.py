"""The chain's public front (a stable path): ``run``, ``Options``, ``QSMResult``, the one-stage
runs and the writing of the outputs. The code lives in :mod:`qsmflow.workflows`."""

from .workflows.chain import inversion_and_reference, run
from .workflows.local_field import background_removal, field_region, lbv_refinement
from .workflows.relaxation import relaxation_maps
from .workflows.options import (
    AUTO_COARSE_INVERSION,
    AUTO_COARSE_METHOD,
    AUTO_LBV_MAX_VOXEL_MM,
    STAGES,
    UNTIL,
    Options,
    QSMResult,
    optional_outputs,
    resolve_bgremove,
    resolve_inversion,
    resolve_local_inversion,
)
from .workflows.outputs import output_names, write_outputs
from .workflows.single import bgremove_run, invert_run, phasediff_run, r2star_run, swi_run
from .workflows.chain import minip_axis, swi_maps

__all__ = ["AUTO_COARSE_INVERSION", "AUTO_COARSE_METHOD", "AUTO_LBV_MAX_VOXEL_MM", "STAGES", "UNTIL", "Options",
           "QSMResult", "background_removal", "bgremove_run", "field_region", "invert_run", "inversion_and_reference",
           "lbv_refinement", "minip_axis", "optional_outputs", "output_names", "phasediff_run", "r2star_run", "relaxation_maps",
           "resolve_bgremove", "resolve_inversion", "resolve_local_inversion", "run", "swi_maps", "swi_run", "write_outputs"]
