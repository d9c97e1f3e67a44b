"""Loading, phase scaling, B0 direction and atomic writing."""

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_data

from qsmflow import io


def _save(path, data, affine=None, dtype=None, slope=None, inter=None):
    img = nib.Nifti1Image(np.asarray(data) if dtype is None else np.asarray(data).astype(dtype),
                          np.eye(4) if affine is None else affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


def _sidecar(path, **kw):
    p = str(path).replace(".nii.gz", ".json").replace(".nii", ".json")
    with open(p, "w") as fh:
        json.dump(kw, fh)


def _echoes(tmp_path, n=3, shape=(8, 9, 10), affine=None, sidecars=True, names=None):
    rng = np.random.default_rng(0)
    mags, phases = [], []
    for e in range(n):
        name = names[e] if names else f"sub-01_echo-{e + 1}"
        m = _save(tmp_path / f"{name}_part-mag_MEGRE.nii.gz", rng.uniform(1, 2, shape).astype(np.float32), affine)
        p = _save(tmp_path / f"{name}_part-phase_MEGRE.nii.gz",
                  rng.uniform(-np.pi, np.pi, shape).astype(np.float32), affine)
        if sidecars:
            for f in (m, p):
                _sidecar(f, EchoTime=0.005 * (e + 1), EchoNumber=e + 1, MagneticFieldStrength=3)
        mags.append(m)
        phases.append(p)
    return mags, phases


# ---------------------------------------------------------------- phase scaling rules


@pytest.mark.parametrize(
    "raw, integer, factor, offset",
    [
        (np.array([-4096, 0, 4095]), True, np.pi / 4096, 0.0),
        (np.array([0, 2048, 4095]), True, 2 * np.pi / 4096, -np.pi),
        (np.array([-2048, 0, 2047]), True, np.pi / 2048, 0.0),
        (np.array([-4096.0, 7.0, 4095.0]), False, np.pi / 4096, 0.0),  # integers stored as floats: told by value
        (np.array([-3.14159, 0.5, 3.1415]), False, 1.0, 0.0),
        (np.array([-0.0036744, 0.001, 0.0036744]), False, np.pi / 0.0036744, 0.0),
        (np.array([-3142.0, 10.0, 3141.0]), False, np.pi / 3142, 0.0),  # milliradians
    ],
)
def test_phase_rules(raw, integer, factor, offset):
    out, rule = io.scale_phase(raw, on_disk_integer=integer)
    assert rule["factor"] == pytest.approx(factor, rel=1e-4)
    assert rule["offset"] == pytest.approx(offset)
    expected = np.mod(raw * factor + offset + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.min() >= -np.pi and out.max() < np.pi


def test_phase_zero_to_two_pi_wrapped():
    out, rule = io.scale_phase(np.array([0.0, 1.0, 6.2]))
    assert "wrapped" in rule["rule"]
    np.testing.assert_allclose(out, [0.0, 1.0, 6.2 - 2 * np.pi], atol=1e-6)


def test_phase_forced_and_unknown():
    out, rule = io.scale_phase(np.array([-10.0, 20.0]), phase_scale=0.1)
    assert rule["factor"] == 0.1 and "forced" in rule["rule"]
    with pytest.raises(ValueError, match="--phase-scale"):
        io.scale_phase(np.array([-10.0, 37.5]))  # unwrapped-looking, asymmetric
    with pytest.raises(ValueError, match="constant"):
        io.scale_phase(np.zeros(5))


def test_romeo_small_phase_detected(tmp_path):
    d = shared_data("romeo_small")
    g = io.load_gre(d / "Mag.nii", d / "Phase.nii", echo_times=[0.004, 0.008, 0.012], field_strength=3)
    assert g.magnitude.shape == (51, 51, 41, 3)
    assert "scaled by its maximum" in g.provenance["phase_scaling"]["rule"]
    assert g.provenance["phase_scaling"]["factor"] == pytest.approx(855, rel=1e-3)
    assert g.phase.min() >= -np.pi and g.phase.max() < np.pi and g.phase.max() > 3.1
    np.testing.assert_allclose(g.voxel_size, [0.46875, 0.46875, 1.0])
    assert g.prefix == "Mag"


def test_siemens_integer_phase_and_sidecars():
    """The real Siemens field map: its int16 phase difference is scaled by the -4096..4095
    rule and its sidecars give TE2 - TE1; as one echo's phase it is refused (it would pass
    for a phase at EchoTime 7.65 ms and scale the field by 2.46/7.65)."""
    d = shared_data("siemens_fieldmap")
    pd = io.load_phasediff(d / "Si_3_gre_field_magph_e2_ph.nii", d / "Si_2_gre_field_magph_e1.nii")
    assert pd.delta_te == pytest.approx(0.00765 - 0.00519)
    rule = pd.provenance["phase_scaling"]
    assert rule["rule"].startswith("integers -4096..4095") and rule["range"] == [-4096.0, 4094.0]
    raw = np.asarray(nib.load(str(d / "Si_3_gre_field_magph_e2_ph.nii")).dataobj, np.float64)
    np.testing.assert_allclose(pd.phasediff, raw * np.pi / 4096, atol=1e-6)
    with pytest.raises(ValueError, match="phase difference"):
        io.load_gre(d / "Si_2_gre_field_magph_e2.nii", d / "Si_3_gre_field_magph_e2_ph.nii")


def test_nan_voxels_zeroed_and_flagged(tmp_path):
    d = shared_data("romeo_small")
    raw = nib.load(str(d / "phase_with_nan.nii"))
    ph = np.asarray(raw.dataobj)
    n_nan = int(np.any(~np.isfinite(ph), axis=3).sum())
    assert n_nan > 0
    mag = _save(tmp_path / "mag.nii.gz", np.ones(ph.shape, np.float32), raw.affine)
    g = io.load_gre(mag, d / "phase_with_nan.nii", echo_times=[0.005, 0.01], field_strength=3)
    assert (~g.finite).sum() == n_nan
    assert np.all(g.phase[~g.finite] == 0) and np.all(g.magnitude[~g.finite] == 0)
    assert any("NaN" in w for w in g.warnings)
    # its finite values run to ±1.5π, 2.1 % of them beyond ±π (an unwrapped phase): radians,
    # wrapped, said in a warning (stretching it by π/4.71 would shrink every field by a third)
    assert g.provenance["phase_scaling"]["factor"] == 1.0
    assert any("beyond ±π" in w for w in g.warnings)


# ---------------------------------------------------------------- echoes and sidecars


def test_per_echo_files_sorted_by_echo_entity(tmp_path):
    mags, phases = _echoes(tmp_path)
    g = io.load_gre(mags[::-1], [phases[2], phases[0], phases[1]])
    np.testing.assert_allclose(g.echo_times, [0.005, 0.01, 0.015])
    np.testing.assert_allclose(g.magnitude[..., 0], nib.load(str(mags[0])).get_fdata(), rtol=1e-6)
    assert g.prefix == "sub-01"
    assert g.provenance["echo_order"].startswith("echo numbers")


def test_4d_files_with_option_echo_times(tmp_path):
    shape = (6, 7, 8, 3)
    m = _save(tmp_path / "m.nii.gz", np.ones(shape, np.float32))
    p = _save(tmp_path / "p.nii.gz", np.random.default_rng(0).uniform(-3.14, 3.14, shape).astype(np.float32))
    g = io.load_gre(m, p, echo_times=[0.004, 0.008, 0.012], field_strength=7)
    assert g.n_echoes == 3 and g.field_strength == 7
    # echoes along NIfTI's fifth dimension, (X, Y, Z, 1, E), as some converters write them
    p5 = _save(tmp_path / "p5.nii.gz", nib.load(p).get_fdata(dtype=np.float32)[:, :, :, None, :])
    m5 = _save(tmp_path / "m5.nii.gz", np.ones(shape[:3] + (1, 3), np.float32))
    g5 = io.load_gre(m5, p5, echo_times=[0.004, 0.008, 0.012], field_strength=7)
    np.testing.assert_array_equal(g5.phase, g.phase)
    with pytest.raises(ValueError, match=r"\(X, Y, Z, 1, echoes\)"):  # two echo axes: not an echo series
        io.load_gre(_save(tmp_path / "m6.nii.gz", np.ones(shape[:3] + (2, 3), np.float32)), p5,
                    echo_times=[0.004, 0.008, 0.012], field_strength=7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"echo_times": [4, 8, 12], "field_strength": 3}, "milliseconds"),
        ({"echo_times": [0.004, 0.008], "field_strength": 3}, "2 echo times for 3 echoes"),
        ({"echo_times": [0.008, 0.004, 0.012], "field_strength": 3}, "increasing"),
        # a message names the option and the keyword (Python users call load_gre, not the CLI)
        ({"echo_times": [0.004, 0.008, 0.012]}, "--field-strength .*field_strength= in Python"),
        ({"field_strength": 3}, "--echo-times .*echo_times= in Python"),
        ({"echo_times": [0.004, 0.008, 0.012], "field_strength": 300}, "tesla"),
    ],
)
def test_echo_time_and_field_errors(tmp_path, kwargs, match):
    mags, phases = _echoes(tmp_path, sidecars=False)
    with pytest.raises(ValueError, match=match):
        io.load_gre(mags, phases, **kwargs)


