"""Maps back to DICOM, for viewing next to the source images on a PACS.

One MR Image Storage series per map, one file per slice (classic DICOM, which every viewer
reads), in the source study: the patient, study and frame-of-reference tags are copied
from one source image, the series and image UIDs are new. Geometry comes from the NIfTI
affine (RAS) turned to DICOM's patient coordinates (LPS); values are stored as signed
16-bit integers with a rescale slope chosen so that the map's range fits (slope = the
precision of the stored values, in the map's unit).

References
----------
NEMA PS3.3: Information Object Definitions, C.7.6.2 (Image Plane: Image Position and
Image Orientation (Patient), Pixel Spacing) and C.11.1 (Modality LUT: Rescale Slope and
Intercept). https://dicom.nema.org/medical/dicom/current/output/html/part03.html
"""

from __future__ import annotations

import datetime
from pathlib import Path

import nibabel as nib
import numpy as np

from ._write import OutputSet

# tags copied from the source image: who, which study, which coordinate frame
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID", "StudyID",
           "StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName",
           "FrameOfReferenceUID", "Manufacturer", "MagneticFieldStrength", "PatientPosition", "BodyPartExamined")
_INT16_MAX = 32000


def rescale_slope(volume: np.ndarray) -> float:
    """The slope (map units per stored integer) that fits the map's range into int16,
    rounded up to 1, 2 or 5 x a power of ten (a precision a reader can state)."""
    top = float(np.max(np.abs(volume))) if volume.size else 0.0
    if top == 0 or not np.isfinite(top):
        return 1.0
    raw = top / _INT16_MAX
    power = 10.0 ** np.floor(np.log10(raw))
    return float(f"{next(m * power for m in (1, 2, 5, 10) if m * power >= raw):.6g}")


def _geometry(affine: np.ndarray):
    """(row direction, column direction, pixel spacing [between rows, between columns],
    slice step in mm, LPS affine) for slices along the third voxel axis, the slice's pixel
    (r, c) being voxel (c, r): DICOM rows run along the second voxel axis."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)
    cols = lps[:3, :3]
    size = np.linalg.norm(cols, axis=0)
    return cols[:, 0] / size[0], cols[:, 1] / size[1], [size[1], size[0]], size[2], lps


def write_dicom_series(out: OutputSet, folder: str, volume: np.ndarray, affine: np.ndarray, source, *,
                       description: str, series_number: int, units: str, window: tuple[float, float]) -> list:
    """Stage ``volume`` (3D, in ``units``) as a DICOM series under ``folder`` of ``out``.

    ``source`` is one DICOM file of the study (its patient, study and frame of reference
    are copied). ``window`` is the display (centre, width) in ``units``. Returns the
    staged file names.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    src = pydicom.dcmread(str(source), stop_before_pixels=True)
    vol = np.nan_to_num(np.asarray(volume, np.float64))
    slope = rescale_slope(vol)
    stored = np.clip(np.round(vol / slope), -32768, 32767).astype(np.int16)
    row_dir, col_dir, spacing, step, lps = _geometry(affine)
    series_uid = generate_uid()
    now = datetime.datetime.now()
    written = []
    for k in range(vol.shape[2]):
        ds = pydicom.Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        for tag in _COPIED:
            if tag in src:
                setattr(ds, tag, getattr(src, tag))
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "MR", series_uid, int(series_number)
        ds.SeriesDescription, ds.ImageType = description[:64], ["DERIVED", "SECONDARY", "QSMFLOW"]
        ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3] @ np.array([0.0, 0.0, k, 1.0])]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [f"{v:.6f}" for v in spacing]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{step:.6f}"
        ds.SliceLocation = f"{float(np.dot(lps[:3] @ np.array([0.0, 0.0, k, 1.0]), np.cross(row_dir, col_dir))):.6f}"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.6g}", "0", units.upper()[:16]
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:.6g}", f"{window[1]:.6g}"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        name = f"{folder}/IM_{k + 1:04d}.dcm"
        written.append(out.file(name, lambda path, ds=ds: ds.save_as(str(path), enforce_file_format=True)))
    return written


# what goes back to the PACS: (output map, description, units, display window (centre, width))
DICOM_MAPS = (("Chimap", "QSM susceptibility chi (ppm)", "ppm", (0.0, 0.4)),
              ("swi", "SWI (qsmflow)", "US", None),
              ("minIP", "SWI minIP (qsmflow)", "US", None))


def dicom_source(dicom_dir, series) -> str:
    """One DICOM file of the series numbered ``series`` under ``dicom_dir`` (its patient,
    study and frame of reference go into the exported series)."""
    import pydicom

    from ._dicom import find_dicom

    files = find_dicom(dicom_dir)
    for path in files:
        if int(getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "SeriesNumber", -1)) == int(series):
            return str(path)
    return str(files[0])


def export_dicom(out_dir, prefix: str, source, series_number: int, *, force: bool = False) -> list:
    """The maps of a run in ``out_dir`` (χ; SWI and minIP when made) as DICOM series in
    ``out_dir/dicom/<prefix>_<map>/``, each numbered ``series_number`` + 1, 2, ..."""
    written = []
    with OutputSet(out_dir, force=force) as out:
        for n, (name, description, units, window) in enumerate(DICOM_MAPS, start=1):
            path = Path(out_dir) / f"{prefix}_{name}.nii.gz"
            if not path.exists():
                continue
            img = nib.load(str(path))
            vol = img.get_fdata(dtype=np.float32)
            if window is None:
                inside = vol[vol > 0]
                lo, hi = (np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0))
                window = ((lo + hi) / 2, max(hi - lo, 1e-6))
            written += write_dicom_series(out, f"dicom/{prefix}_{name}", vol, img.affine, source,
                                          description=description, series_number=series_number + n, units=units,
                                          window=window)
    return written
