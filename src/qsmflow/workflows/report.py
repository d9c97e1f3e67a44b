"""Quality-control report: one self-contained HTML page per run, and a dataset index.

The page is built from a run's output folder alone (the maps, ``_provenance.json``), so
``qsmflow report OUT_DIR`` can redo it at any time and ``run``/``bids`` write it last.
Figures are PNGs embedded as data URIs: the page is one file that can be mailed or moved.
Warnings raised during the run are shown first, in a red box.
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import __version__, io
from . import figures as _figures
from .outputs import REPORT_SUFFIX, read_provenance

log = logging.getLogger(__name__)

__all__ = ["CHI_WINDOW_PPM", "REPORT_SUFFIX", "write_index", "write_report"]

#: Display window of χ (ppm): the usual range of brain tissue.
CHI_WINDOW_PPM = (-0.15, 0.25)
INDEX_NAME = "index.html"
_HIST_RANGE_PPM = (-0.3, 0.4)

# map suffix → (title, colour map, unit, window: fixed (lo, hi) or "sym" / "pos" from percentiles)
_PANELS = [
    ("fieldmap", "Total field (unwrapped, multi-echo fit)", "diverging", "Hz", "sym"),
    ("localfield", "Local field (background removed)", "diverging", "ppm", "sym"),
    ("Chimap", "Susceptibility χ", "gray", "ppm", CHI_WINDOW_PPM),
    ("desc-sd_Chimap", "Uncertainty of χ: its standard deviation from the field noise alone (not the bias)", "hot",
     "ppm", "pos"),
    ("R2starmap", "R2*", "hot", "1/s", "pos"),
    ("T2starmap", "T2*", "gray", "s", "tissue"),
    ("MWFmap", "Myelin water fraction", "hot", "", (0.0, 0.3)),
    ("swi", "SWI", "gray", "", "pos"),
    ("minIP", "SWI minimum-intensity projection", "gray", "", "pos"),
]
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.warn{background:#fde8e8;border:2px solid #c0392b;padding:.6em 1em;margin:1em 0}
.ok{background:#e8f6ea;border:1px solid #27ae60;padding:.4em 1em;margin:1em 0}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}img{max-width:100%}
.done{color:#1e8449}.failed{color:#c0392b;font-weight:bold}.skipped{color:#777}"""


def _e(x) -> str:
    return html.escape(str(x))


def _window(values: np.ndarray, rule):
    if not isinstance(rule, str):
        return rule
    if values.size == 0:
        return (0.0, 1.0)
    if rule == "sym":
        hi = float(np.percentile(np.abs(values), 99)) or 1.0
        return (-_round(hi), _round(hi))
    if rule == "tissue":  # T2*: CSF and the 0.5 s cap would leave tissue (20-80 ms) black
        return (0.0, _round(float(np.percentile(values, 90))) or 1.0)
    return (0.0, _round(float(np.percentile(values, 99))) or 1.0)


def _round(x: float) -> float:
    """Two significant digits, for readable colour-bar ends."""
    return float(f"{x:.2g}") if x else 0.0


def _table(rows, header=None) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    return "<table>" + head + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) \
        + "</table>"