def test_sidecar_echo_times_in_ms_refused(tmp_path):
    mags, phases = _echoes(tmp_path)
    for e, f in enumerate(mags + phases):
        _sidecar(f, EchoTime=5.0 * (e % 3 + 1), MagneticFieldStrength=3)
    with pytest.raises(ValueError, match="the sidecars' EchoTime.*milliseconds"):
        io.load_gre(mags, phases)


def test_shape_and_grid_mismatch(tmp_path):
    mags, phases = _echoes(tmp_path)
    other = _save(tmp_path / "other.nii.gz", np.ones((8, 9, 11), np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        io.load_gre(mags, phases[:2] + [other])
    shifted = np.eye(4)
    shifted[0, 3] = 5
    moved = _save(tmp_path / "moved.nii.gz", np.ones((8, 9, 10), np.float32), shifted)
    with pytest.raises(ValueError, match="different grids"):
        io.load_gre(mags, phases[:2] + [moved])


def test_3d_phase_with_4d_magnitude(tmp_path):
    m = _save(tmp_path / "m.nii.gz", np.ones((6, 7, 8, 3), np.float32))
    p = _save(tmp_path / "p.nii.gz", np.random.default_rng(0).uniform(-3.14, 3.14, (6, 7, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="magnitude has 3 echo.*phase has 1"):
        io.load_gre(m, p, echo_times=[0.004, 0.008, 0.012], field_strength=3)


def test_missing_truncated_and_2d_files(tmp_path):
    mags, phases = _echoes(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        io.load_gre([tmp_path / "nope.nii.gz"], phases)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(mags[0].read_bytes()[:200])
    with pytest.raises(ValueError, match="broken.nii.gz"):
        io.load_gre([bad] + mags[1:], phases)
    flat = _save(tmp_path / "flat.nii.gz", np.ones((8, 9, 1), np.float32))
    with pytest.raises(ValueError, match="2D"):
        io.load_gre([flat], [flat], echo_times=[0.01], field_strength=3)


# ---------------------------------------------------------------- B0 direction


def _rot_x(deg):
    t = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


@pytest.mark.parametrize(
    "rot, expected",
    [
        (np.eye(3), [0, 0, 1]),
        (_rot_x(20), [0, np.sin(np.radians(20)), np.cos(np.radians(20))]),
        # sagittal slab: voxel axes (y, z, x) of the world -> B0 along the second voxel axis
        (np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]), [0, 1, 0]),
        # coronal slab: voxel axes (x, z, y)
        (np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]]), [0, 1, 0]),
    ],
)
def test_b0_direction_from_affine(rot, expected):
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.5, 0.7, 2.0])
    np.testing.assert_allclose(io.b0_direction_from_affine(affine), expected, atol=1e-9)


