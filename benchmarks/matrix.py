"""The default chain over a matrix of acquisitions: every default is chosen by the worst row.

Each variant changes one or two things from the reference acquisition — the 1 mm axial head,
3 T, 5 echoes 4-28 ms, SNR 100 (first-echo brain mean over the noise SD), 32-channel receive
profile, seed 1; the slab rows crop that head to an axial slab through the basal ganglia,
see :func:`slab`, the crop row to a box inside the head, :func:`crop`, and the one-echo row
keeps its fourth echo; the anatomy rows draw another brain, skull and vessel tree) — and runs `qsmflow.pipeline.run` from the magnitude and phase alone (mask,
field map, background removal, inversion, reference all computed). Printed per variant:
χ NRMSE and HFEN (%, inside the eroded mask ∩ the true brain), deep-grey slope, local-field
NRMSE (%), total-field error (%), brain kept (% of the true brain inside the eroded mask),
mask Dice and share of the mask outside the brain (skull, scalp, eyes, air, sinuses), and the
chain's runtime (2 cores).

Simulated heads are cached as .npz under ``benchmarks/.cache/`` (about 0.3 GB per 1 mm
head), so that reruns cost the chain only.

    python benchmarks/matrix.py                          # all variants (~30 min; 60 min uncached)
    python benchmarks/matrix.py --variants "1 mm axial" "2x2x3 mm, 2 echoes 2.3/4.6 ms, SNR 60"
    python benchmarks/matrix.py --set bgremove=pdf --set inversion=tv   # other methods
    python benchmarks/matrix.py --json out.json          # also write the scores
    python benchmarks/matrix.py --one-echo 3 --variants "1 mm axial" --set inversion=medi  # one echo (22 ms)
    python benchmarks/matrix.py --pd --variants "1 mm axial"   # proton-density magnitude (no T1 weighting)

The phantom's signal has each tissue's T1 steady state of a spoiled GRE (TR = the last echo
+ 7 ms, 15°; the two-echo row the real Philips head's TR 20 ms and 10°): CSF's long T1
darkens it below grey and white matter at the first echoes and the short-T1 marrow and fat
are bright, as in real multi-echo GRE. ``--pd`` gives the proton-density head used before
stop 52 (CSF the brightest tissue at every echo), for comparison with older tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

import zubal
from _bench import table
from qsmflow import phantom, pipeline
from qsmflow.phantom import metrics
from qsmflow.io import GreInput

CACHE = Path(__file__).with_name(".cache")
FOV_MM = (160.0, 192.0, 160.0)
REFERENCE = dict(voxel=(1.0, 1.0, 1.0), echo_times=(0.004, 0.010, 0.016, 0.022, 0.028), field_strength=3.0,
                 snr=100.0, tilt_deg=0.0, orientation="axial", slice_axis=None)
SAGITTAL, CORONAL = (1, 2, 0), (0, 2, 1)  # simulation axes that become voxel axes i, j, k

VARIANTS = {
    "1 mm axial": {},
    "1 mm axial, uniform receive coil": dict(receive_coils=0),
    "0.7 mm, SNR 50": dict(voxel=(0.7, 0.7, 0.7), snr=50.0),
    "1x1x2 mm": dict(voxel=(1.0, 1.0, 2.0)),
    "2 mm": dict(voxel=(2.0, 2.0, 2.0)),
    "2x2x3 mm": dict(voxel=(2.0, 2.0, 3.0)),
    "2 mm, oblique 20°": dict(voxel=(2.0, 2.0, 2.0), tilt_deg=20.0),
    "oblique 20°": dict(tilt_deg=20.0),
    "oblique 35°, 1x1x1.4 mm": dict(tilt_deg=35.0, voxel=(1.0, 1.0, 1.4)),
    "sagittal slab, 1.2 mm slices": dict(orientation="sagittal", voxel=(1.0, 1.0, 1.2)),
    "coronal slab, 1.5 mm slices, 15°": dict(orientation="coronal", voxel=(1.0, 1.0, 1.5), tilt_deg=15.0),
    "2D multi-slice 2x2x3 mm, 6 echoes 5-30 ms": dict(voxel=(2.0, 2.0, 3.0), slice_axis=2,
                                                       echo_times=(0.005, 0.010, 0.015, 0.020, 0.025, 0.030)),
    "1.5 T, 6 echoes 5-40 ms": dict(field_strength=1.5, echo_times=(0.005, 0.012, 0.019, 0.026, 0.033, 0.040)),
    "7 T, 5 echoes 3-19 ms": dict(field_strength=7.0, echo_times=(0.003, 0.007, 0.011, 0.015, 0.019)),
    "2x2x3 mm, 2 echoes 2.3/4.6 ms, SNR 60": dict(voxel=(2.0, 2.0, 3.0), echo_times=(0.0023, 0.0046), snr=60.0,
                                                 tr_flip=(0.020, 10.0)),  # the real Philips head's TR and flip
    "8 echoes 5-40 ms": dict(echo_times=tuple(np.round(np.linspace(0.005, 0.040, 8), 4))),
    # a fast protocol's short echo train at a fine voxel (stop 58): TR 15 ms, 15° by the T1 rule
    "1.5 mm, 3 echoes 2-8 ms": dict(voxel=(1.5, 1.5, 1.5), echo_times=(0.002, 0.005, 0.008)),
    # ...and tilted 35° (stop 60): TFI by the echo-span rule, whose far background sources converge
    # late where the brainstem leaves the field of view (benchmarks/README.md, "TFI on oblique heads")
    "1.5 mm, 3 echoes 2-8 ms, tilted 35°": dict(voxel=(1.5, 1.5, 1.5), echo_times=(0.002, 0.005, 0.008),
                                                tilt_deg=35.0),
    "SNR 20": dict(snr=20.0),
    "SNR 200": dict(snr=200.0),
    "axial slab 64 mm, 1 mm": dict(slab_mm=64.0),
    "axial slab 80 mm, 1x1x2 mm": dict(voxel=(1.0, 1.0, 2.0), slab_mm=80.0),
    "slab 64 mm tilted 20°, 1 mm": dict(slab_mm=64.0, tilt_deg=20.0),
    "slab 64 mm tilted 35°, 1x1x1.4 mm": dict(slab_mm=64.0, tilt_deg=35.0, voxel=(1.0, 1.0, 1.4)),
    "crop 100x120x64 mm inside the head, 1 mm": dict(crop_mm=(100.0, 120.0, 64.0)),
    "1 mm, one echo 22 ms": dict(echo_index=3),
    # another anatomy (brain, skull, vessels drawn with seed 0, the demo head's): every other row is seed 1
    "1 mm axial, anatomy 0": dict(seed=0),
    "2 mm, anatomy 0": dict(voxel=(2.0, 2.0, 2.0), seed=0),
    # a real anatomy: the Zubal head's segmentation through the phantom's forward model (zubal.py)
    "Zubal head, 1 mm": dict(anatomy="zubal"),
    "Zubal head, 2 mm": dict(anatomy="zubal", voxel=(2.0, 2.0, 2.0)),
}


# With --t1 (T1 saturation in the phantom's signal): TR = the last echo + this, flip angle
# FLIP_DEG, unless the variant names its own ``tr_flip`` (the two-echo row: the Philips head's).
T1_TR_AFTER_LAST_ECHO_S = 0.007
T1_FLIP_DEG = 15.0


def spec(name: str, t1: bool = True) -> dict:
    """The variant's settings: T1-weighted (the matrix's heads since stop 52) unless ``t1`` is False."""
    s = {**REFERENCE, **VARIANTS[name]}
    tr_flip = s.pop("tr_flip", None)
    if t1:
        s["tr_flip"] = tr_flip or (round(max(s["echo_times"]) + T1_TR_AFTER_LAST_ECHO_S, 4), T1_FLIP_DEG)
    return s


def _key(s: dict) -> str:
    """The variant's settings and the phantom's source: a changed phantom is simulated anew."""
    src = Path(phantom.__file__).parent  # the phantom package
    code = b"".join(p.read_bytes() for p in sorted(src.glob("*.py")) if p.name not in ("metrics.py", "dataset.py"))
    if s.get("anatomy") == "zubal":
        code += Path(zubal.__file__).read_bytes()
    return hashlib.sha1(json.dumps(s, sort_keys=True, default=str).encode() + code).hexdigest()[:12]


def simulate(s: dict) -> phantom.HeadPhantom:
    """The variant's head (from the cache when there)."""
    if s.get("slab_mm"):
        return slab(simulate({k: v for k, v in s.items() if k != "slab_mm"}), s["slab_mm"])
    if s.get("crop_mm"):
        return crop(simulate({k: v for k, v in s.items() if k != "crop_mm"}), s["crop_mm"])
    if s.get("echo_index") is not None:  # one echo of the multi-echo head (a single-echo scan, e.g. for SWI)
        head, e = simulate({k: v for k, v in s.items() if k != "echo_index"}), s["echo_index"]
        if not 0 <= e < len(head.echo_times):
            raise SystemExit(f"--one-echo {e}: this variant has echoes 0 to {len(head.echo_times) - 1}")
        return dataclasses.replace(head, magnitude=np.ascontiguousarray(head.magnitude[..., e:e + 1]),
                                   phase=np.ascontiguousarray(head.phase[..., e:e + 1]),
                                   echo_times=np.asarray(head.echo_times)[e:e + 1])
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"head_{_key(s)}.npz"
    order = {"axial": None, "sagittal": SAGITTAL, "coronal": CORONAL}[s["orientation"]]
    # anisotropic voxels and 2D slices are given in the acquisition's voxel axes
    sim_vs = np.array(s["voxel"], float)
    sim_slice = s["slice_axis"]
    if order is not None:
        sim_vs = sim_vs[np.argsort(order)]
        sim_slice = None if sim_slice is None else order[sim_slice]
    if path.exists():
        with np.load(path, allow_pickle=True) as z:
            d = {k: z[k] for k in z.files}
        d["label_names"] = d["label_names"].item()
        d["mwf"] = None
        if "receive_sensitivity" not in d or d["receive_sensitivity"].ndim == 0:
            d["receive_sensitivity"] = None
        d["slice_axis"] = None if d["slice_axis"].ndim == 0 and d["slice_axis"] == -1 else int(d["slice_axis"])
        d["field_strength"], d["noise_sigma"] = float(d["field_strength"]), float(d["noise_sigma"])
        return phantom.HeadPhantom(**d)
    shape = tuple(int(round(f / v)) for f, v in zip(FOV_MM, sim_vs))
    b0 = phantom.oblique_direction(s["tilt_deg"]) if s["tilt_deg"] else (0.0, 0.0, 1.0)
    if s.get("anatomy") == "zubal":
        if order is not None or sim_slice is not None:
            raise SystemExit("the Zubal head is simulated axial and 3D only")
        head = zubal.simulate_zubal(s["voxel"], echo_times=s["echo_times"], field_strength=s["field_strength"],
                                    b0_direction=tuple(b0), snr=s["snr"], seed=s.get("seed", 1),
                                    receive_coils=s.get("receive_coils", 32), tr_flip=s.get("tr_flip"))
    else:
        head = phantom.simulate_head(shape, tuple(sim_vs), echo_times=s["echo_times"],
                                     field_strength=s["field_strength"], b0_direction=tuple(b0), snr=s["snr"],
                                     seed=s.get("seed", 1), slice_axis=sim_slice,
                                     receive_coils=s.get("receive_coils", 32),
                                     **(dict(zip(("repetition_time", "flip_angle"), s["tr_flip"])) if s.get("tr_flip")
                                        else {}))
    if order is not None:
        head = phantom.reorient(head, order)
    d = {k: getattr(head, k) for k in head.__dataclass_fields__ if k != "mwf"}
    if d["receive_sensitivity"] is None:
        d["receive_sensitivity"] = np.array(None)
    d["slice_axis"] = -1 if head.slice_axis is None else head.slice_axis
    np.savez(path, **d)
    return head