def _region_stats(maps: dict, vs) -> str:
    # no deep-grey row: without an atlas it would have to be found by thresholding χ itself, which
    # biases its statistics (on the phantom: 0.10 ppm in the found voxels against 0.07 in the nuclei)
    regions = {"whole brain (mask)": "mask", "where χ is defined (local mask)": "localmask",
               "CSF (weight > 0.5, R2* below 6/s: the χ reference)": "label-CSF_probseg"}
    rows = []
    voxel_ml = float(np.prod(vs)) / 1000
    for name, key in regions.items():
        if key not in maps:
            continue
        m = maps[key] > 0.5
        row = [_e(name), f"{int(m.sum())}", f"{m.sum() * voxel_ml:.1f}"]
        # χ is 0 outside the local mask, where it is not defined: those voxels do not count, and the
        # whole mask's row leaves χ to the local mask's row rather than repeat its figures
        defined = m & (maps["localmask"] > 0.5) if "localmask" in maps else m
        if key == "mask" and "localmask" in maps:
            defined = np.zeros_like(m)
        for suffix, fmt in (("Chimap", "{:+.4f}"), ("R2starmap", "{:.1f}"), ("T2starmap", "{:.4f}")):
            sel = defined if suffix == "Chimap" else m
            v = maps[suffix][sel] if suffix in maps and sel.any() else None
            if v is None:
                row += ["–"] * (3 if suffix == "Chimap" else 1)
            elif suffix == "Chimap":
                row += [fmt.format(np.mean(v)), fmt.format(np.median(v)), f"{np.std(v):.4f}"]
            else:
                row.append(fmt.format(np.median(v)))
        if "desc-sd_Chimap" in maps:
            # a voxel's typical SD where χ is defined (the map is 0 outside the local mask): the root mean
            # square, unbiased for the mean variance from a map of few samples (a median would be ~17 %
            # low); not the SD of the region's mean: the inversion spreads the noise, so voxels are not
            # independent
            row.append(f"{np.sqrt(np.mean(np.square(maps['desc-sd_Chimap'][defined]))):.4f}" if defined.any() else "–")
        rows.append(row)
    header = ["region", "voxels", "volume mL", "χ mean ppm", "χ median ppm", "χ SD ppm", "R2* median 1/s",
              "T2* median s"]
    return _table(rows, header + (["χ noise SD (RMS) ppm"] if "desc-sd_Chimap" in maps else []))


def _provenance_html(prov: dict) -> str:
    inp = prov.get("input", {})
    params = prov.get("parameters", {})
    phase_rule = inp.get("phase_scaling", {})
    b0 = inp.get("b0_direction")
    facts = [
        ("qsmflow", prov.get("qsmflow_version", "?")),
        ("command", " ".join(map(str, prov.get("command_line", [])))),
        ("magnitude", ", ".join(inp.get("inputs", {}).get("magnitude", []))),
        ("phase", ", ".join(inp.get("inputs", {}).get("phase", []))),
        ("echo times (s)", f"{inp.get('echo_times_s')} ({inp.get('echo_times_source', '?')})"),
        ("field strength (T)", f"{inp.get('field_strength_T')} ({inp.get('field_strength_source', '?')})"),
        ("voxel size (mm) / shape", f"{' x '.join(f'{v:.3g}' for v in inp.get('voxel_size_mm') or [])} / {inp.get('shape')}"),
        ("phase scaling", phase_rule.get("rule", "–") if isinstance(phase_rule, dict) else phase_rule),
        ("B0 direction (voxel axes)", "–" if b0 is None else ", ".join(f"{c:+.4f}" for c in b0)
         + f" ({inp.get('b0_direction_source', '?')})"),
        ("obliquity: B0 angle to the slice axis", "–" if inp.get("b0_angle_to_slice_axis_deg") is None
         else f"{inp['b0_angle_to_slice_axis_deg']:.1f}°"),
        ("acquisition", "3D" if inp.get("slice_axis") is None else f"2D, slices along axis {inp['slice_axis']}"),
        ("methods", ", ".join(f"{k}: {v}" for k, v in params.get("methods", {}).items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items())),
    ]
    timings = prov.get("timings_s", {})
    out = _table([(f"<b>{_e(k)}</b>", _e(v)) for k, v in facts])
    if timings:
        out += "<h3>Runtimes</h3>" + _table([(_e(k), f"{v:.1f} s") for k, v in timings.items()]
                                            + [("<b>total</b>", f"<b>{sum(timings.values()):.1f} s</b>")])
    rest = {k: v for k, v in params.items() if k != "methods"}
    out += "<h3>Parameters</h3><pre>" + _e(json.dumps(rest, indent=1, default=str)) + "</pre>"
    return out


