"""QC report: every figure a valid PNG, obliquity and warnings shown, the dataset index."""

import base64
import io as _io
import json
import re
from html.parser import HTMLParser

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

from qsmflow import cli


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


_run = run_cli


def _check_pngs(page: str) -> int:
    parser = _Images()
    parser.feed(page)
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        Image.open(_io.BytesIO(raw)).verify()  # raises on a broken PNG
        img = Image.open(_io.BytesIO(raw))
        assert img.width > 50 and img.height > 50 and np.asarray(img).std() > 0  # not blank
    return len(parser.srcs)


@pytest.fixture(scope="session")
def oblique_data(tmp_path_factory):
    """A 5 mm simulated head (simulated_bids' head), slab tilted 20°, with NaN voxels in the
    phase of echo 1."""
    data = tmp_path_factory.mktemp("obl")
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", str(data), "--matrix", "32,38,32", "--voxel-size", "5,5,5", "--oblique", "20", "-q"])
    assert exc.value.code == 0
    anat = data / "sub-phantom" / "anat"
    p1 = anat / "sub-phantom_echo-1_part-phase_MEGRE.nii.gz"
    img = nib.load(str(p1))
    ph = np.asarray(img.dataobj, np.float32)
    ph[20, 24, 20:23] = np.nan
    nib.save(nib.Nifti1Image(ph, img.affine, img.header), str(p1))
    return anat


def _truth_mask(oblique_data):
    """The simulated head's true brain mask: the report tests are not about the mask."""
    return oblique_data.parents[1] / "derivatives" / "truth" / "sub-phantom" / "anat" / "sub-phantom_mask.nii.gz"