def test_b0_override_and_angle_logged(tmp_path):
    affine = np.eye(4)
    affine[:3, :3] = _rot_x(20)
    mags, phases = _echoes(tmp_path, affine=affine)
    g = io.load_gre(mags, phases)
    assert g.provenance["b0_angle_to_slice_axis_deg"] == pytest.approx(20, abs=1e-6)
    g2 = io.load_gre(mags, phases, b0_direction=[0, 0, 2])
    np.testing.assert_allclose(g2.b0_direction, [0, 0, 1])
    assert g2.provenance["b0_direction_source"] == "--b0-direction"


# ---------------------------------------------------------------- writing


def test_output_set_atomic_and_no_overwrite(tmp_path):
    out_dir = tmp_path / "out"
    data = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    with io.OutputSet(out_dir) as out:
        out.nifti("a.nii.gz", data, affine)
        out.json("a.json", {"Units": "ppm"})
        assert not (out_dir / "a.nii.gz").exists()  # staged, not yet visible
    img = nib.load(str(out_dir / "a.nii.gz"))
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(img.get_fdata(), data)
    with pytest.raises(ValueError, match="--force"):
        with io.OutputSet(out_dir) as out:
            out.check(["a.nii.gz"])
    with io.OutputSet(out_dir, force=True) as out:
        out.nifti("a.nii.gz", data * 2, affine)
    np.testing.assert_allclose(nib.load(str(out_dir / "a.nii.gz")).get_fdata(), data * 2)


