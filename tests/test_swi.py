"""SWI: veins darkened with qsmflow's phase sign, smooth background removed, minIP slabs in mm."""

import nibabel as nib
import numpy as np
import pytest

from qsmflow import kernels, phantom, swi
from qsmflow._shared.constants import GAMMA_BAR_HZ_PER_T

from conftest import grid_mm

HZ_PER_PPM_3T = GAMMA_BAR_HZ_PER_T * 3.0 * 1e-6
TE = np.array([0.004, 0.010, 0.016, 0.022, 0.028])


def _vein(shape, voxel_size, radius_mm=2.0, chi_ppm=0.4):
    """A cylinder of venous χ along z (parallel to B0): its field (Hz at 3 T) and where it is."""
    x, y, z = grid_mm(shape, voxel_size)
    r = np.hypot(x, y)
    chi = np.where(r <= radius_mm, chi_ppm, 0.0).astype(np.float32)
    field = kernels.forward_field(chi, voxel_size, (0.0, 0.0, 1.0)) * HZ_PER_PPM_3T
    central = np.abs(z) < 8  # away from the cylinder's cut ends
    return field, r, central


def _wrap(phase):
    return np.angle(np.exp(1j * phase)).astype(np.float32)


# test_phantom.py's 3 mm head without oversampling: on its worker this one reuses its painting
@pytest.mark.xdist_group("phantom")
def test_phantom_phase_sign_convention():
    """On the head phantom φ = +2π·Δf·TE, and the default mask darkens positive-field voxels only."""
    head = phantom.simulate_head((54, 64, 54), (3.0,) * 3, seed=0, oversample=1)
    brain = head.brain_mask
    dphi = _wrap(head.phase[..., 3] - head.phase[..., 1])
    expected = 2 * np.pi * head.total_field_hz * (head.echo_times[3] - head.echo_times[1])
    ok = brain & (np.abs(expected) < 2)
    slope = np.polyfit(expected[ok], dphi[ok], 1)[0]
    assert slope == pytest.approx(1.0, abs=0.01)  # +1, not -1: phase grows with a positive field

    local_hz = head.local_field_ppm * HZ_PER_PPM_3T
    para, dia = brain & (local_hz > 3), brain & (local_hz < -3)  # ±3 Hz: well above the noise
    mag = head.magnitude[..., 2]
    ratio = {}
    for sign in (1, -1):
        out, _ = swi.homodyne_swi(mag, head.phase[..., 2], mask=brain, voxel_size=head.voxel_size,
                                  phase_sign=sign)
        q = out / np.maximum(mag, 1e-6)
        ratio[sign] = (q[para].mean(), q[dia].mean())
    # measured 0.72 / 0.97 with the default sign, 0.99 / 0.69 flipped
    assert ratio[1][0] < 0.8 and ratio[1][1] > 0.93
    assert ratio[-1][0] > 0.95 and ratio[-1][1] < 0.8


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)])
def test_homodyne_darkens_parallel_vein(vs):
    shape = tuple(int(48 / d) for d in vs)
    field, r, central = _vein(shape, vs)
    mag = np.ones(shape, np.float32)
    out, hp = swi.homodyne_swi(mag, _wrap(2 * np.pi * field * 0.02), voxel_size=vs)
    vein, far = central & (r <= 1.5), central & (r > 8)
    assert hp[vein].min() > 1.5  # χ/3 · 128 Hz/ppm · 20 ms: 2.1 rad, a little lost to the filter
    assert out[vein].max() < 0.1
    assert out[far].min() > 0.99  # outside a parallel cylinder the field is zero
    flipped, _ = swi.homodyne_swi(mag, _wrap(2 * np.pi * field * 0.02), voxel_size=vs, phase_sign=-1)
    assert flipped[vein].min() == 1.0  # positive phase is left alone with the other convention


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0), (1.5, 1.0, 2.0)])
@pytest.mark.parametrize("curvature", [0.002, -0.002])
def test_homodyne_removes_smooth_background(vs, curvature):
    """A wrapped linear + quadratic phase (several cycles) leaves the tissue's SWI ≈ magnitude.

    The linear part goes exactly; a quadratic leaves a constant of about -σ²·∇²φ/2 (σ² ≈ 8 mm², the
    variance of the 8 mm Hann window's point spread): 0.04 rad here, which darkens by 5 % when positive."""
    shape = tuple(int(round(48 / d)) for d in vs)
    x, y, z = grid_mm(shape, vs)
    ball = (x / 22) ** 2 + (y / 22) ** 2 + (z / 20) ** 2 <= 1
    inner = (x / 14) ** 2 + (y / 14) ** 2 + (z / 12) ** 2 <= 1
    phase = 1.0 + 0.3 * x - 0.2 * z + curvature * (x * x + y * y + z * z)
    mag = ball.astype(np.float32)
    out, hp = swi.homodyne_swi(mag, _wrap(phase), mask=ball, voxel_size=vs)
    naive = np.clip(1 - np.maximum(_wrap(phase), 0) / np.pi, 0, 1) ** 4
    assert naive[inner].mean() < 0.7  # unfiltered, the background would darken a third
    assert np.abs(hp[inner]).max() < 0.05
    assert out[inner].min() > 0.93 and out[inner].mean() > 0.95


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0), (2.0, 2.0, 1.0)])
def test_homodyne_filter_width_is_in_mm(vs):
    """A 24 mm phase ripple along z passes the 8 mm Hann low-pass at w = (1 + cos(π/3))/2 = 0.75,
    so a quarter stays in the filtered phase, whatever the slice spacing."""
    shape = (32, 32, int(96 / vs[2]))
    _, _, z = grid_mm(shape, vs)
    a, lam = 0.1, 24.0
    _, hp = swi.homodyne_swi(np.ones(shape, np.float32), a * np.sin(2 * np.pi * z / lam), voxel_size=vs,
                             filter_mm=8.0)
    centre = np.abs(z) <= 12
    kept = 2 * np.mean(hp[centre] * np.sin(2 * np.pi * z[centre] / lam)) / a
    assert kept == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)])
