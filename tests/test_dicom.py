"""DICOM in (dcm2niix, then sorting into BIDS) and out (maps as DICOM series of the study)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import run_cli, shared_data

from qsmflow import io

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

SHAPE = (20, 24, 8)  # columns (x), rows (y), slices


def _series(folder, volumes, *, number, image_type, echo_times, study, frame, rescale=None, description="GRE_QSM"):
    """Classic DICOM, one file per slice and echo, written here from the standard's tags:
    voxel (c, r, k) of ``volumes[e]`` is pixel (row r, column c) of slice k; rows along
    +y and columns along +x of the patient (LPS), 2 x 2 x 3 mm, first pixel at
    (-20, -24, -12 + 3k) mm."""
    folder.mkdir(parents=True, exist_ok=True)
    uid, n = generate_uid(), 0
    for echo, (vol, te) in enumerate(zip(volumes, echo_times), start=1):
        for k in range(vol.shape[2]):
            n += 1
            ds, meta = Dataset(), FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.PatientName, ds.PatientID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = "Test^Phantom", "P01", study, frame
            ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = uid, "MR", number, n
            ds.StudyDate, ds.StudyTime, ds.AcquisitionNumber = "20260101", "120000", 1
            ds.Manufacturer, ds.MagneticFieldStrength, ds.ImageType = "SIEMENS", 3, image_type
            ds.SeriesDescription = ds.ProtocolName = description
            ds.EchoTime, ds.EchoNumbers, ds.RepetitionTime, ds.FlipAngle = f"{te * 1000:g}", echo, "30", 15
            ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "GR", "SP", "3D"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-20.0, -24.0, -12.0 + 3.0 * k]
            ds.SliceLocation, ds.PixelSpacing, ds.SliceThickness = -12.0 + 3.0 * k, [2.0, 2.0], 3.0
            ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            if rescale:
                ds.RescaleSlope, ds.RescaleIntercept = rescale
            ds.PixelData = np.ascontiguousarray(vol[:, :, k].T.astype(np.uint16)).tobytes()
            ds.save_as(str(folder / f"{number}_{n:04d}.dcm"), enforce_file_format=True)


@pytest.fixture(scope="module")
def siemens_dicom(tmp_path_factory):
    """A two-echo Siemens-style acquisition: magnitude series 5, phase series 6 stored as
    0..4095 with rescale 2x - 4096 (phase -4096..4094 = -π..π)."""
    rng = np.random.default_rng(0)
    mag = [rng.integers(100, 1000, SHAPE) for _ in range(2)]
    phase = [rng.integers(-2048, 2047, SHAPE) * 2 for _ in range(2)]
    phase[0][0, 0, 0], phase[0][1, 0, 0] = -4096, 4094
    root = tmp_path_factory.mktemp("dicom")
    study, frame = generate_uid(), generate_uid()
    kw = dict(echo_times=(0.004, 0.008), study=study, frame=frame)
    _series(root / "dcm", mag, number=5, image_type=["ORIGINAL", "PRIMARY", "M", "ND"], **kw)
    _series(root / "dcm", [(p + 4096) // 2 for p in phase], number=6, image_type=["ORIGINAL", "PRIMARY", "P", "ND"],
            rescale=(2, -4096), **kw)
    return root / "dcm", mag, phase, study


def test_a_siemens_acquisition_becomes_bids_megre_with_phase_in_radians(siemens_dicom, tmp_path):
    """Magnitude and phase series of one protocol pair up by echo; the phase becomes
    x·π/4096; the NIfTI grid is the DICOM's (RAS: x and y run the other way, so the first
    voxel is at (20 - 2·19, 24 - 2·23, -12) mm) and the echo times come from the headers."""
    dcm, mag, phase, _ = siemens_dicom
    outcomes = io.convert_dicom(dcm, tmp_path, subject="sub-01", session="1")
    assert [(o.series, o.kind) for o in outcomes] == [([5, 6], "MEGRE")]
    anat = tmp_path / "sub-01" / "ses-1" / "anat"
    expected_affine = np.array([[2.0, 0, 0, -18.0], [0, 2.0, 0, -22.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1]])
    for echo in (1, 2):
        m = nib.load(anat / f"sub-01_ses-1_echo-{echo}_part-mag_MEGRE.nii.gz")
        p = nib.load(anat / f"sub-01_ses-1_echo-{echo}_part-phase_MEGRE.nii.gz")
        np.testing.assert_allclose(m.affine, expected_affine, atol=1e-4)
        np.testing.assert_array_equal(m.get_fdata(), mag[echo - 1][::-1, ::-1])
        radians = np.mod(phase[echo - 1] * np.pi / 4096 + np.pi, 2 * np.pi) - np.pi
        np.testing.assert_allclose(p.get_fdata(), radians[::-1, ::-1], atol=1e-6)
        side = json.loads((anat / f"sub-01_ses-1_echo-{echo}_part-phase_MEGRE.json").read_text())
        assert side["EchoTime"] == pytest.approx(0.004 * echo) and side["Units"] == "rad"
        assert "pi/4096" in side["PhaseScaling"]
    assert json.loads((tmp_path / "dataset_description.json").read_text())["BIDSVersion"]
    # the BIDS folder runs through qsmflow's own reader: echo times from the sidecars
    data = io.load_gre(sorted(str(f) for f in anat.glob("*part-mag*.nii.gz")),
                       sorted(str(f) for f in anat.glob("*part-phase*.nii.gz")))
    np.testing.assert_allclose(data.echo_times, [0.004, 0.008])


def _converted(folder, name, data, sidecar, affine=np.eye(4)):
    """A file as dcm2niix writes it: NIfTI + JSON sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(folder / f"{name}.nii.gz"))
    (folder / f"{name}.json").write_text(json.dumps(sidecar))


