"""QC report: every figure a valid PNG, obliquity and warnings shown, the dataset index."""

import base64
import io as _io
import json
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


@pytest.fixture(scope="module")
def oblique_data(tmp_path_factory):
    """A 4 mm simulated head, slab tilted 20°, with NaN voxels in the phase of echo 1."""
    data = tmp_path_factory.mktemp("obl")
    with pytest.raises(SystemExit) as exc:
        cli.main(["simulate", str(data), "--matrix", "40,48,40", "--voxel-size", "4,4,4", "--oblique", "20", "-q"])
    assert exc.value.code == 0
    anat = data / "sub-phantom" / "anat"
    p1 = anat / "sub-phantom_echo-1_part-phase_MEGRE.nii.gz"
    img = nib.load(str(p1))
    ph = np.asarray(img.dataobj, np.float32)
    ph[20, 24, 20:23] = np.nan
    nib.save(nib.Nifti1Image(ph, img.affine, img.header), str(p1))
    return anat


def test_run_writes_a_report_with_every_figure_obliquity_and_warnings(oblique_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(["run", "--mag", str(oblique_data / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(oblique_data / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out)],
                        capsys)
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
    assert _check_pngs((out / "sub-phantom_report.html").read_text(encoding="utf-8")) == 8


def test_no_report_and_report_errors(oblique_data, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = _run(["run", "--mag", str(oblique_data / "sub-phantom_echo-*_part-mag_MEGRE.nii.gz"),
                         "--phase", str(oblique_data / "sub-phantom_echo-*_part-phase_MEGRE.nii.gz"), "-o", str(out),
                         "--no-report", "--inversion", "medi", "--bgremove", "vsharp", "--swi", "--minip-slab", "12",
                         "-q"], capsys)
    assert code == 0, err
    assert (out / "sub-phantom_Chimap.nii.gz").exists() and not list(out.glob("*report*"))
    prov = json.loads((out / "sub-phantom_provenance.json").read_text())
    assert prov["parameters"]["swi"]["minip_slices"] == 3  # 12 mm of 4 mm slices
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