# The slab's excitation profile: a windowed-sinc pulse of time-bandwidth product 8 excites
# the nominal slab at full width half maximum, with a 10-90 % transition of slab/8 mm. Below
# the Ernst angle the GRE signal follows the flip angle, so the signal across the slab is
# 1/(1 + exp(-d/w)) at d mm inside a face, 4.39 w = slab/8. No slice oversampling (the worst
# case): the outermost 1 mm slice of a 64 mm slab keeps 57 % of the signal, 90 % at 4 mm.
SLAB_PULSE_TBW = 8.0


def slab_profile(n: int, voxel_mm: float, thickness_mm: float) -> np.ndarray:
    """Relative signal of each of a slab's ``n`` slices (``voxel_mm`` apart) from its excitation."""
    d = np.minimum(np.arange(n) + 0.5, n - np.arange(n) - 0.5) * voxel_mm  # slice centre to nearest face
    w = thickness_mm / SLAB_PULSE_TBW / (2 * np.log(9.0))
    return 1.0 / (1.0 + np.exp(-d / w))


_CUT_NAMES = ("magnitude", "phase", "chi", "r2star", "m0", "labels", "brain_mask", "total_field_hz",
              "local_field_ppm", "phase_offset", "mwf", "receive_sensitivity")


def _box(head: phantom.HeadPhantom, size_mm) -> phantom.HeadPhantom:
    """The head's voxels in a box ``size_mm`` (None: the whole axis) centred on the basal
    ganglia and thalami; the truth and the affine cut alike."""
    ids = [int(i) for i, n in head.label_names.items() if n in ("caudate", "putamen", "globus_pallidus", "thalamus")]
    where = np.nonzero(np.isin(head.labels, ids))
    cuts, lo_vox = [], []
    for a, size in enumerate(size_mm):
        n_all = head.labels.shape[a]
        n = n_all if size is None else int(round(size / head.voxel_size[a]))
        lo = int(np.clip(round((where[a].min() + where[a].max()) / 2 - n / 2), 0, n_all - n))
        cuts.append(slice(lo, lo + n))
        lo_vox.append(lo)
    cut = lambda x: None if x is None or np.ndim(x) < 3 else np.ascontiguousarray(x[tuple(cuts)])
    aff = head.affine.copy()
    aff[:3, 3] = head.affine[:3, :3] @ np.array(lo_vox, float) + head.affine[:3, 3]
    return dataclasses.replace(head, affine=aff, **{k: cut(getattr(head, k)) for k in _CUT_NAMES})