def test_sorting_real_imaginary_repeats_and_what_is_skipped(tmp_path):
    """Real + imaginary become |z| and atan2(imaginary, real); a repeated protocol becomes two
    runs; a localiser, a derived image and a magnitude-only series are skipped, with reasons."""
    rng = np.random.default_rng(1)
    conv = tmp_path / "conv"
    z = {e: rng.normal(size=(6, 5, 4)) + 1j * rng.normal(size=(6, 5, 4)) for e in (1, 2)}
    for e in (1, 2):
        base = {"SeriesNumber": 3, "SeriesDescription": "swi3d", "ProtocolName": "swi3d", "EchoNumber": e,
                "EchoTime": 0.005 * e, "MagneticFieldStrength": 3}
        _converted(conv, f"3_swi3d_e{e}_real", z[e].real, dict(base, ImageType=["ORIGINAL", "PRIMARY", "REAL"]))
        _converted(conv, f"3_swi3d_e{e}_imaginary", z[e].imag, dict(base, ImageType=["ORIGINAL", "PRIMARY", "IMAGINARY"]))
        for series in (7, 8):  # the same protocol run twice, magnitude and phase in one series each time
            meg = dict(base, SeriesNumber=series, SeriesDescription="megre", ProtocolName="megre")
            _converted(conv, f"{series}_megre_e{e}", rng.uniform(1, 2, (6, 5, 4)), dict(meg, ImageType=["M"]))
            _converted(conv, f"{series}_megre_e{e}_ph", rng.uniform(-3.14, 3.14, (6, 5, 4)), dict(meg, ImageType=["P"]))
    _converted(conv, "1_localizer", np.ones((6, 5, 4)), {"SeriesNumber": 1, "SeriesDescription": "AAHead_Scout",
                                                          "ImageType": ["ORIGINAL", "PRIMARY", "M"], "EchoTime": 0.003})
    _converted(conv, "9_t2map", np.ones((6, 5, 4)), {"SeriesNumber": 9, "SeriesDescription": "t2 map",
                                                      "ImageType": ["DERIVED", "PRIMARY", "T2 MAP"]})
    _converted(conv, "10_t1w", np.ones((6, 5, 4)), {"SeriesNumber": 10, "SeriesDescription": "t1w",
                                                     "ImageType": ["ORIGINAL", "PRIMARY", "M"], "EchoTime": 0.003})
    outcomes = {o.series[0]: o for o in io.sort_converted(conv, tmp_path / "bids", subject="02")}
    assert outcomes[3].kind == outcomes[7].kind == outcomes[8].kind == "MEGRE"
    assert "localiser" in outcomes[1].reason and "derived" in outcomes[9].reason
    assert outcomes[10].kind == "skipped" and "magnitude only" in outcomes[10].reason
    anat = tmp_path / "bids" / "sub-02" / "anat"
    for e in (1, 2):
        np.testing.assert_allclose(nib.load(anat / f"sub-02_run-1_echo-{e}_part-mag_MEGRE.nii.gz").get_fdata(),
                                   np.abs(z[e]), rtol=1e-6)
        np.testing.assert_allclose(nib.load(anat / f"sub-02_run-1_echo-{e}_part-phase_MEGRE.nii.gz").get_fdata(),
                                   np.arctan2(z[e].imag, z[e].real), atol=1e-6)
    assert len(list(anat.glob("sub-02_run-3_*_MEGRE.nii.gz"))) == 4  # the second 'megre'