def test_output_set_failure_leaves_nothing(tmp_path):
    out_dir = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError):
        with io.OutputSet(out_dir) as out:
            out.nifti("a.nii.gz", np.zeros((2, 2, 2)), np.eye(4))
            out.json("sub/b.json", {})
            raise RuntimeError("crash mid-run")
    assert not (tmp_path / "new").exists()


def test_bids_prefix():
    assert io.bids_prefix("/x/sub-01_ses-2_acq-fast_run-1_echo-3_part-phase_MEGRE.nii.gz") == "sub-01_ses-2_acq-fast_run-1"
    assert io.bids_prefix("Mag.nii") == "Mag"


def test_swapped_and_mismatched_sidecars(tmp_path):
    mags, phases = _echoes(tmp_path)
    for e, (m, p) in enumerate(zip(mags, phases)):
        _sidecar(m, EchoTime=0.005 * (e + 1), MagneticFieldStrength=3, ImageType=["ORIGINAL", "M"])
        _sidecar(p, EchoTime=0.005 * (e + 1), MagneticFieldStrength=3, ImageType=["ORIGINAL", "P"])
    assert io.load_gre(mags, phases).n_echoes == 3
    with pytest.raises(ValueError, match="swapped"):
        io.load_gre(phases, mags)
    _sidecar(phases[1], EchoTime=0.02, MagneticFieldStrength=3)
    with pytest.raises(ValueError, match="same acquisition"):
        io.load_gre(mags, phases)


def test_phase_difference_refused_as_echo_phase(tmp_path):
    """A dual-echo field map's phase difference grew over TE2 - TE1 (here 2.5 ms), not over
    the EchoTime its sidecar also gives (7.5 ms): read as an echo's phase the field would be
    a third of the truth, so it is refused by its sidecar or its BIDS suffix."""
    mags, phases = _echoes(tmp_path, n=1)
    assert io.load_gre(mags, phases).n_echoes == 1
    _sidecar(phases[0], EchoTime=0.0075, EchoTime1=0.005, EchoTime2=0.0075, MagneticFieldStrength=3)
    with pytest.raises(ValueError, match=r"phase difference.*EchoTime1 and EchoTime2.*--phasediff"):
        io.load_gre(mags, phases)
    pd = _save(tmp_path / "sub-01_phasediff.nii.gz", np.zeros((8, 9, 10), np.float32), None)
    with pytest.raises(ValueError, match=r"sub-01_phasediff.nii.gz is the phase difference.*_phasediff"):
        io.load_gre(mags, [pd], echo_times=[0.005], field_strength=3)


@pytest.mark.parametrize("extra, axis", [({}, None), ({"MRAcquisitionType": "3D"}, None),
                                         ({"MRAcquisitionType": "2D", "SliceEncodingDirection": "j-"}, 1),
                                         ({"MRAcquisitionType": "2D"}, 2)])
def test_slice_axis_from_sidecars(tmp_path, extra, axis):
    """A 2D multi-slice scan's slice axis comes from MRAcquisitionType/SliceEncodingDirection (R2* correction)."""
    mags, phases = _echoes(tmp_path)
    for e, f in enumerate(mags + phases):
        _sidecar(f, EchoTime=0.005 * (e % 3 + 1), MagneticFieldStrength=3, **extra)
    assert io.load_gre(mags, phases).slice_axis == axis
    assert io.load_magnitude(mags).slice_axis == axis


def test_slice_axis_contradictions_refused(tmp_path):
    mags, phases = _echoes(tmp_path)
    for e, f in enumerate(mags):
        _sidecar(f, EchoTime=0.005 * (e + 1), MRAcquisitionType="2D" if e else "3D")
    with pytest.raises(ValueError, match="MRAcquisitionType"):
        io.load_magnitude(mags)
    for e, f in enumerate(mags):
        _sidecar(f, EchoTime=0.005 * (e + 1), MRAcquisitionType="2D", SliceEncodingDirection="z")
    with pytest.raises(ValueError, match="SliceEncodingDirection"):
        io.load_magnitude(mags)