def slab(head: phantom.HeadPhantom, thickness_mm: float) -> phantom.HeadPhantom:
    """The head as an axial slab ``thickness_mm`` thick centred on the basal ganglia and thalami: the slices
    a slab-selective 3D scan of the same head would give (its field holds every source of the
    whole head; the truth is cropped alike). Cropping the image is that scan up to the
    k-space window's tails across the slab's ends, where the slab excites nothing. The
    signal falls toward the faces as the excitation's flip angle does (:func:`slab_profile`);
    fresh noise keeps the noise level uniform, as the receiver's is."""
    out = _box(head, (None, None, thickness_mm))
    n = out.magnitude.shape[2]
    prof = slab_profile(n, float(head.voxel_size[2]), thickness_mm)[None, None, :, None]
    rng = np.random.default_rng(7)
    extra = head.noise_sigma * np.sqrt(1 - prof ** 2)
    signal = prof * out.magnitude * np.exp(1j * out.phase)
    signal = signal + extra * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
    return dataclasses.replace(out, magnitude=np.abs(signal).astype(np.float32),
                               phase=np.angle(signal).astype(np.float32))


def crop(head: phantom.HeadPhantom, size_mm) -> phantom.HeadPhantom:
    """A box of the whole-head scan cut out around the basal ganglia and thalami, as users cut
    their images to the region they study (or are given them so): no profile, every face
    cuts the head."""
    return _box(head, size_mm)


