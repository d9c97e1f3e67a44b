"""Shared fixtures: small analytic volumes and the optional real sample data."""

import os

# one test process per core (pytest-xdist): numpy's BLAS (OpenBLAS, MKL) and OpenMP keep to one
# thread in each, as in the jobs of `qsmflow bids --jobs N` (workflows.batch sets the same
# variables), instead of a pool of one thread per core in every process. Set before numpy is
# imported: OpenBLAS reads them once, when it loads. (Two workers with two BLAS threads each on
# this 2-core machine: the suite's summed test durations 441 s, 386 s with one.)
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import re  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qsmflow import kernels  # noqa: E402
from qsmflow._shared import allocator  # noqa: E402

# the tests call the pipeline in this process: let it reuse freed memory as the command line does
allocator.keep_freed_memory()
# the suite runs the default install's FFTs (scipy) unless told otherwise; the tests of the
# optional pyFFTW backend choose it themselves
os.environ.setdefault(kernels.FFT_ENV, "scipy")
# one test process per core (pytest-xdist): each keeps to one thread for its FFTs and slabs, as
# the jobs of `qsmflow bids --jobs N` do, instead of every process contending for every core
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault(kernels.THREADS_ENV, "1")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core this process may use (psutil would count the host's
    cores in a container limited to fewer)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(sub: str) -> Path:
    """Path to a folder of ../shared/data, skipping the test when it is absent."""
    p = DATA / sub
    if not p.exists():
        pytest.skip(f"sample data {p} not available")
    return p


def grid_mm(shape, voxel_size, centre=None):
    """Coordinates (mm) of voxel centres relative to the volume centre."""
    centre = (np.asarray(shape) - 1) / 2.0 if centre is None else np.asarray(centre)
    return np.meshgrid(*[(np.arange(n) - c) * d for n, c, d in zip(shape, centre, voxel_size)], indexing="ij")


def ellipsoid(shape, voxel_size, radii_mm, centre_mm=(0, 0, 0)):
    g = grid_mm(shape, voxel_size)
    return sum(((x - c) / r) ** 2 for x, c, r in zip(g, centre_mm, radii_mm)) <= 1.0


def radial_source(shape, voxel_size, centre_mm, radius_mm, chi_ppm, b0=(0.0, 0.0, 1.0)):
    """A sphere of χ with a 1 mm soft edge and its field, both in ppm, in closed form: (χ, field, r).

    Written here, not taken from qsmflow's kernels, so that tests of the kernels' users have
    an independent answer. For χ(s) depending on the distance s from a centre only, the
    Lorentz-corrected field at r is (3cos²θ - 1) [∫₀ʳ χ(s) s² ds / r³ - χ(r)/3], θ the angle
    between r and B0: the shells inside r act as point dipoles, those outside r add nothing,
    and the last term is the Lorentz sphere (0 inside a uniform sphere).
    """
    from scipy.integrate import cumulative_trapezoid
    from scipy.special import erfc

    d = [x - c for x, c in zip(grid_mm(shape, voxel_size), centre_mm)]
    r = np.sqrt(sum(x * x for x in d))

    def profile(s):
        return chi_ppm * 0.5 * erfc(s - radius_mm)

    s = np.linspace(0.0, r.max() + 1.0, 40001)
    enclosed = np.interp(r, s, cumulative_trapezoid(profile(s) * s * s, s, initial=0.0))
    b = np.asarray(b0, float) / np.linalg.norm(b0)
    rr = np.maximum(r, 1e-6)
    cos2 = (sum(x * bi for x, bi in zip(d, b)) / rr) ** 2
    return profile(r), (3 * cos2 - 1) * (enclosed / rr**3 - profile(r) / 3), r


def run_cli(argv, capsys):
    """Run ``qsmflow ARGV`` in-process: (exit code, stdout, stderr)."""
    from qsmflow import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


def printed_accuracy(text: str) -> dict:
    """The figures of a printed accuracy table (``metrics.format_report``): mask Dice, χ NRMSE
    (%), deep-grey χ slope and the largest deep-grey R2* error (%)."""
    found = {}
    for key, pattern in (("mask_dice", r"Dice / coverage / outside\s+([\d.]+)"),
                         ("chi_nrmse", r"chi NRMSE / HFEN \(%\)\s+([\d.]+)"),
                         ("deep_grey_slope", r"chi slope vs truth\s+(-?[\d.]+)"),
                         ("r2star_max_error_pct", r"largest deep-grey error \(%\)\s+([\d.]+)")):
        m = re.search(pattern, text)
        assert m, f"no {key} in the printed report"
        found[key] = float(m.group(1))
    return found


@pytest.fixture(scope="session")
def simulated_bids(tmp_path_factory):
    """``qsmflow simulate DIR --matrix 32,38,32 --voxel-size 5,5,5``, made once: tests only read it.
    The head of the small demo (``qsmflow demo``'s 5 mm head, seed 0): its tests are in the xdist
    group "demo_head", on one worker, where the anatomy is painted once for all of them
    (phantom.simulate._PAINTED)."""
    from qsmflow import cli

    data = tmp_path_factory.mktemp("simulated") / "bids"
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", str(data), "--matrix", "32,38,32", "--voxel-size", "5,5,5", "-q"])
    assert exc.value.code == 0
    return data