def test_nothing_usable_is_refused_and_nothing_written(tmp_path, capsys):
    conv = tmp_path / "conv"
    _converted(conv, "10_t1w", np.ones((6, 5, 4)), {"SeriesNumber": 10, "SeriesDescription": "t1w",
                                                     "ImageType": ["ORIGINAL", "PRIMARY", "M"], "EchoTime": 0.003})
    with pytest.raises(ValueError, match="no multi-echo GRE with phase.*series \\[10\\] \\(t1w\\): magnitude only"):
        io.sort_converted(conv, tmp_path / "bids", subject="01")
    assert not (tmp_path / "bids").exists()
    # mixed matrices (phase on another grid) and echoes without an echo time do not pair up
    for name, shape, extra in (("mixed", (6, 5, 4), {}), ("noecho", (6, 5, 4), {"drop": True})):
        folder = tmp_path / name
        for e in (1, 2):
            side = {"SeriesNumber": 4, "SeriesDescription": "gre", "EchoNumber": e, "EchoTime": 0.005 * e}
            if extra:
                side.pop("EchoTime")
            _converted(folder, f"4_gre_e{e}", np.ones(shape), dict(side, ImageType=["M"]))
            _converted(folder, f"4_gre_e{e}_ph", np.zeros((8, 5, 4) if name == "mixed" else shape),
                       dict(side, ImageType=["P"]))
        words = "no echo time" if extra else "no matching magnitude and phase"
        with pytest.raises(ValueError, match=words):
            io.sort_converted(folder, tmp_path / "bids", subject="01")
    assert not (tmp_path / "bids").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not DICOM")
    code, _, err = run_cli(["dicom", str(tmp_path / "empty"), str(tmp_path / "out"), "--subject", "01"], capsys)
    assert code == 1 and "no DICOM files" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(["dicom", str(tmp_path / "empty"), str(tmp_path / "out"), "--subject", "0-1"], capsys)
    assert code == 1 and "--subject '0-1' must be letters and digits" in err


def test_maps_go_back_to_dicom_in_the_source_study(siemens_dicom, tmp_path):
    """χ written as DICOM: the study and patient of the source, a new series; read back (by
    the standard's geometry, in the test) every pixel lands where the NIfTI voxel is and
    holds χ within half the rescale slope (which fits the range in int16 as 1/2/5 x 10^n)."""
    dcm, _, _, study = siemens_dicom
    rng = np.random.default_rng(2)
    affine = np.array([[-1.0, 0.1, 0, 30.0], [0.05, 1.2, 0, -40.0], [0, 0, 2.0, -10.0], [0, 0, 0, 1]])
    chi = rng.normal(0, 0.05, (7, 6, 5)).astype(np.float32)
    chi[0, 0, 0] = 0.31
    assert io.rescale_slope(chi) == 1e-5  # 0.31 / 32000 = 9.7e-6 -> 1e-5
    with io.OutputSet(tmp_path) as out:
        files = io.write_dicom_series(out, "chi", chi, affine, io.dicom_source(dcm, 5), description="chi",
                                      series_number=5001, units="ppm", window=(0, 0.4))
    assert len(files) == 5
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    for k, path in enumerate(sorted(files)):
        ds = pydicom.dcmread(str(path))
        assert ds.StudyInstanceUID == study and ds.PatientID == "P01" and ds.SeriesNumber == 5001
        assert ds.SOPClassUID == MRImageStorage and ds.Rows == 6 and ds.Columns == 7
        pixels = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        row, col = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
        dr, dc = map(float, ds.PixelSpacing)  # between rows, between columns
        for r, c in [(0, 0), (5, 6), (2, 3)]:
            world = np.array(ds.ImagePositionPatient, float) + c * dc * row + r * dr * col
            np.testing.assert_allclose(world, (lps @ [c, r, k, 1])[:3], atol=1e-4)  # voxel (c, r, k)
            assert abs(pixels[r, c] - chi[c, r, k]) <= 0.5e-5 + 1e-9