def run_variant(name: str, options: pipeline.Options, one_echo: int | None = None, t1: bool = True) -> dict:
    s = spec(name, t1) if one_echo is None else {**spec(name, t1), "echo_index": one_echo}
    t0 = time.perf_counter()
    head = simulate(s)
    t_sim = time.perf_counter() - t0
    data = GreInput.from_arrays(head.magnitude, head.phase, head.echo_times, head.field_strength,
                                affine=head.affine, prefix="matrix")
    data.slice_axis = head.slice_axis
    t1 = time.perf_counter()
    result = pipeline.run(data, options)
    t_run = time.perf_counter() - t1
    sc = metrics.evaluate(result, head)
    brain = head.brain_mask
    sc.update(variant=name, time_s=t_run, sim_s=t_sim, shape=list(head.magnitude.shape),
              brain_kept=float((result.eroded_mask & brain).sum() / brain.sum()),
              mask_ml=float(result.mask.sum() * np.prod(head.voxel_size) / 1000),
              methods=result.parameters.get("methods", {}), warnings=result.warnings)
    return sc


def row(sc: dict) -> list:
    return [sc["variant"], f"{sc['chi_nrmse']:.1f}", f"{sc['chi_hfen']:.1f}", f"{sc['deep_grey_slope']:.2f}",
            f"{sc['local_field_nrmse']:.1f}", f"{sc['total_field_error_pct']:.1f}", f"{100 * sc['brain_kept']:.1f}",
            f"{sc['mask_dice']:.3f}", f"{100 * sc['mask_outside']:.1f}", f"{sc['time_s']:.0f}"]