def test_clear_swi_darkens_vein_beyond_magnitude(vs):
    shape = tuple(int(48 / d) for d in vs)
    field, r, central = _vein(shape, vs)
    r2 = np.where(r <= 2.0, 45.0, 20.0)  # venous blood and white matter at 3 T
    mag = np.exp(-r2[..., None] * TE).astype(np.float32)
    out, hp = swi.clear_swi(mag, field, TE, voxel_size=vs)
    rss = np.sqrt(np.sum(mag.astype(np.float64) ** 2, axis=3))
    vein, far = central & (r <= 1.5), central & (r > 8)
    assert rss[vein].mean() / rss[far].mean() > 0.7  # T2* alone: a weak contrast (0.75)
    assert out[vein].mean() / out[far].mean() < 0.1
    np.testing.assert_allclose(out[far], rss[far], rtol=2e-3)
    flipped, _ = swi.clear_swi(mag, field, TE, voxel_size=vs, phase_sign=-1)
    np.testing.assert_allclose(flipped[vein], rss[vein], rtol=1e-5)
    _, hp2 = swi.clear_swi(mag, field, TE, voxel_size=vs, effective_te=2 * TE.mean())
    np.testing.assert_allclose(hp2, 2 * hp, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)])
@pytest.mark.parametrize("curvature", [0.005, -0.005])
def test_clear_swi_removes_smooth_background(vs, curvature):
    """A linear field (70 Hz across the tissue: 7 rad at the mean TE) and a mild quadratic are removed
    inside the mask; away from its edge (≥ 2σ) the normalised smoothing is unbiased for a linear field."""
    shape = tuple(int(round(48 / d)) for d in vs)
    x, y, z = grid_mm(shape, vs)
    ball = (x / 22) ** 2 + (y / 22) ** 2 + (z / 20) ** 2 <= 1
    inner = (x / 14) ** 2 + (y / 14) ** 2 + (z / 12) ** 2 <= 1
    field = 5.0 + 1.5 * x - 0.5 * z + curvature * (x * x + y * y + z * z)
    mag = np.where(ball[..., None], np.exp(-20.0 * TE), 0.0).astype(np.float32)
    out, hp = swi.clear_swi(mag, field, TE, mask=ball, voxel_size=vs)
    rss = np.sqrt(np.sum(mag.astype(np.float64) ** 2, axis=3))
    q = out[inner] / rss[inner]
    assert np.abs(hp[inner]).max() < 0.1
    assert q.min() > 0.9 and q.mean() > 0.97
    assert np.all(hp[~ball] == 0) and np.allclose(out[~ball], 0)