def test_philips_classic_and_enhanced_match_the_converters_reference(tmp_path):
    """The real Philips head: both DICOM forms become the same two echoes (2.3 / 4.6 ms) of
    magnitude and phase, phase in radians, voxel for voxel the converter's reference."""
    head = shared_data("philips_head")
    ref = head / "reference" / "2001_WIP_fcMRI_Field_Mapping_"
    for form, tag in (("dicom_classic", "cl"), ("dicom_enhanced", "enh")):
        outcomes = io.convert_dicom(head / form, tmp_path / form, subject="01")
        assert [(o.series, o.kind) for o in outcomes] == [([2001], "MEGRE")]
        anat = tmp_path / form / "sub-01" / "anat"
        for echo, te in ((1, 0.0023), (2, 0.0046)):
            for part, suffix in (("mag", ""), ("phase", "_ph")):
                got = nib.load(anat / f"sub-01_echo-{echo}_part-{part}_MEGRE.nii.gz")
                want = nib.load(f"{ref}{tag}_e{echo}{suffix}.nii.gz")
                np.testing.assert_array_equal(got.get_fdata(), want.get_fdata())
                np.testing.assert_allclose(got.affine, want.affine, atol=1e-4)
                assert json.loads((anat / f"sub-01_echo-{echo}_part-{part}_MEGRE.json").read_text())["EchoTime"] == te
            phase = nib.load(anat / f"sub-01_echo-{echo}_part-phase_MEGRE.nii.gz").get_fdata()
            assert -np.pi - 1e-6 <= phase.min() and phase.max() <= np.pi + 1e-6 and np.ptp(phase) > 6
    for f in (tmp_path / "dicom_classic" / "sub-01" / "anat").glob("*.nii.gz"):
        other = tmp_path / "dicom_enhanced" / "sub-01" / "anat" / f.name
        np.testing.assert_array_equal(nib.load(f).get_fdata(), nib.load(other).get_fdata())


def test_siemens_slice_and_field_map(tmp_path, capsys):
    """The Siemens phantom slice: three echoes (4 / 10 / 16 ms), phase in ±π; the Siemens
    field map (dcm2niix's output) sorts into fmap/ files that qsmflow fieldmap --phasediff takes."""
    sl = shared_data("siemens_megre_slice")
    io.convert_dicom(sl / "dicom", tmp_path / "slice", subject="01")
    anat = tmp_path / "slice" / "sub-01" / "anat"
    for echo, te in ((1, 0.004), (2, 0.010), (3, 0.016)):
        assert json.loads((anat / f"sub-01_echo-{echo}_part-phase_MEGRE.json").read_text())["EchoTime"] == te
        phase = nib.load(anat / f"sub-01_echo-{echo}_part-phase_MEGRE.nii.gz").get_fdata()
        stored = nib.load(sl / "reference" / f"3_GRE_QSM_e{echo}_ph.nii").get_fdata()
        np.testing.assert_allclose(phase, np.mod(stored * np.pi / 4096 + np.pi, 2 * np.pi) - np.pi, atol=1e-6)
    fm = shared_data("siemens_fieldmap")
    io.sort_converted(fm, tmp_path / "fm", subject="01")
    fmap = tmp_path / "fm" / "sub-01" / "fmap"
    assert sorted(p.name for p in fmap.glob("*.nii.gz")) == ["sub-01_magnitude1.nii.gz", "sub-01_magnitude2.nii.gz",
                                                            "sub-01_phasediff.nii.gz"]
    side = json.loads((fmap / "sub-01_phasediff.json").read_text())
    assert side["EchoTime2"] - side["EchoTime1"] == pytest.approx(0.00246)
    # the whole field of view as the mask: that the sorted files are taken is tested here, the
    # field map of this data (and its BET mask) in test_cli's test_fieldmap_from_siemens_phasediff
    mag1 = nib.load(fmap / "sub-01_magnitude1.nii.gz")
    everywhere = tmp_path / "everywhere.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(mag1.shape[:3], np.uint8), mag1.affine), str(everywhere))
    code, _, err = run_cli(["fieldmap", "--mag", str(fmap / "sub-01_magnitude1.nii.gz"), "--phasediff",
                            str(fmap / "sub-01_phasediff.nii.gz"), "--mask", str(everywhere),
                            "-o", str(tmp_path / "b0"), "-q"], capsys)
    assert code == 0, err
    assert (tmp_path / "b0" / "sub-01_fieldmap.nii.gz").exists()