HEADER = ["variant", "χ NRMSE %", "χ HFEN %", "deep-grey slope", "local-field NRMSE %", "total-field err %",
          "brain kept %", "mask Dice", "mask outside brain %", "time s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), help="subset of: " + "; ".join(VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="STAGE=METHOD",
                    help="an Options field, e.g. bgremove=pdf (repeatable)")
    ap.add_argument("--one-echo", type=int, metavar="INDEX",
                    help="cut every variant to this one echo (0-based), as a single-echo scan")
    ap.add_argument("--pd", action="store_true",
                    help="proton density alone in the phantom's signal (no T1 saturation; before stop 52)")
    ap.add_argument("--json", help="write the scores to this file")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}")
    if not zubal.available():
        print(f"no Zubal head at {zubal.DATA}: its rows are left out")
        args.variants = [v for v in args.variants if VARIANTS[v].get("anatomy") != "zubal"]
    fields = {}
    for item in args.set:
        k, _, v = item.partition("=")
        fields[k] = int(v) if v.lstrip("-").isdigit() else v
    options = pipeline.Options(**fields)
    scores = []
    for name in args.variants:
        sc = run_variant(name, options, args.one_echo, not args.pd)
        scores.append(sc)
        print(" | ".join(row(sc)), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(scores, indent=1, default=str))
    ref = next((s for s in scores if s["variant"] == "1 mm axial"), None)
    print()
    print(table(HEADER, [row(s) for s in scores], f"Benchmark matrix ({', '.join(args.set) or 'defaults'}; "
                                                 f"{'proton-density' if args.pd else 'T1-weighted'} heads)"))
    worst = max(scores, key=lambda s: s["chi_nrmse"])
    slopes = [s["deep_grey_slope"] for s in scores]
    print(f"\nworst χ NRMSE {worst['chi_nrmse']:.1f} % ({worst['variant']}); deep-grey slopes "
          f"{min(slopes):.2f}-{max(slopes):.2f}" + (f"; worst / 1 mm axial {worst['chi_nrmse'] / ref['chi_nrmse']:.2f}"
                                                  if ref else ""))


if __name__ == "__main__":
    main()
