"""Automatic choice of the regularisation weight of a dipole inversion.

With a noise map, the discrepancy principle picks the weight whose solution misfits
the data, ``ρ(λ) = ||W(Dχ_λ - f)||`` over the mask, by as much as the noise does.
(The L-curve was tried first: on the benchmark head and on small phantoms its
log-log curve has no distinct corner, and maximum curvature picked weights 10-100x
too small; Milovic et al. 2020 report the same unreliability for TV.)
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["MEDI_ALPHA_PER_NOISE", "TV_ALPHA_PER_NOISE", "TV_MISFIT_SLOPE", "discrepancy", "misfit"]

#: First guess of the TV weight per ppm of field noise and per mm of voxel size (the
#: geometric mean of the three): the weights the discrepancy principle chose on the
#: benchmark matrix were 0.053-0.059 x noise on the 1-1.4 mm heads, 0.066 at 1x1x2 mm,
#: 0.111 at 2 mm and 0.080-0.144 at 2x2x3 mm (the noise map of the field fit through
#: the origin); the 2-echo head, dominated by noise, needed 0.45.
TV_ALPHA_PER_NOISE = 0.056

#: The search's first guess for MEDI (its linear-TV problem with the edge mask and the edge
#: taper's data weights), per ppm of field noise and mm of voxel size: the weights the
#: principle chose on the captured MEDI+0 problems of the benchmark matrix (stop 57) were 0.091
#: x noise on the 1 mm head, 0.080-0.090 on the oblique 35°, 1.5 T and coronal-slab heads and
#: 0.149 at SNR 20 (``TV_ALPHA_PER_NOISE``, 0.056, predates the taper). From 0.09 the search
#: stopped after its first solve on three of those five heads and after two on the others,
#: against two or three solves from 0.056, with χ NRMSE 24.51 / 34.39 / 32.22 / 25.16 / 30.37 %
#: against 24.51 / 35.13 / 32.21 / 25.09 / 30.42 % (1 mm, SNR 20, oblique 35°, 1.5 T, coronal).
#: A 0.79 mm head settled at 0.056 (two solves from 0.09, one from 0.056): the ratio falls with
#: the voxel size on isotropic grids and grows with the noise; a miss costs one solve.
MEDI_ALPHA_PER_NOISE = 0.09

#: d log(misfit) / d log(alpha) of TV near the optimum (0.42-0.44 on the benchmark head),
#: the first secant slope.
TV_MISFIT_SLOPE = 0.43


def misfit(p, chi) -> float:
    """``||W(Dχ - f)||`` over the mask of the problem ``p``."""
    inside = p.mask > 0
    return float(np.linalg.norm((p.w * (p.dipole(chi) - p.f))[inside]))


def discrepancy(solve, p, noise_ppm: np.ndarray, name: str, *, per_noise: float, slope: float,
                first_iters: int = 20, iters: int = 25, max_steps: int = 5):
    """The weight whose solution misfits the data by the noise (Morozov's discrepancy principle).

    Noise of standard deviation ``σ`` alone gives a misfit ``||W(Dχ - f)||² ≈ Σ W²σ²``
    over the mask, whatever the data weights ``W``; the weight is
    searched (secant steps on log ρ against log α, each solve warm-started from the
    last and run for a few iterations only) until the misfit matches within 5 %.
    ``solve(alpha, x0, iters)`` returns (χ, iterations) on ``p``'s grid; the search
    starts at ``per_noise`` times the median noise (ppm) times the voxel size (mm, geometric
    mean) with secant slope ``slope``. The first solve runs ``first_iters`` iterations from
    zero: for MEDI's FANSI search on the benchmark matrix's 1 mm, SNR 20 and oblique 35°
    heads the misfit after 20 iterations was within 2.6 % of the converged one (40: 0.6 %,
    10: 15 %), inside the 5 % the search stops at, and MEDI+0's χ the same to 0.04 points
    (weights 4.30·10⁻⁵, 2.83·10⁻⁴, 5.23·10⁻⁵ against 4.30·10⁻⁵, 2.85·10⁻⁴, 5.23·10⁻⁵) in 1–3 s less.
    The misfit is the linear one even for a nonlinear data term: where wrapped
    outliers inflate it the weight comes out smaller.

    Returns
    -------
    alpha : float
    chi : ndarray
        The last solution, to warm-start the final solve.

    References
    ----------
    Morozov VA. On the solution of functional equations by the method of
    regularization. Soviet Math Dokl 1966;7:414-417.

    Wen YW, Chan RH. Parameter selection for total-variation-based image restoration
    using discrepancy principle. IEEE Trans Image Process 2012;21:1770-1781.
    doi:10.1109/TIP.2011.2181401
    """
    inside = p.mask > 0
    sigma = p.cut(np.asarray(noise_ppm, np.float32))[inside]
    good = np.isfinite(sigma) & (sigma > 0)
    if not good.any():
        raise ValueError("the noise map is zero or invalid everywhere inside the mask")
    # the misfit pure noise leaves under the problem's own weights (capped, normalised or none)
    target = float(np.linalg.norm(p.w[inside][good] * sigma[good]))
    typical = float(np.median(sigma[good]))
    alpha, chi = per_noise * typical * float(np.prod(p.vs)) ** (1 / 3), None
    prev = None
    for step in range(max_steps):
        chi, _ = solve(alpha, chi, first_iters if step == 0 else iters)
        rho = misfit(p, chi)
        log.info("%s: alpha %.3g gives misfit %.3g (noise level %.3g)", name, alpha, rho, target)
        miss = np.log(target / rho)
        if abs(miss) < 0.05:
            break
        if prev is not None and abs(np.log(alpha / prev[0])) > 1e-3:
            slope = float(np.clip(np.log(rho / prev[1]) / np.log(alpha / prev[0]), 0.15, 1.5))
        prev = (alpha, rho)
        alpha *= float(np.exp(np.clip(miss / slope, -np.log(10), np.log(10))))
    log.info("%s: discrepancy principle chose alpha %.3g", name, alpha)
    return alpha, chi