def _background(out_dir: Path, prefix: str, prov: dict, magnitude=None, affine=None):
    """First-echo magnitude (given, or from the run's inputs when still there), else the S0 map."""
    if magnitude is not None:
        return io.canonical(magnitude, affine)[0], "first-echo magnitude"
    paths = prov.get("input", {}).get("inputs", {}).get("magnitude", [])
    if paths and Path(paths[0]).exists():
        try:
            return io.load_canonical(paths[0])[0], "first-echo magnitude"
        except ValueError:
            pass
    s0 = out_dir / f"{prefix}_S0map.nii.gz"
    return (io.load_canonical(s0)[0], "S0 (magnitude inputs not found)") if s0.exists() else (None, "")


def write_report(out_dir, prefix: str, *, extra_warnings=(), maps: dict | None = None, affine=None,
                 magnitude: np.ndarray | None = None) -> Path:
    """Write ``<prefix>_report.html`` into ``out_dir`` from the run's outputs there.

    Parameters
    ----------
    out_dir : path
        A run's output folder (``qsmflow run -o``, or a run's folder in a bids derivative).
    prefix : str
        The run's output prefix (``<prefix>_provenance.json`` must exist).
    extra_warnings : sequence of str
        Warnings to show besides those recorded in the provenance.
    maps : dict of str to ndarray, optional
        The run's maps by output suffix (``"Chimap"``, ``"mask"``, ...), exactly as written
        to ``out_dir`` on the grid of ``affine``: the report is made from them instead of
        reading the files back (``process_subject`` passes them).
    affine : ndarray (4, 4), optional
        The grid of ``maps`` and ``magnitude``.
    magnitude : ndarray, optional
        The first echo's magnitude on that grid (else read from the run's inputs).

    Returns
    -------
    Path of the report.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    prov_path = out_dir / f"{prefix}_provenance.json"
    if not prov_path.exists():
        raise ValueError(f"no {prov_path.name} in {out_dir}; run qsmflow run (or bids) there first")
    prov = read_provenance(prov_path)
    given, maps, vs = maps, {}, None
    for suffix in ["mask", "localmask", "label-CSF_probseg", "S0map"] + [p[0] for p in _PANELS]:
        path = out_dir / f"{prefix}_{suffix}.nii.gz"
        if given is not None:
            if given.get(suffix) is not None:
                maps[suffix], vs = io.canonical(given[suffix], affine)
        elif path.exists():
            maps[suffix], vs = io.load_canonical(path)
    if "mask" not in maps:
        raise ValueError(f"no {prefix}_mask.nii.gz in {out_dir}; the report needs the run's brain mask")
    mask = maps["mask"] > 0.5
    centre = np.round(ndimage.center_of_mass(mask)).astype(int) if mask.any() else np.array(mask.shape) // 2
    sections = []
    bg, bg_name = _background(out_dir, prefix, prov, magnitude, affine)
    if bg is not None and bg.shape == mask.shape:
        win = (0.0, _round(float(np.percentile(bg[mask], 99.5))) if mask.any() else 1.0)
        img = _figures.three_views(bg, vs, centre, *win, outline=mask)
        sections.append(("Brain mask on the " + bg_name, img))
    tfi = prov.get("parameters", {}).get("methods", {}).get("inversion") == "tfi"
    for suffix, title, cmap, unit, rule in _PANELS:
        if suffix not in maps:
            continue
        if suffix == "localfield" and tfi:  # no background removal ran: the field TFI's χ explains
            title = "Local field (the field of χ from total field inversion)"
        region = maps.get("localmask", maps["mask"]) > 0.5 if suffix in ("localfield", "Chimap", "desc-sd_Chimap") \
            else mask
        # windows from the brain's interior: the mask's rim (orbits, neck, sinuses) sets no window
        inner = maps.get("localmask", maps["mask"]) > 0.5
        win = _window(maps[suffix][inner if inner.any() else region], rule)
        img = _figures.three_views(maps[suffix], vs, centre, *win, cmap=cmap, region=region)
        sections.append((f"{title} ({unit})" if unit else title, _figures.with_colourbar(img, *win, cmap, unit)))
    if "Chimap" in maps:
        region = maps.get("localmask", maps["mask"]) > 0.5
        sections.append(("Histogram of χ where it is defined (ppm)",
                         _figures.histogram(maps["Chimap"][region], *_HIST_RANGE_PPM, "ppm", label="chi")))
    warnings = list(prov.get("warnings", [])) + [w for w in extra_warnings if w not in prov.get("warnings", [])]
    body = [f"<h1>qsmflow report: {_e(prefix)}</h1>"]
    if warnings:
        body.append('<div class="warn"><b>Warnings raised during this run</b><ul>'
                    + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>")
    else:
        body.append('<div class="ok">No warnings were raised during this run.</div>')
    inp = prov.get("input", {})
    angle = inp.get("b0_angle_to_slice_axis_deg")
    voxel = " × ".join(f"{v:.3g}" for v in inp.get("voxel_size_mm") or []) or "?"
    body.append(f"<p>B0 direction {'' if angle is None else f'{angle:.1f}° from the slice axis; '}"
                f"voxel size {_e(voxel)} mm; views through voxel {_e(centre.tolist())} "
                "(RAS, neurological: the subject's right on the right).</p>")
    for title, img in sections:
        body.append(f"<h2>{_e(title)}</h2><img alt=\"{_e(title)}\" src=\"{_figures.png_data_uri(img)}\">")
    body.append("<h2>Region statistics</h2>" + _region_stats(maps, vs))
    body.append("<h2>Provenance</h2>" + _provenance_html(prov))
    body.append(f"<p><small>Written by qsmflow {_e(__version__)} in {time.perf_counter() - t0:.1f} s, "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</small></p>")
    page = _page(f"qsmflow: {prefix}", "\n".join(body))
    with io.OutputSet(out_dir, force=True) as out:
        path = out.text(f"{prefix}{REPORT_SUFFIX}", page)
    log.info("report %s written in %.1f s", path, time.perf_counter() - t0)
    return path


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def write_index(root, runs, skipped=()) -> Path:
    """Write ``index.html`` in a bids derivative ``root``: a status table linking every run's report.

    ``runs``: (subdir, :class:`qsmflow.workflows.batch.RunStatus`) pairs, subdir relative to ``root``;
    ``skipped``: (series, reason) pairs of the series found but not run.
    """
    root = Path(root)
    rows = []
    counts: dict[str, int] = {}
    for subdir, st in runs:
        counts[st.status] = counts.get(st.status, 0) + 1
        report = Path(subdir) / f"{st.prefix}{REPORT_SUFFIX}"
        link = f'<a href="{_e(report.as_posix())}">report</a>' if (root / report).exists() else "–"
        err = Path(subdir) / f"{st.prefix}_error.log"
        detail = _e(st.message)
        if st.status == "failed" and (root / err).exists():
            detail += f' (<a href="{_e(err.as_posix())}">log</a>)'
        rows.append([_e(st.prefix), f'<span class="{_e(st.status)}">{_e(st.status)}</span>', f"{st.seconds:.1f}",
                     link, detail])
    for what, why in skipped:
        counts["not run"] = counts.get("not run", 0) + 1
        rows.append([_e(what), '<span class="skipped">not run</span>', "–", "–", _e(why)])
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    body = (f"<h1>qsmflow dataset report</h1><p>{len(rows)} series: {_e(summary)}. "
            f"Written {time.strftime('%Y-%m-%d %H:%M:%S')} by qsmflow {_e(__version__)}.</p>"
            + _table(rows, ["run", "status", "time s", "QC report", "message"]))
    with io.OutputSet(root, force=True) as out:
        return out.text(INDEX_NAME, _page("qsmflow dataset report", body))
