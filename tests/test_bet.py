"""BET-style brain extraction: the mesh engine, a synthetic head with coil shading and veins,
and the real Philips head (eyes, face and neck in the field of view)."""

import numpy as np
import pytest
from conftest import ellipsoid, grid_mm, shared_data

from qsmflow import _mesh, bet, masking

SHAPE, VS = (60, 72, 56), (2.5, 2.5, 3.0)


def test_icosphere_is_a_closed_sphere_of_the_right_size():
    verts, faces = _mesh.icosphere(4)
    assert verts.shape == (2562, 3) and faces.shape == (5120, 3)
    topo = _mesh.Topology(faces, len(verts))
    assert sorted(np.unique(topo.degree)) == [5, 6] and (topo.degree == 5).sum() == 12
    # Euler characteristic of a closed surface of genus 0
    assert len(verts) - len(faces) * 3 // 2 + len(faces) == 2
    # outward normals: parallel to the position on a unit sphere
    assert np.allclose(np.einsum("ij,ij->i", topo.normals(verts), verts), 1.0, atol=2e-3)
    assert _mesh.enclosed_volume(verts * 10, faces) == pytest.approx(4 / 3 * np.pi * 1000, rel=0.01)


@pytest.mark.parametrize("vs", [(1.0, 1.0, 1.0), (1.0, 0.8, 1.5)])
def test_fill_counts_the_voxels_inside_a_sphere(vs):
    verts, faces = _mesh.icosphere(4)
    shape = (70, 80, 50)
    centre = np.array([33.3, 31.7, 36.1])
    inside = _mesh.fill(centre + verts * 24.0, faces, shape, vs)
    g = np.meshgrid(*[np.arange(n) * v for n, v in zip(shape, vs)], indexing="ij")
    exact = sum((x - c) ** 2 for x, c in zip(g, centre)) < 24.0**2
    # the 2562-vertex sphere lies inside the true one by up to 0.5 % of the radius
    assert (inside != exact).sum() < 0.03 * exact.sum()
    assert not (inside & ~exact).sum() > 0.002 * exact.sum()


def _head():
    """Ellipsoidal brain with texture and a dark vein near its top, CSF, a dark skull,
    bright scalp and two bright eyes outside the skull, under a receive profile that is
    brighter at the rim than in the centre (a multi-channel coil)."""
    rng = np.random.default_rng(0)
    brain = ellipsoid(SHAPE, VS, (55, 68, 50), (0, 0, 5))
    intracranial = ellipsoid(SHAPE, VS, (59, 72, 54), (0, 0, 5))
    skull = ellipsoid(SHAPE, VS, (65, 78, 60), (0, 0, 5)) & ~intracranial
    head = ellipsoid(SHAPE, VS, (70, 84, 66), (0, 0, 3))
    eyes = ellipsoid(SHAPE, VS, (11, 11, 11), (-30, 70, -38)) | ellipsoid(SHAPE, VS, (11, 11, 11), (30, 70, -38))
    x, y, z = grid_mm(SHAPE, VS)
    vein = (x**2 + (z - 50) ** 2 < 4.0**2) & intracranial  # along the top of the brain, like a sinus
    m0 = np.where(head, 0.9, 0.0)
    m0[skull] = 0.03
    m0[intracranial] = 1.0
    m0[brain] = 0.75 + 0.1 * (np.sin(x / 3) * np.sin(y / 4) > 0)[brain]
    m0[vein] = 0.25
    m0[eyes] = 1.0
    coil = 0.35 + 0.65 * (np.sqrt(x**2 + y**2 + z**2) / 90.0) ** 2
    img = m0 * coil + 0.01 * np.abs(rng.standard_normal(SHAPE) + 1j * rng.standard_normal(SHAPE))
    return img.astype(np.float32), brain, intracranial, eyes, vein


@pytest.fixture(scope="module")
def synthetic():
    img, brain, intracranial, eyes, vein = _head()
    return img, brain, intracranial, eyes, vein, masking.bet_brain_mask(img, VS)


def test_bet_keeps_the_brain_and_its_veins_under_coil_shading(synthetic):
    img, brain, intracranial, eyes, vein, mask = synthetic
    assert (mask & brain).sum() / brain.sum() > 0.98  # measured 1.000
    assert (mask & vein).sum() / vein.sum() > 0.9  # measured 1.000: the dark vein stays in
    assert (mask & ~intracranial).sum() / mask.sum() < 0.03  # measured 0.009: skull partial volume
    assert not (mask & eyes).any()


def test_bet_arguments_are_checked():
    img = np.ones((20, 20, 20), np.float32)
    with pytest.raises(ValueError, match="fractional_threshold"):
        bet.bet_mask(img, (1, 1, 1), fractional_threshold=1.5)
    with pytest.raises(ValueError, match="vertical_gradient"):
        bet.bet_mask(img, (1, 1, 1), vertical_gradient=2)
    with pytest.raises(ValueError, match="background threshold"):
        bet.bet_mask(np.zeros((20, 20, 20)), (1, 1, 1))


def test_philips_head_mask_is_the_brain():
    """Real whole head (Philips 3 T, 3 mm, eyes, face and neck in view). Voxel positions read off
    the images: globe centres (23, 56, 14) and (56, 56, 14); cerebellar hemispheres at
    (30, 22, 11) and (50, 22, 11); the face in front of y = 52 below the orbital roof (z ≤ 15)."""
    nib = pytest.importorskip("nibabel")
    d = shared_data("philips_head") / "nifti"
    mag = np.stack([nib.load(d / f"sub-01_echo-{e}_part-mag_MEGRE.nii").get_fdata() for e in (1, 2)], -1)
    mask = masking.bet_brain_mask(mag.astype(np.float32), (3.0, 3.0, 3.0))
    litres = mask.sum() * 27 / 1e6
    assert 1.1 <= litres <= 1.75, litres  # measured 1.59 L
    for globe in [(23, 56, 14), (56, 56, 14)]:
        x, y, z = globe
        assert not mask[x - 2 : x + 3, y - 2 : y + 3, z - 1 : z + 2].any(), globe
    assert mask[30, 22, 11] and mask[50, 22, 11]  # cerebellum
    assert not mask[:, 52:, :16].any()  # face, nose, orbits
    low = np.nonzero(mask.any(axis=(0, 1)))[0].min()
    bottom = np.argwhere(mask[:, :, low : low + 3])
    # the lowest 9 mm hold only brainstem and the bottom of the cerebellum: a compact region
    # behind the clivus (measured x 30-49, y 24-39), no neck muscle beside it
    assert np.ptp(bottom[:, 0]) <= 21 and bottom[:, 1].min() >= 18 and bottom[:, 1].max() <= 42