def test_minip_slab_count_in_mm():
    """8 mm of 2 mm slices is 4 slices, rounded to the odd 5: a dark voxel spreads ±2 slices."""
    assert [swi.minip_slices(8, 2), swi.minip_slices(8, 1), swi.minip_slices(16, 1.5), swi.minip_slices(0.5, 1),
            swi.minip_slices(3.9, 1)] == [5, 9, 11, 1, 3]
    img = np.ones((6, 7, 20), np.float32)
    img[3, 3, 10] = 0.0
    out = swi.min_intensity_projection(img, (1.0, 1.0, 2.0), slab_mm=8.0, axis=2)
    assert out.shape == img.shape
    assert np.flatnonzero(out[3, 3] == 0).tolist() == [8, 9, 10, 11, 12]
    assert np.count_nonzero(out == 0) == 5
    iso = swi.min_intensity_projection(img, (1.0, 1.0, 1.0), slab_mm=8.0, axis=2)
    assert np.flatnonzero(iso[3, 3] == 0).tolist() == list(range(6, 15))
    # along x with 1 mm voxels the same slab is 9 slices; the axis ends clip it
    img = np.ones((12, 5, 5), np.float32)
    img[1, 2, 2] = -3.0
    out = swi.min_intensity_projection(img, (1.0, 1.0, 2.0), slab_mm=8.0, axis=0)
    assert np.flatnonzero(out[:, 2, 2] == -3).tolist() == [0, 1, 2, 3, 4, 5]
    assert np.count_nonzero(out != 1) == 6


def test_minip_wider_than_volume_is_global_minimum():
    rng = np.random.default_rng(0)
    img = rng.uniform(1, 2, (4, 5, 6)).astype(np.float32)
    out = swi.min_intensity_projection(img, (1, 1, 1), slab_mm=100, axis=1)
    np.testing.assert_array_equal(out, np.broadcast_to(img.min(axis=1, keepdims=True), img.shape))


def _bad_calls():
    m3, m4 = np.ones((8, 8, 8)), np.ones((8, 8, 8, 5))
    vs = (1, 1, 1)
    return [
        (lambda: swi.homodyne_swi(m3, np.ones((8, 8, 9)), voxel_size=vs), r"phase has shape"),
        (lambda: swi.homodyne_swi(m4, m4, voxel_size=vs), r"magnitude must be 3D"),
        (lambda: swi.homodyne_swi(m3, m3, mask=np.ones((8, 8)), voxel_size=vs), r"mask has shape"),
        (lambda: swi.homodyne_swi(m3, m3, voxel_size=(1, 1)), r"voxel_size must be 3 positive"),
        (lambda: swi.homodyne_swi(m3, m3, voxel_size=vs, filter_mm=-8), r"filter_mm must be positive"),
        (lambda: swi.homodyne_swi(m3, m3, voxel_size=vs, phase_sign=0), r"phase_sign must be \+1"),
        (lambda: swi.homodyne_swi(m3, m3, voxel_size=vs, phase_sign=True), r"phase_sign must be \+1"),
        (lambda: swi.clear_swi(m3, m3, TE, voxel_size=vs), r"magnitude must be 4D"),
        (lambda: swi.clear_swi(m4, np.ones((8, 8, 7)), TE, voxel_size=vs), r"field_hz has shape"),
        (lambda: swi.clear_swi(m4, m3, TE[:3], voxel_size=vs), r"3 echo times for 5 echoes"),
        (lambda: swi.clear_swi(m4, m3, TE * 1000, voxel_size=vs), r"divide by 1000"),
        (lambda: swi.clear_swi(m4, m3, TE, voxel_size=vs, effective_te=16), r"effective_te: .* look like milliseconds"),
        (lambda: swi.clear_swi(m4, m3, TE, voxel_size=vs, effective_te=0.5), r"effective_te: .* longer than any gradient"),
        (lambda: swi.clear_swi(m4, m3, TE, voxel_size=vs, sigma_mm=0), r"sigma_mm must be positive"),
        (lambda: swi.min_intensity_projection(m3, vs, slab_mm=-16), r"slab_mm must be positive"),
        (lambda: swi.min_intensity_projection(m3, vs, axis=3), r"axis must be 0, 1 or 2"),
        (lambda: swi.min_intensity_projection(m4, vs), r"image must be 3D"),
    ]