@pytest.mark.parametrize(
    "raw, integer, text, factor, offset",
    [
        ([-4096, 0, 4095], False, "integers -4096..4095 mapped to [-pi, pi): x*pi/4096", np.pi / 4096, 0.0),
        ([-4000, 7, 4000], True, "integers -4096..4095 mapped to [-pi, pi): x*pi/4096", np.pi / 4096, 0.0),
        ([0, 7, 4095], True, "integers 0..4095 mapped to [-pi, pi): x*2pi/4096 - pi", 2 * np.pi / 4096, -np.pi),
        ([-2048, 7, 2047], True, "integers -2048..2047 mapped to [-pi, pi): x*pi/2048", np.pi / 2048, 0.0),
        ([-4096.0, 0.5, 4095.0], False, "symmetric range +-4096 scaled by its maximum: x*pi/4096", np.pi / 4096, 0.0),
        ([-np.pi * 1.0005, 0.3, np.pi * 1.0005], False, "radians, kept", 1.0, 0.0),
        ([-0.9 * np.pi, 0.3, 0.9 * np.pi], False, "radians, kept", 1.0, 0.0),
        ([-0.5 * np.pi, 0.3, 0.5 * np.pi], False, "symmetric range +-1.5708 scaled by its maximum: x*pi/1.5708", 2.0,
         0.0),
        ([0.0, 1.0, 2 * np.pi], False, "radians in [0, 2pi), wrapped to [-pi, pi)", 1.0, 0.0),
    ],
)
def test_phase_rule_record(raw, integer, text, factor, offset):
    """The rule each range gets, as recorded in the provenance: its words, factor, offset and range."""
    raw = np.asarray(raw, float)
    out, rule = io.scale_phase(raw, on_disk_integer=integer)
    # stretching a range inside ±π could be radians that do not wrap: said in a warning
    warning = rule.pop("warning", None)
    assert (warning is not None) == (text.startswith("symmetric") and np.abs(raw).max() < np.pi)
    assert warning is None or "pass --phase-scale 1" in warning
    assert rule == {"rule": text, "factor": pytest.approx(factor, rel=1e-6), "offset": pytest.approx(offset),
                    "range": [raw.min(), raw.max()]}
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.exp(1j * out), np.exp(1j * (raw * factor + offset)), atol=1e-5)


@pytest.mark.parametrize("beyond", [0.0001, 0.016, 0.084])
def test_radians_with_values_beyond_pi_stay_radians(beyond):
    """Radians of which some values lie beyond ±π (a few outliers; a phase interpolated across
    its wraps: 1.6 % on a simulated head, 8.4 % on the real Philips head rotated 5° by cubic
    interpolation) are not a scaled phase: stretched by π/max they would shrink every field
    (by 0.785 for an outlier at ±4, 0.59 for the rotated head). They are kept as radians, the
    values beyond wrapped, with a warning that names resampling."""
    rng = np.random.default_rng(1)
    raw = rng.uniform(-np.pi, np.pi, 20000)
    n = int(beyond * raw.size)
    raw[:n] = rng.choice([-1, 1], n) * rng.uniform(np.pi * 1.01, 5.5, n)
    out, rule = io.scale_phase(raw)
    assert rule["factor"] == 1.0 and rule["rule"] == f"radians with {n} values beyond +-pi, wrapped"
    assert "resample the complex image" in rule["warning"] and f"{n} phase values" in rule["warning"]
    np.testing.assert_allclose(np.exp(1j * out), np.exp(1j * raw), atol=1e-5)


@pytest.mark.parametrize("top, share", [(4.0, 1.0), (180.0, 1.0), (180.0, 0.04), (4096.0, 0.3), (3.3, 1.0)])
def test_scaled_phases_wrapped_over_their_range_stay_scaled(top, share):
    """A phase scaled to ±m wraps over its whole range, so only about π/m of its values lie
    within ±π (±4: 79 %): scaled by π/m as before, also when most of the volume is a masked
    background of zeros (a phantom in a large field of view: 4 % of the voxels in degrees)."""
    rng = np.random.default_rng(2)
    raw = np.where(rng.random(50000) < share, rng.uniform(-top, top, 50000), 0.0)
    _, rule = io.scale_phase(raw)
    assert rule["factor"] == pytest.approx(np.pi / np.abs(raw).max()) and "beyond" not in rule["rule"]


@pytest.mark.parametrize("raw", [[-1.0, 0.0, 4.0], [0.0, 3.0, 7.0], [-100.0, 3.0, 4000.0]])
def test_phase_ranges_that_are_not_radians_are_refused(raw):
    with pytest.raises(ValueError, match="cannot tell the phase units from its range"):
        io.scale_phase(np.asarray(raw))


