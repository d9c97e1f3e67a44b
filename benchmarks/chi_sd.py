"""The χ uncertainty map against the spread of χ over repeated noise realisations.

The benchmark head (1 mm, 5 echoes 4-28 ms, 3 T, 32-channel receive profile) is simulated
once without noise; each realisation adds complex Gaussian noise at the given SNR
(first-echo brain mean over the noise SD, as the phantom defines it) and runs the whole
default chain from magnitude and phase with one fixed brain mask (BET's on the first
realisation), so that only the noise differs. Per SNR it prints, inside the voxels every
realisation kept (the intersection of the local masks):

- the median ratio of the predicted SD (``<prefix>_desc-sd_Chimap``) to the observed SD
  of χ over the realisations, for one run's map and for the mean of all runs' maps, over
  the brain and per tissue class;
- each class's SD over white matter's, predicted and observed;
- how the noise compares with the whole error against the true χ: mean observed
  variance over mean squared error (the rest is bias);
- the cost of the map against the inversion's.

It writes ``benchmarks/figures/chi_sd.png`` (``chi_sd_<voxel>mm.png`` at other voxel sizes) (an axial slice of χ, the predicted and the
observed SD, per SNR) and, with ``--json``, the figures.

    python benchmarks/chi_sd.py                      # SNR 40 and 100, 20 realisations (~40 min)
    python benchmarks/chi_sd.py --snr 100 --realisations 6
    python benchmarks/chi_sd.py --voxel 2 --realisations 10   # TFI, the default above 1.5 mm
    python benchmarks/chi_sd.py --snr 100 --realisations 8 --estimator   # MEDI+0 alone, decisions fixed

``--freeze csf,peel,edges`` (any of them) runs the whole-chain realisations with those of the
chain's noise-driven decisions taken from the first realisation: the CSF mask MEDI+0 holds
uniform and references to, the field-reliability peel of the mask's edge, MEDI's magnitude
edges (a diagnostic: it replaces the library's functions in this process).

``--estimator`` separates the two things the whole-chain spread mixes: it runs the chain once,
then only MEDI+0 again on the chain's local field plus ``--realisations`` draws of white field
noise of the map's (thermal) SD, with everything else the chain decided kept fixed (weight,
region, CSF mask, magnitude edges, noise weights), once as the chain runs it (its
Gauss-Newton loop stopped at a 10 % update) and once converged (1 % update, 80 CG
iterations per step). The map models the loop's own steps (and the CSF weights' jitter,
which these fixed-decision draws do not have); the spread between whole-chain runs also
holds the chain's other decisions moving with the noise (the peel, the magnitude edges). The
as-run draws are also scored against :func:`neumann_sd`, the map's propagation of the field
noise with 20 CG iterations per step instead of 8 + 4.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import matrix
from _bench import inversion_inputs, save_grid, table
from qsmflow import pipeline
from qsmflow.workflows import figures as _figures
from qsmflow.io import GreInput

FIGURES = Path(__file__).with_name("figures")
CLASSES = {
    "white matter": ("wm",),
    "cortical grey matter": ("gm",),
    "CSF and ventricles": ("csf", "ventricle"),
    "deep grey (caudate, putamen, thalamus)": ("caudate", "putamen", "thalamus"),
    "iron-rich (pallidus, red nucleus, nigra, dentate)": ("globus_pallidus", "red_nucleus", "substantia_nigra",
                                                          "dentate"),
    "veins": ("vein",),
}


def realisations(head, snr: float, n: int, seed: int):
    """Magnitude and phase of ``n`` noisy copies of a noise-free head."""
    signal = head.magnitude * np.exp(1j * head.phase)
    brain = head.brain_mask
    sigma = float(np.abs(signal[..., 0][brain]).mean() / snr)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        noisy = signal + sigma * (rng.standard_normal(signal.shape) + 1j * rng.standard_normal(signal.shape))
        yield np.abs(noisy).astype(np.float32), np.angle(noisy).astype(np.float32)


FREEZABLE = {"csf": ("qsmflow.reference", "csf_weights"), "peel": ("qsmflow.masking", "reliable_field_mask"),
             "edges": ("qsmflow.inversion._medi_shared", "_edge_mask")}


def freeze(names) -> None:
    """Make each named decision return what its first call returned (``--freeze``)."""
    import importlib

    for name in names:
        module = importlib.import_module(FREEZABLE[name][0])
        func = getattr(module, FREEZABLE[name][1])

        def first(*args, _func=func, _memo=[], **kwargs):  # noqa: B006 - the memo is the point
            if not _memo:
                _memo.append(_func(*args, **kwargs))
            return _memo[0]

        setattr(module, FREEZABLE[name][1], first)


def run_snr(head, snr: float, n: int) -> dict:
    chis, sds, kept, times = [], [], None, []
    mask = None
    for k, (mag, ph) in enumerate(realisations(head, snr, n, seed=int(snr))):
        data = GreInput.from_arrays(mag, ph, head.echo_times, head.field_strength, affine=head.affine, prefix="sd")
        res = pipeline.run(data, pipeline.Options(), mask=mask)
        mask = res.mask if mask is None else mask
        if res.chi_sd is None:
            raise SystemExit("the default chain wrote no uncertainty map")
        chis.append(res.chi)
        sds.append(res.chi_sd)
        kept = res.eroded_mask if kept is None else kept & res.eroded_mask
        times.append((res.timings["inversion"], res.timings["chi_sd"]))
        print(f"  SNR {snr:g}: realisation {k + 1}/{n}, inversion {times[-1][0]:.1f} s, map {times[-1][1]:.1f} s",
              flush=True)
    return summarise(head, snr, np.array(chis), np.array(sds), kept, np.array(times))


# MEDI+0 run to convergence (``--estimator``): what the map's Hessian describes
CONVERGED = {"tol": 0.01, "cg_iter": 80}


def run_estimator(head, snr: float, n: int) -> list[dict]:
    """MEDI+0's own response to white field noise, every decision of the chain fixed: as the
    chain runs it and converged (see the module's docstring)."""
    from qsmflow import inversion, reference

    mag, ph = next(realisations(head, snr, 1, seed=int(snr) + 1000))
    data = GreInput.from_arrays(mag, ph, head.echo_times, head.field_strength, affine=head.affine, prefix="sd")
    res = pipeline.run(data, pipeline.Options())
    if res.parameters["inversion"].get("csf_voxels") is None:
        raise SystemExit("--estimator needs the default chain to run MEDI+0 (voxels up to 1.5 mm)")
    region = res.eroded_mask
    given = inversion_inputs(res, mag, head.echo_times, head.field_strength)
    noise = given["noise_ppm"]
    thermal = noise * res.parameters["chi_sd_noise_ratio"]
    common = dict(magnitude=given["magnitude"], phase_scale=given["phase_scale"], noise=noise,
                  alpha=res.parameters["inversion"]["alpha"], csf_mask=res.csf_mask)
    vs, b0 = data.voxel_size, data.b0_direction
    out = []
    for label, extra in (("as the chain runs it", {}), ("converged", CONVERGED)):
        info: dict = {}
        _, sd = inversion.medi(res.local_field_ppm, region, vs, b0, return_sd=True, sd_noise=thermal, info=info,
                               **common, **extra)
        t_map = info["sd_seconds"]
        rng = np.random.default_rng(int(snr))
        chis, times = [], []
        for k in range(n):
            field = res.local_field_ppm + np.where(region, thermal * rng.standard_normal(region.shape), 0)
            t0 = time.perf_counter()
            chi = inversion.medi(field.astype(np.float32), region, vs, b0, **common, **extra)
            chis.append(reference.csf_reference(chi, region, csf=res.csf_mask)[0])
            times.append((time.perf_counter() - t0, t_map))
            print(f"  SNR {snr:g}, MEDI+0 {label}: draw {k + 1}/{n}, {times[-1][0]:.1f} s", flush=True)
        r = summarise(head, snr, np.array(chis), sd[None], region, np.array(times))
        r["estimator"] = label
        out.append(r)
        if not extra:  # the same draws against a map that follows the loop's steps
            sd_k, steps = neumann_sd(res.local_field_ppm, region, vs, b0, thermal, **common)
            r = summarise(head, snr, np.array(chis), sd_k[None], region, np.array(times))
            r["estimator"] = f"as the chain runs it, map of its {steps} steps"
            out.append(r)
    return out


def neumann_sd(field, region, vs, b0, thermal, *, magnitude, phase_scale, noise, alpha, csf_mask, samples=4,
               cg_iter=20):
    """The noise SD of MEDI+0 as the chain runs it (a few lagged-diffusivity Gauss-Newton steps
    from zero), not of its converged minimiser: linearised at the solution, K steps respond
    to a field perturbation with ``Σ_{j<K} (A⁻¹C)^j A⁻¹ DᵀW²n``, ``A`` the lagged system,
    ``H`` the Hessian and ``C = A - H`` (TV with its lagged weights minus its curvature),
    which tends to ``H⁻¹DᵀW²n`` as K grows: :func:`qsmflow.inversion.solvers.noise_sd` (the
    map's propagation of the field noise) with ``cg_iter`` CG iterations per term instead of
    the map's 8, then 4: (sd, K)."""
    import importlib
    import inspect

    from qsmflow._shared.constants import CSF_LAMBDA, MEDI_EDGE_FRACTION
    from qsmflow.inversion import solvers

    tvm = importlib.import_module("qsmflow.inversion.tv")
    shared = importlib.import_module("qsmflow.inversion._medi_shared")
    p, edges, csf, s, lam = shared._medi_problem(field, region, vs, b0, magnitude, phase_scale, noise,
                                                 MEDI_EDGE_FRACTION, csf_mask, CSF_LAMBDA, "MEDI+0", tvm._PAD_VOXELS_TV)
    loop = {k: v.default for k, v in inspect.signature(tvm.medi).parameters.items()
            if k in ("max_iter", "tol", "cg_iter", "cg_tol")}  # the loop as the chain runs it
    chi, steps = solvers.medi(p, alpha, edges=edges, phase_scale=s, csf=csf, lam_csf=lam, eps=1e-6, **loop)
    sigma = p.cut(np.nan_to_num(thermal.astype(np.float32))) * (p.mask > 0)
    sd = solvers.noise_sd(p, chi, alpha, sigma, edges=edges, csf=csf, lam_csf=lam, eps=1e-6, samples=samples,
                          cg_iter=(cg_iter, cg_iter), steps=steps)
    return p.full(sd), steps


def _ratios(one, var_pred, observed, sel) -> dict:
    """Predicted over observed SD in ``sel``: as root-mean-square ratios (predicted and observed
    variance averaged over the voxels: unbiased however few samples a map has) and as the
    median of the voxels' ratios (biased low by a map's own sampling noise: a 2-sample SD has
    median 0.83x its expectation)."""
    obs2 = float(np.mean(observed[sel] ** 2))
    rob = sel & (observed > 0)
    return {"rms_one_map": float(np.sqrt(np.mean(one[sel] ** 2) / obs2)),
            "rms_all_maps": float(np.sqrt(np.mean(var_pred[sel]) / obs2)),
            "median_one_map": float(np.median(one[rob] / observed[rob])),
            "median_all_maps": float(np.median(np.sqrt(var_pred[rob]) / observed[rob]))}


def summarise(head, snr: float, chis, sds, kept, times) -> dict:
    """The figures of one SNR from its realisations' χ and maps, and the voxels all kept."""
    n = len(chis)
    observed = chis.std(axis=0, ddof=1)
    # the Gaussian core of the spread, blind to a few realisations that jump (a 2π error, a
    # voxel that changes sides of an edge, the CSF mask of MEDI+0 changing): 1.4826 x the MAD
    robust = 1.4826 * np.median(np.abs(chis - np.median(chis, axis=0)), axis=0)
    names = {v: k for k, v in head.label_names.items()}
    labels = head.labels
    # voxels whose χ no realisation changed (held by the CSF term to its mean, to float precision) have
    # no spread to compare with
    region = kept & head.brain_mask & (observed > 0)
    one, var_pred = sds[0], np.mean(sds.astype(np.float64) ** 2, axis=0)
    out = {"snr": snr, "realisations": n, "voxels": int(region.sum()),
           "voxels_without_spread": int((kept & head.brain_mask & (observed == 0)).sum()),
           **_ratios(one, var_pred, observed, region),
           "rms_robust": float(np.sqrt(np.mean(var_pred[region]) / np.mean(robust[region] ** 2))),
           "inversion_s": float(np.mean(times[:, 0])), "map_s": float(np.mean(times[:, 1]))}
    wm = region & (labels == names["wm"])
    classes = {}
    for cname, tissues in CLASSES.items():
        sel = region & np.isin(labels, [names[t] for t in tissues])
        if sel.sum() < 20:
            continue
        classes[cname] = {
            "voxels": int(sel.sum()),
            **_ratios(one, var_pred, observed, sel),
            "rms_robust": float(np.sqrt(np.mean(var_pred[sel]) / np.mean(robust[sel] ** 2))),
            "predicted_over_wm": float(np.sqrt(np.mean(var_pred[sel]) / np.mean(var_pred[wm]))),
            "observed_over_wm": float(np.sqrt(np.mean(observed[sel] ** 2) / np.mean(observed[wm] ** 2))),
            "observed_sd_ppm": float(np.sqrt(np.mean(observed[sel] ** 2))),
        }
    out["classes"] = classes
    err = chis[:, region] - head.chi[region][None]
    out["noise_share_of_mse"] = float(np.mean(observed[region] ** 2) / np.mean(err ** 2))
    out["rms_error_ppm"] = float(np.sqrt(np.mean(err ** 2)))
    out["rms_noise_ppm"] = float(np.sqrt(np.mean(observed[region] ** 2)))
    out["_maps"] = (chis[0], one, observed, region)
    out["_all"] = (chis, sds, kept, times)
    return out


def _panel(vol, region, z, lo, hi, cmap, title):
    sl = np.where(region[:, :, z], vol[:, :, z], lo if cmap != "gray" else vol[:, :, z])
    img = Image.fromarray(_figures.colourise(np.rot90(sl), lo, hi, cmap)).resize((sl.shape[0] * 2, sl.shape[1] * 2))
    img = _figures.with_colourbar(img, lo, hi, cmap, "ppm")
    canvas = Image.new("RGB", (img.width, img.height + 18), "white")
    canvas.paste(img, (0, 18))
    ImageDraw.Draw(canvas).text((4, 2), title, fill="black", font=_figures._font())
    return canvas


def figure(results: list[dict], head, out: Path) -> None:
    rows = []
    for r in results:
        chi, one, observed, region = r["_maps"]
        z = int(np.round(np.nonzero(head.labels == {v: k for k, v in head.label_names.items()}["putamen"])[2].mean()))
        hi = float(f"{np.percentile(observed[region], 99):.2g}")
        tiles = [_panel(chi, region, z, -0.15, 0.25, "gray", f"chi, SNR {r['snr']:g}"),
                 _panel(one, region, z, 0.0, hi, "hot", "predicted SD (one run's map)"),
                 _panel(observed, region, z, 0.0, hi, "hot", f"observed SD over {r['realisations']} runs")]
        rows.append(tiles)
    save_grid(rows, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, nargs="*", default=[40.0, 100.0])
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--voxel", type=float, default=1.0, help="isotropic voxel size (mm); TFI is the default above 1.5")
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--save", help="write every realisation's χ and map, the voxels kept and the times to this .npz")
    ap.add_argument("--load", help="recompute the figures from a --save file instead of running the chain")
    ap.add_argument("--freeze", default="", help="comma-separated decisions to fix at the first realisation's: "
                    + ", ".join(FREEZABLE))
    ap.add_argument("--estimator", action="store_true",
                    help="MEDI+0 alone with the chain's decisions fixed, as run and converged (see above)")
    args = ap.parse_args()
    frozen = [f for f in args.freeze.split(",") if f]
    if any(f not in FREEZABLE for f in frozen):
        ap.error(f"--freeze takes {', '.join(FREEZABLE)}")
    freeze(frozen)
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    t0 = time.perf_counter()
    head = matrix.simulate({**matrix.REFERENCE, "snr": float("inf"), "voxel": (args.voxel,) * 3})
    print(f"noise-free head in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.load:
        with np.load(args.load) as z:
            results = [summarise(head, snr, z[f"chi_snr{snr:g}"], z[f"sd_snr{snr:g}"], z[f"kept_snr{snr:g}"],
                                 z[f"times_snr{snr:g}"]) for snr in args.snr]
    elif args.estimator:
        results = [r for snr in args.snr for r in run_estimator(head, snr, args.realisations)]
    else:
        results = [run_snr(head, snr, args.realisations) for snr in args.snr]
    print(table(["SNR", "voxels", "pred/obs RMS (one map)", "pred/obs RMS (all maps)", "median (one map)",
                 "pred/robust obs RMS", "noise share of MSE", "RMS noise ppm", "RMS error ppm", "inversion s",
                 "map s"],
                [[f"{r['snr']:g}" + (f" (MEDI+0 {r['estimator']})" if "estimator" in r else ""), r["voxels"], f"{r['rms_one_map']:.2f}", f"{r['rms_all_maps']:.2f}",
                  f"{r['median_one_map']:.2f}", f"{r['rms_robust']:.2f}", f"{r['noise_share_of_mse']:.3f}",
                  f"{r['rms_noise_ppm']:.4f}", f"{r['rms_error_ppm']:.4f}", f"{r['inversion_s']:.1f}",
                  f"{r['map_s']:.1f}"] for r in results]))
    for r in results:
        print(f"\nSNR {r['snr']:g}{', MEDI+0 ' + r['estimator'] if 'estimator' in r else ''}, per class")
        print(table(["class", "voxels", "pred/obs RMS (one map)", "pred/obs RMS (all maps)", "median (one map)",
                     "pred/robust obs RMS", "pred SD / WM", "obs SD / WM", "obs SD ppm"],
                    [[k, c["voxels"], f"{c['rms_one_map']:.2f}", f"{c['rms_all_maps']:.2f}",
                      f"{c['median_one_map']:.2f}", f"{c['rms_robust']:.2f}", f"{c['predicted_over_wm']:.2f}",
                      f"{c['observed_over_wm']:.2f}", f"{c['observed_sd_ppm']:.4f}"]
                     for k, c in r["classes"].items()]))
    if not (args.estimator or frozen):
        figure(results, head, FIGURES / ("chi_sd.png" if args.voxel == 1 else f"chi_sd_{args.voxel:g}mm.png"))
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
                                              indent=1))
    if args.save:
        np.savez_compressed(args.save, **{f"{name}_snr{r['snr']:g}": a for r in results
                                          for name, a in zip(("chi", "sd", "kept", "times"), r["_all"])})


if __name__ == "__main__":
    main()