@pytest.mark.parametrize("call,message", _bad_calls())
def test_bad_input_one_line_value_error(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.xdist_group("demo_head")  # simulated_bids' head (see conftest.py)
def test_swi_command_writes_swi_and_minip_and_refuses_a_bad_echo(tmp_path, capsys, simulated_bids):
    from qsmflow import cli

    def run(argv):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        return exc.value.code, capsys.readouterr().err

    anat = simulated_bids / "sub-phantom" / "anat"
    inputs = ["--mag", str(anat / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
              "--phase", str(anat / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz")]
    # the simulated head's true mask: the brain mask is not what this test is about (BET's are test_bet's)
    truth = simulated_bids / "derivatives" / "truth" / "sub-phantom" / "anat"
    given = ["--mask", str(truth / "sub-phantom_mask.nii.gz")]
    for method in ("clear", "homodyne"):
        out = tmp_path / method
        code, err = run(["swi", *inputs, "--swi-method", method, "-o", str(out), "-q", *given])
        assert code == 0, err
        swi_img = nib.load(str(out / "sub-phantom_swi.nii.gz")).get_fdata()
        minip = nib.load(str(out / "sub-phantom_minIP.nii.gz")).get_fdata()
        assert swi_img.shape == (32, 38, 32) and np.all(minip <= swi_img + 1e-6)
    bad = tmp_path / "bad"
    for extra, word in [(["--swi-method", "homodyne", "--echo", "9"], "there are only 5 echoes; give 1 to 5"),
                        (["--echo", "2"], "is for --swi-method homodyne"), (["--minip-slab", "-4"], "--minip-slab")]:
        code, err = run(["swi", *inputs, *extra, "-o", str(bad), "-q"])
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
    assert not bad.exists()
    # one echo (4 ms): SWI makes neither χ nor R2*, so the warnings about them are not its own
    one = ["--mag", str(anat / "sub-phantom_echo-1_part-mag_MEGRE.nii.gz"),
           "--phase", str(anat / "sub-phantom_echo-1_part-phase_MEGRE.nii.gz")]
    code, err = run(["swi", *one, "-o", str(tmp_path / "one"), "-q", *given])
    assert code == 0, err
    assert (tmp_path / "one" / "sub-phantom_swi.nii.gz").exists()
    assert "χ" not in err and "R2*" not in err and "too short for QSM" not in err, err


def _oblique_vein(shape, voxel_size, angle_deg, radius_mm=2.0, chi_ppm=0.4):
    """An infinite cylinder of venous χ at ``angle_deg`` to B0 (z), its axis in the x-z plane:
    field (Hz at 3 T) in closed form, distance from the axis, cos 2φ, position along the axis.

    Inside: Δχ/6 (3cos²θ - 1); outside: Δχ/2 sin²θ (a/ρ)² cos 2φ, φ measured from B0's
    component across the axis (Lorentz-corrected; written here, not taken from qsmflow).
    """
    g = np.stack(grid_mm(shape, voxel_size), axis=-1)
    th = np.radians(angle_deg)
    u = np.array([np.sin(th), 0.0, np.cos(th)])
    along = g @ u
    across = g - along[..., None] * u
    rho = np.linalg.norm(across, axis=-1)
    b_across = np.array([0.0, 0.0, 1.0]) - np.cos(th) * u
    norm = np.linalg.norm(b_across)
    cos_phi = (across @ b_across) / np.maximum(rho * norm, 1e-9) if norm > 1e-9 else np.zeros_like(rho)
    cos2phi = 2 * cos_phi**2 - 1
    inside = chi_ppm / 6 * (3 * np.cos(th) ** 2 - 1)
    outside = chi_ppm / 2 * np.sin(th) ** 2 * (radius_mm / np.maximum(rho, 1e-9)) ** 2 * cos2phi
    return (np.where(rho <= radius_mm, inside, outside) * 127.732434).astype(np.float32), rho, cos2phi, along


@pytest.mark.parametrize("angle", [30, 90])
def test_clear_swi_on_veins_oblique_to_b0(angle):
    """A vein at 30° to B0 has a positive field inside and is darkened; at 90° its inside field is
    negative (-Δχ/6) and stays bright, and the positive lobes beside it along B0 go dark: the
    positive-phase mask follows the field, not the vessel (measured 0.24 / 1.00, lobes 0.07)."""
    shape, vs = (48, 48, 48), (1.0, 1.0, 1.0)
    field, rho, cos2phi, along = _oblique_vein(shape, vs, angle)
    r2 = np.where(rho <= 2.0, 45.0, 20.0)
    mag = np.exp(-r2[..., None] * TE).astype(np.float32)
    out, _ = swi.clear_swi(mag, field, TE, voxel_size=vs)
    ratio = out / np.sqrt(np.sum(mag.astype(np.float64) ** 2, axis=3))
    central = np.abs(along) < 10
    vein, far = central & (rho <= 1.5), central & (rho > 8)
    assert abs(ratio[far].mean() - 1) < 0.01
    if angle == 30:
        assert ratio[vein].mean() < 0.35
    else:
        lobes = central & (rho > 2.5) & (rho < 3.5) & (cos2phi > 0.8)
        assert ratio[vein].min() > 0.99 and ratio[lobes].mean() < 0.15