def test_phase_scale_forced_is_applied_and_checked():
    out, rule = io.scale_phase(np.array([-10.0, 0.0, 20.0]), phase_scale=0.1)
    assert rule == {"rule": "forced by --phase-scale: phase x 0.1", "factor": 0.1, "offset": 0.0,
                    "range": [-10.0, 20.0]}
    np.testing.assert_allclose(out, [-1.0, 0.0, 2.0], atol=1e-6)
    with pytest.raises(ValueError, match="^phase_scale"):
        io.scale_phase(np.array([-10.0, 20.0]), phase_scale=-0.1)
    with pytest.raises(ValueError, match="constant"):
        io.scale_phase(np.array([]))


def test_json_written_is_strict(tmp_path):
    """NaN and ±Inf (e.g. an unknown noise level) are written as null: strict parsers such as
    the BIDS validator's refuse the bare NaN that Python writes by default."""
    def refuse(word):
        raise ValueError(f"not strict JSON: {word}")

    with io.OutputSet(tmp_path) as out:
        out.json("side.json", {"noise_sigma": float("nan"), "peak": np.float32(np.inf), "te": np.array([0.004, np.nan]),
                               "n": np.int64(3), "ok": np.bool_(True), "nested": [{"x": -np.inf}]})
    text = (tmp_path / "side.json").read_text()
    assert json.loads(text, parse_constant=refuse) == {"noise_sigma": None, "peak": None, "te": [0.004, None],
                                                         "n": 3, "ok": True, "nested": [{"x": None}]}


def test_a_failed_background_write_leaves_nothing(tmp_path, monkeypatch):
    """Maps are compressed in background threads; if one fails, the block raises and none of
    the staged files (written or not) appears, nor a folder it created."""
    import nibabel as nib_mod

    real = nib_mod.save

    def flaky(img, path):
        if Path(path).name.startswith(".b."):  # the staged name of b.nii.gz
            raise OSError("disk full")
        real(img, path)

    monkeypatch.setattr(nib_mod, "save", flaky)
    out_dir = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        with io.OutputSet(out_dir) as out:
            for name in ("a", "b", "c"):
                out.nifti(f"{name}.nii.gz", np.ones((4, 4, 4)), np.eye(4))
            out.json("a.json", {"x": 1})
    assert not out_dir.exists()
    monkeypatch.setattr(nib_mod, "save", real)
    with io.OutputSet(out_dir) as out:
        for name in ("a", "b", "c"):
            out.nifti(f"{name}.nii.gz", np.full((4, 4, 4), 2.0), np.eye(4))
    assert all(np.all(nib.load(out_dir / f"{n}.nii.gz").get_fdata() == 2.0) for n in "abc")


def test_scale_phase_leaves_its_input_alone(tmp_path):
    """Radians in float64, as an array and as a memory map (nibabel's uncompressed files):
    the caller's values are unchanged (the scaling works in place on its own copy)."""
    values = np.linspace(-3.1, 3.14, 60).reshape(3, 4, 5)
    mm = np.memmap(tmp_path / "phase.dat", dtype=np.float64, mode="w+", shape=values.shape)
    mm[:] = values
    for arr in (values.copy(), mm):
        out, _ = io.scale_phase(arr)
        np.testing.assert_array_equal(np.asarray(arr), values)
        assert out.dtype == np.float32
    del mm
    # given away (overwrite=True, as the reader does), integers are scaled in the same array
    # to the same radians as the formula written here
    ints = np.arange(-4096, 4096, 64, dtype=np.float64).reshape(8, 4, 4)
    expected = np.mod(ints * np.pi / 4096 + np.pi, 2 * np.pi) - np.pi
    out, rule = io.scale_phase(ints, on_disk_integer=True, overwrite=True)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(ints, expected, atol=1e-12)  # the caller's array did the work


def test_canonical_puts_any_grid_in_ras_for_display(tmp_path):
    """A grid whose first voxel axis runs along world y and second along world -x: RAS display
    order is the second axis reversed, then the first, then z (worked out by hand)."""
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    affine = np.array([[0.0, -2.0, 0, 10], [3.0, 0, 0, -5], [0, 0, 4.0, 1], [0, 0, 0, 1]])
    expected = np.transpose(data, (1, 0, 2))[::-1]
    out, vs = io.canonical(data, affine)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(vs, [2.0, 3.0, 4.0])
    path = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    out_file, vs_file = io.load_canonical(path)  # the same from the file
    np.testing.assert_array_equal(out_file, expected)
    np.testing.assert_allclose(vs_file, [2.0, 3.0, 4.0])