def test_run_from_dicom_writes_chi_and_its_dicom(tmp_path, capsys):
    """qsmflow run --dicom on the Philips head, with --dicom-out: χ as NIfTI and as a DICOM
    series of the source study that reads back (dcm2niix, the standard converter) on the same
    grid, within the rescale precision. TKD and a threshold mask: the inversion and the mask are
    not what this test is about."""
    import subprocess

    import dcm2niix

    head = shared_data("philips_head")
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--dicom", str(head / "dicom_classic"), "--dicom-out", "-o", str(out), "-q",
                               "--inversion", "tkd", "--mask-method", "threshold"], capsys)
    assert code == 0, err
    chi_img = nib.load(out / "sub-dicomclassic_Chimap.nii.gz")
    series = out / "dicom" / "sub-dicomclassic_Chimap"
    assert len(list(series.glob("*.dcm"))) == chi_img.shape[2]
    subprocess.run([dcm2niix.bin, "-z", "y", "-f", "back", "-o", str(tmp_path), str(series)], check=True,
                   capture_output=True)
    back = nib.load(tmp_path / "back.nii.gz")
    j = chi_img.shape[1] - 1  # dcm2niix stores the rows the other way round
    flip = np.array([[1.0, 0, 0, 0], [0, -1, 0, j], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(back.affine @ flip, chi_img.affine, atol=1e-3)
    slope = float(pydicom.dcmread(str(next(series.glob("*.dcm")))).RescaleSlope)
    assert np.abs(back.get_fdata()[:, ::-1] - chi_img.get_fdata()).max() <= slope / 2 + 1e-7
    ds = pydicom.dcmread(str(next(series.glob("*.dcm"))), stop_before_pixels=True)
    src = pydicom.dcmread(str(next((head / "dicom_classic").glob("*.dcm"))), stop_before_pixels=True)
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert Path(out / "sub-dicomclassic_report.html").exists()


@pytest.mark.parametrize("left_out", [("2001_0050_e2.dcm",), ("2001_0050_e2.dcm", "2001_0156_e2_ph.dcm")])
def test_a_series_missing_a_slice_is_refused_not_stacked_wrong(tmp_path, capsys, left_out):
    """DICOM files of the Philips head left out: dcm2niix stacks that volume's 52 slices with
    the usual 3 mm spacing across the gap (every slice above it 3 mm off, nothing in the NIfTI
    shows it) and only says so in its output. The series is refused whole with dcm2niix's words
    and the fix, one line, exit 1, nothing written: with echo 2's magnitude and phase both
    short, its first echo alone must not go on as a one-echo acquisition."""
    import shutil

    head = shared_data("philips_head")
    folder = tmp_path / "dicom"
    folder.mkdir()
    files = sorted((head / "dicom_classic").glob("*.dcm"))
    for f in files:
        if f.name not in left_out:
            shutil.copy(f, folder)
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--dicom", str(folder), "-o", str(out), "-q"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "incomplete" in err and "expected 53 spatial locations per volume, but found 52 slices" in err
    assert "export the whole series" in err
    assert not out.exists()


def test_dicom_given_as_nifti_points_to_the_dicom_commands(siemens_dicom, tmp_path, capsys):
    dcm = siemens_dicom[0]
    one = str(sorted(dcm.glob("*.dcm"))[0])
    for given, words in ((str(dcm), "is a folder of DICOM files, not NIfTI"), (one, "is a DICOM file, not NIfTI")):
        code, _, err = run_cli(["run", "--mag", given, "--phase", given, "-o", str(tmp_path / "out")], capsys)
        assert code == 1 and words in err and f"qsmflow run --dicom {dcm}" in err and "qsmflow dicom" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_refusal_after_conversion_names_the_series_not_a_temporary_file(tmp_path, capsys):
    """`run --dicom` converts into a temporary folder that is gone when the user reads the error:
    a refusal of what it converted (the Siemens phantom's single slice, 2D) names the series and
    the DICOM folder given instead."""
    folder = shared_data("siemens_megre_slice")
    code, _, err = run_cli(["run", "--dicom", str(folder), "-o", str(tmp_path / "out"), "-q"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert f"series 2 of {folder} has shape (54, 64, 1)" in err and "qsmflow-dicom-" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