# the oblique head is simulated_bids' anatomy tilted: on the worker of those tests (see conftest.py)
@pytest.mark.xdist_group("demo_head")
def test_run_writes_a_report_with_every_figure_obliquity_and_warnings(oblique_data, tmp_path, capsys):
    out = tmp_path / "out"
    # MEDI (0.6 s here, TFI 4 s): the report is tested, every figure is there with either; the
    # default chain's reports are written by the demo's and the examples' tests
    code, _, err = _run(["run", "--mag", str(oblique_data / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(oblique_data / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out),
                         "--mask", str(_truth_mask(oblique_data)), "--inversion", "medi"], capsys)
    assert code == 0, err
    page = (out / "sub-phantom_report.html").read_text(encoding="utf-8")
    # magnitude+mask, total field, local field, χ, its uncertainty, R2*, T2*, histogram
    assert _check_pngs(page) == 8
    for title in ("Brain mask", "Total field", "Local field", "Susceptibility", "Uncertainty of χ", "R2*", "T2*",
                  "Histogram of χ", "Region statistics", "χ noise SD (RMS) ppm", "Provenance", "Runtimes"):
        assert title in page, title
    prov = json.loads((out / "sub-phantom_provenance.json").read_text())
    angle = prov["input"]["b0_angle_to_slice_axis_deg"]
    assert abs(angle - 20) < 0.5
    assert f"{angle:.1f}°" in page
    # the NaN warning is shown before the first figure, in the warning box
    warn_at, first_fig = page.find('class="warn"'), page.find("<h2>")
    assert 0 < warn_at < first_fig
    assert "NaN" in page[warn_at:first_fig]
    # and qsmflow report rewrites it from the folder alone
    (out / "sub-phantom_report.html").unlink()
    code, stdout, err = _run(["report", str(out)], capsys)
    assert code == 0 and "sub-phantom_report.html" in stdout, err
    again = (out / "sub-phantom_report.html").read_text(encoding="utf-8")
    assert _check_pngs(again) == 8
    # the run made its report from the maps in memory: the same page as from the files, but for
    # the time it was written and the magnitude under the mask (the run's has its NaN voxels at 0)
    def strip(html):
        html = re.sub(r"Written by qsmflow .*?</small>", "", html)
        return re.sub(r'<img alt="Brain mask on the first-echo magnitude" src="[^"]*">', "", html)

    assert strip(again) == strip(page)
    # every JSON the run wrote is strict JSON (this head has NaN voxels: no bare NaN anywhere)

    def refuse(word):
        raise ValueError(f"not strict JSON: {word}")

    for side in out.glob("*.json"):
        json.loads(side.read_text(), parse_constant=refuse)


@pytest.mark.xdist_group("demo_head")
def test_no_report_and_report_errors(oblique_data, tmp_path, capsys):
    out = tmp_path / "out"
    truth = _truth_mask(oblique_data)
    code, _, err = _run(["run", "--mag", str(oblique_data / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(oblique_data / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out),
                         "--mask", str(truth),
                         "--no-report", "--inversion", "medi", "--bgremove", "vsharp", "--swi", "--minip-slab", "15",
                         "-q"], capsys)
    assert code == 0, err
    assert (out / "sub-phantom_Chimap.nii.gz").exists() and not list(out.glob("*report*"))
    prov = json.loads((out / "sub-phantom_provenance.json").read_text())
    assert prov["parameters"]["swi"]["minip_slices"] == 3  # 15 mm of 5 mm slices
    # the report of a run with SWI shows it: two more figures (and one for the uncertainty of χ)
    code, _, err = _run(["report", str(out), "-q"], capsys)
    assert code == 0, err
    page = (out / "sub-phantom_report.html").read_text(encoding="utf-8")
    assert _check_pngs(page) == 10 and "minimum-intensity projection" in page
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, word in [(empty, "no qsmflow outputs"), (tmp_path / "missing", "is not a folder")]:
        code, _, err = _run(["report", str(target)], capsys)
        assert code == 1 and word in err and len(err.strip().splitlines()) == 1, err
    assert not list(empty.iterdir())
    # a provenance file cut short: named, with the fix, not the JSON parser's words alone
    (out / "sub-phantom_provenance.json").write_text('{"qsmflow_version": "0.1", "par', encoding="utf-8")
    code, _, err = _run(["report", str(out)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "sub-phantom_provenance.json is not readable JSON" in err and "run it again with --force" in err


def test_views_are_captioned_lettered_and_show_no_background_as_tissue():
    """Outside the map's region the views are black (a grey χ of 0 outside the brain looked like
    tissue); each view has its caption row above and its orientation letters on its edges."""
    from qsmflow.workflows import figures

    vol = np.full((30, 30, 30), 0.5, np.float32)
    region = np.zeros(vol.shape, bool)
    region[10:20, 10:20, 10:20] = True
    img = np.asarray(figures.three_views(vol, (1, 1, 1), (15, 15, 15), 0.0, 1.0, region=region))
    tile = img[18:, :240]  # the axial view, below its caption row
    grey = np.all(tile == colour_of(0.5), axis=-1)
    black = np.all(tile == 0, axis=-1)
    assert grey.sum() == pytest.approx(80 * 80, rel=0.1)  # 10 x 10 voxels of 8 x 8 pixels
    assert black.sum() > 0.7 * tile.shape[0] * tile.shape[1]
    yellow = (tile[..., 0] > 120) & (tile[..., 1] > 100) & (tile[..., 2] < 60)  # the letters' anti-aliased ink
    assert yellow[:, :20].any() and yellow[:, -20:].any() and yellow[:20].any() and yellow[-20:].any()  # L R A P
    assert (img[:18] < 100).any()  # caption ink


def colour_of(value):
    from qsmflow.workflows import figures

    return tuple(figures.colourise(np.array([[value]]), 0.0, 1.0)[0, 0])


def test_windows_and_histogram_clipping():
    """T2*'s window is the brain's 90th percentile (tissue, not the 0.5 s CSF cap); the χ
    histogram leaves out what lies outside its range and says how much."""
    from qsmflow.workflows import figures, report

    t2 = np.concatenate([np.full(950, 0.04), np.full(50, 0.5)])  # 5 % CSF at the cap
    assert report._window(t2, "tissue")[1] < 0.06 and report._window(t2, "pos")[1] == pytest.approx(0.5)
    values = np.concatenate([np.zeros(50), [-1, -2, -3], [5, 6]])
    with_note = np.asarray(figures.histogram(values, -0.3, 0.4, "ppm", label="chi"))
    without = np.asarray(figures.histogram(np.zeros(50), -0.3, 0.4, "ppm", label="chi"))
    assert (with_note[:14] < 100).any() and not (without[:14] < 100).any()  # the note's line at the top


def test_region_statistics_leave_out_voxels_where_chi_is_undefined():
    """χ is 0 outside the local mask (undefined there): the χ figures come from the voxels where it
    is defined (the local mask's row; the whole mask's row leaves them out), R2* from each row's
    region."""
    from qsmflow.workflows import report

    mask = np.zeros((6, 6, 6), np.float32)
    mask[1:5, 1:5, 1:5] = 1  # 64 voxels
    local = np.zeros_like(mask)
    local[1:5, 1:5, 1:3] = 1  # 32 of them hold χ
    chi = np.where(local > 0, 0.1, 0.0).astype(np.float32)
    r2 = np.where(mask > 0, 20.0, 0.0).astype(np.float32)
    r2[1:5, 1:5, 3:5] = 30.0
    html = report._region_stats({"mask": mask, "localmask": local, "Chimap": chi, "R2starmap": r2}, (1, 1, 1))
    def row(name):
        return [c.split("<")[0] for c in html.split(name)[1].split("</tr>")[0].split("<td>")[1:]]

    assert row("whole brain (mask)")[:6] == ["64", "0.1", "–", "–", "–", "25.0"]  # R2*: the 20 and 30/s halves
    # χ over the 32 voxels where it is defined: not +0.0500 with the mask's zeros
    assert row("where χ is defined (local mask)")[:6] == ["32", "0.0", "+0.1000", "+0.1000", "0.0000", "20.0"]


def test_a_broken_run_record_does_not_hide_the_others(tmp_path):
    """In a bids derivative, one run's provenance cut short (a run killed while writing it) is
    listed as failed with the file named and the fix; the other runs stay listed as done."""
    from qsmflow.workflows import batch

    for sub, text in (("sub-01", json.dumps({"timings_s": {"mask": 1.5, "inversion": 2.0}})), ("sub-02", '{"timi')):
        d = tmp_path / sub / "anat"
        d.mkdir(parents=True)
        (d / f"{sub}_provenance.json").write_text(text, encoding="utf-8")
    runs = dict(batch.recorded_runs(tmp_path))
    assert runs["sub-01/anat"].status == "done" and runs["sub-01/anat"].seconds == pytest.approx(3.5)
    bad = runs["sub-02/anat"]
    assert bad.status == "failed" and "sub-02_provenance.json is not readable JSON" in bad.message
    assert "qsmflow bids for a dataset" in bad.message