def test_from_arrays_checks_what_load_gre_checks():
    """The Python entry point refuses what the file loader refuses (a voxel size the affine
    contradicts, a non-4x4 affine, a negative or empty magnitude) and records zeroed NaN voxels
    as a warning, leaving the caller's arrays as given."""
    mag = np.ones((6, 6, 6, 2), np.float32)
    pha = np.zeros((6, 6, 6, 2), np.float32)
    te = [0.005, 0.010]
    with pytest.raises(ValueError, match=r"voxel_size \[1.0, 1.0, 2.0\] disagrees with the affine"):
        io.GreInput.from_arrays(mag, pha, te, 3.0, affine=np.eye(4), voxel_size=(1, 1, 2))
    with pytest.raises(ValueError, match="4x4"):
        io.GreInput.from_arrays(mag, pha, te, 3.0, affine=np.eye(3))
    with pytest.raises(ValueError, match="negative"):
        io.GreInput.from_arrays(-mag, pha, te, 3.0)
    # a phase given as the magnitude reaches -π: refused, naming the swap
    with pytest.raises(ValueError, match=r"^the magnitude has negative values \(216 voxels, 50 %, down to -3.14.*swapped"):
        io.GreInput.from_arrays(np.where(np.arange(6)[:, None, None, None] < 3, 3.14, -3.14) * mag, pha, te, 3.0)
    # a noise floor shifted a little below zero (denoising): set to 0, with a warning
    floor = mag.copy()
    floor[0, :, :, 0] = -0.02
    g = io.GreInput.from_arrays(floor, pha, te, 3.0)
    assert g.magnitude.min() == 0 and g.magnitude[1:].min() == 1 and floor.min() == -0.02
    assert len(g.warnings) == 1 and g.warnings[0].startswith("36 magnitude values (8.3 %) are negative, down to -0.02")
    with pytest.raises(ValueError, match="zero everywhere"):
        io.GreInput.from_arrays(0 * mag, pha, te, 3.0)
    g = io.GreInput.from_arrays(mag, pha, te, 3.0, affine=np.diag([1, 1, 2, 1.0]), voxel_size=(1, 1, 2))
    assert list(g.voxel_size) == [1, 1, 2] and not g.warnings
    bad = mag.copy()
    bad[1, 2, 3, 1] = np.nan
    g = io.GreInput.from_arrays(bad, pha, te, 3.0)
    assert not g.finite[1, 2, 3] and g.magnitude[1, 2, 3, 1] == 0 and np.isnan(bad[1, 2, 3, 1])
    assert any("1 voxel(s) hold NaN/Inf" in w for w in g.warnings)


# ---------------------------------------------------------------- header units and geometry


@pytest.mark.parametrize("scale, refused", [(0.001, True), (0.5, False), (25.0, True)])
def test_voxel_sizes_no_head_scan_has_are_refused(tmp_path, scale, refused):
    """A header in metres (1 mm voxels stored as 0.001) would scale every distance and the
    dipole kernel's grid silently: refused, naming the file and the fix; 0.5 mm is kept."""
    mags, phases = _echoes(tmp_path, affine=np.diag([scale, scale, scale, 1.0]))
    if not refused:
        np.testing.assert_allclose(io.load_gre(mags, phases).voxel_size, scale)
        return
    words = "header in metres" if scale < 1 else "outside the 0.02-20 mm"
    with pytest.raises(ValueError, match=words) as exc:
        io.load_gre(mags, phases)
    assert "fix the NIfTI header's voxel size" in str(exc.value) and "sub-01_echo-1_part-mag" in str(exc.value)


def test_a_sheared_grid_is_warned_about(tmp_path):
    """Axes 18 degrees from perpendicular (a gantry tilt): the voxel size and B0 direction read
    from the columns are approximate, and every stage takes voxels as boxes, so it is said;
    a rotated (oblique) grid is not sheared and gets no such warning."""
    shear = np.eye(4)
    shear[0, 1] = np.tan(np.radians(18))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    mags, phases = _echoes(tmp_path / "a", affine=shear)
    g = io.load_gre(mags, phases)
    assert any("sheared" in w and "18.0 degrees" in w for w in g.warnings)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rot = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    mags, phases = _echoes(tmp_path / "b", affine=rot)
    assert not any("sheared" in w for w in io.load_gre(mags, phases).warnings)


