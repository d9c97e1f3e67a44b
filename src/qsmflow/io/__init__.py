"""Reading and writing NIfTI files: the only package that imports nibabel.

Loading checks everything before any work is done (shapes, affines, echo count and
units, field strength), brings the phase to radians by an explicit, logged rule
(:mod:`._phase`), and reads the B0 direction from the affine (:mod:`._read`).
Writing is atomic and never overwrites without ``force`` (:mod:`._write`).
"""

from ._phase import scale_phase
from ._maps import MapInput, PhaseDiffInput, canonical, load_canonical, load_map, load_mask, load_phasediff, load_volume
from ._nifti import (b0_direction_from_affine, bids_entities, bids_prefix, read_sidecar, superior_from_affine,
                     voxel_size_from_affine)
from ._read import GreInput, load_gre, load_magnitude, series_shape
from ._sidecars import ECHO_TIMES_FIX
from ._write import OutputSet, strict_json
from ._dicom import SeriesOutcome, convert_dicom, find_dicom, sort_converted
from ._dicom_out import DICOM_MAPS, dicom_source, export_dicom, rescale_slope, write_dicom_series

__all__ = [
    "DICOM_MAPS",
    "ECHO_TIMES_FIX",
    "GreInput",
    "MapInput",
    "OutputSet",
    "PhaseDiffInput",
    "SeriesOutcome",
    "b0_direction_from_affine",
    "convert_dicom",
    "dicom_source",
    "export_dicom",
    "find_dicom",
    "bids_entities",
    "bids_prefix",
    "canonical",
    "load_canonical",
    "load_gre",
    "load_magnitude",
    "load_map",
    "load_phasediff",
    "load_mask",
    "load_volume",
    "read_sidecar",
    "rescale_slope",
    "scale_phase",
    "series_shape",
    "sort_converted",
    "strict_json",
    "superior_from_affine",
    "voxel_size_from_affine",
    "write_dicom_series",
]