@pytest.mark.parametrize("b0, mhz, refused", [(3, 123.25, False), (3, 127.73, False), (1.5, 127.73, True),
                                              (7, 297.2, False), (3, 297.2, True)])
def test_field_strength_checked_against_the_imaging_frequency(tmp_path, b0, mhz, refused):
    """χ scales with 1/B0. The sidecars' ImagingFrequency is the scanner's proton frequency:
    42.577 MHz per tesla, so 123.25 MHz is a Siemens "3 T" magnet at 2.89 T (kept), 127.73 MHz
    is 3.00 T: a MagneticFieldStrength of 1.5 with it is refused, naming both and the fix."""
    mags, phases = _echoes(tmp_path)
    for f in mags + phases:
        e = int(Path(f).name.split("echo-")[1].split("_")[0])
        _sidecar(f, EchoTime=0.005 * e, EchoNumber=e, MagneticFieldStrength=b0, ImagingFrequency=mhz)
    if not refused:
        assert io.load_gre(mags, phases).field_strength == b0
        return
    with pytest.raises(ValueError, match=f"field strength {b0:g} T .* ImagingFrequency {mhz:.4g} MHz") as exc:
        io.load_gre(mags, phases)
    assert f"a {mhz / 42.577478:.2f} T magnet" in str(exc.value) and "pass --field-strength" in str(exc.value)
    # the option given against the frequency: refused too, the fix naming the option first
    with pytest.raises(ValueError, match="correct --field-strength"):
        io.load_gre(mags, phases, field_strength=b0 * 1.01)


def test_per_echo_files_ordered_by_sidecar_echo_time(tmp_path):
    """Per-echo files without echo numbers (no BIDS echo-N, no EchoNumber) but with one EchoTime
    per sidecar, given out of order: put in the order of their echo times, both parts alike."""
    names = ["b", "c", "a"]
    mags, phases = _echoes(tmp_path, names=names, sidecars=False)
    tes = {"a": 0.005, "b": 0.015, "c": 0.010}
    for f in mags + phases:
        _sidecar(f, EchoTime=tes[Path(f).name[0]], MagneticFieldStrength=3)
    g = io.load_gre(mags, phases)
    np.testing.assert_allclose(g.echo_times, [0.005, 0.010, 0.015])
    np.testing.assert_allclose(g.magnitude[..., 0], nib.load(str(mags[2])).get_fdata(), rtol=1e-6)  # "a" first
    np.testing.assert_allclose(g.phase[..., 2], nib.load(str(phases[0])).get_fdata(), atol=1e-6)  # "b" last
    assert g.provenance["echo_order"] == "sidecar EchoTime (no echo numbers), files reordered"
    # the phase files without sidecars cannot follow: the pairs would be of different echoes
    for f in phases:
        Path(str(f).replace(".nii.gz", ".json")).unlink()
    with pytest.raises(ValueError, match="magnitude files were put in echo order by their sidecar EchoTime .* "
                                         "phase files carry no echo numbers or echo times"):
        io.load_gre(mags, phases, echo_times=[0.005, 0.010, 0.015])


@pytest.mark.parametrize("values, words", [
    ([4000.0, 10000.0], "look like microseconds; divide by 1000000 (e.g. 0.004, 0.01)"),
    ([4.0, 10.0], "look like milliseconds; divide by 1000 (e.g. 0.004, 0.01)"),
])
def test_echo_times_in_other_units_are_named(values, words):
    from qsmflow._shared import checks

    with pytest.raises(ValueError, match=re.escape(words)):
        checks.echo_times(values)


def test_sidecar_faults_are_named_with_the_fix(tmp_path):
    """A sidecar fault is the sidecar's, said so, with the fix (not an option never given)."""
    mags, phases = _echoes(tmp_path)
    _sidecar(mags[1], EchoNumber=2, MagneticFieldStrength=3)  # one magnitude sidecar without EchoTime
    _sidecar(phases[1], EchoNumber=2, MagneticFieldStrength=3)
    with pytest.raises(ValueError, match="^echo times are missing: 1 of the 3 magnitude sidecars gives no EchoTime"):
        io.load_gre(mags, phases)
    for e, f in enumerate(mags + phases):
        _sidecar(f, EchoTime=0.005 * (e % 3 + 1), EchoNumber=e % 3 + 1, MagneticFieldStrength="3T")
    with pytest.raises(ValueError, match="^the sidecars' MagneticFieldStrength '3T' is not a field in tesla"):
        io.load_gre(mags, phases)
