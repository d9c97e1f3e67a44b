"""Multi-compartment T2*: myelin water fraction from the complex multi-echo signal.

White matter water sits in three pools with distinct decay and frequency: myelin water
(T2* ≈ 10 ms, shifted by the myelin's susceptibility), axonal water (≈ 64 ms) and
extracellular water (≈ 48 ms). Fitting the complex signal, not only the magnitude,
uses the pools' frequency differences to tell them apart.
"""

from __future__ import annotations

import logging

import numpy as np

from . import _checks

log = logging.getLogger(__name__)

__all__ = ["MIN_ECHOES", "three_pool_mwf"]

#: Fewer echoes cannot separate a 10 ms pool from two ≈ 50 ms pools.
MIN_ECHOES = 12

# parameter order: A_my, A_ax, A_ex, R_my, R_ax, R_ex (1/s), df_my, df_ax (Hz, relative to
# the extracellular pool), f_bg (Hz), phi0 (rad)
_N = 10
# bounds (Nam et al. 2015's fitting code): T2*_my 3-25 ms, T2*_ax/ex 25-350 ms,
# myelin frequency within ±75 Hz, axonal within ±25 Hz of the extracellular pool
_LO = np.array([0, 0, 0, 1 / 0.025, 1 / 0.350, 1 / 0.350, -75, -25, -np.inf, -np.inf])
_HI = np.array([np.inf, np.inf, np.inf, 1 / 0.003, 1 / 0.025, 1 / 0.025, 75, 25, np.inf, np.inf])
_CHUNK = 20000


def _model(p, te):
    """Complex signal (V, E) and its Jacobian (V, E, 10)."""
    t = te[None, :]
    phase = np.exp(1j * (2 * np.pi * p[:, 8:9] * t + p[:, 9:10]))
    pools = [np.exp(-p[:, 3:4] * t + 2j * np.pi * p[:, 6:7] * t),
             np.exp(-p[:, 4:5] * t + 2j * np.pi * p[:, 7:8] * t),
             np.exp(-p[:, 5:6] * t)]
    inner = sum(p[:, i:i + 1] * e for i, e in enumerate(pools))
    s = inner * phase
    jac = np.empty(s.shape + (_N,), complex)
    for i, e in enumerate(pools):
        jac[..., i] = e * phase
        jac[..., 3 + i] = -t * p[:, i:i + 1] * e * phase
    jac[..., 6] = 2j * np.pi * t * p[:, 0:1] * pools[0] * phase
    jac[..., 7] = 2j * np.pi * t * p[:, 1:2] * pools[1] * phase
    jac[..., 8] = 2j * np.pi * t * s
    jac[..., 9] = 1j * s
    return s, jac


def _fit_chunk(y, te, p, max_iter):
    """Levenberg-Marquardt on the complex residual for a chunk of voxels, within the bounds."""
    lam = np.full(len(y), 1e-2)

    def cost(q):
        r = _model(q, te)[0] - y
        return np.sum(r.real ** 2 + r.imag ** 2, axis=1)

    c = cost(p)
    for _ in range(max_iter):
        s, jac = _model(p, te)
        r = s - y
        jr = np.concatenate([jac.real, jac.imag], axis=1)  # (V, 2E, N)
        rr = np.concatenate([r.real, r.imag], axis=1)
        a = np.einsum("vei,vej->vij", jr, jr)
        g = np.einsum("vei,ve->vi", jr, rr)
        diag = np.einsum("vii->vi", a)
        a_d = a + (lam[:, None] * np.maximum(diag, 1e-12))[:, :, None] * np.eye(_N)[None]
        try:
            step = np.linalg.solve(a_d, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = np.zeros_like(p)
        new = np.clip(p + step, _LO, _HI)
        nc = cost(new)
        better = nc < c
        p = np.where(better[:, None], new, p)
        c = np.where(better, nc, c)
        lam = np.where(better, lam * 0.3, lam * 10)
    return p, c


def three_pool_mwf(magnitude: np.ndarray, phase: np.ndarray, echo_times, *, mask: np.ndarray,
                   field_hz: np.ndarray | None = None, max_iter: int = 60) -> dict:
    """Myelin water fraction by a three-pool complex model fit, all voxels at once.

    ``S(t) = [A_my e^{-t/T2*_my + i2πΔf_my t} + A_ax e^{-t/T2*_ax + i2πΔf_ax t}
    + A_ex e^{-t/T2*_ex}] e^{i(2π f_bg t + φ0)}`` fitted by Levenberg-Marquardt
    (analytic Jacobian, batched normal equations) within Nam et al.'s bounds, from
    their starting point: amplitudes 0.1/0.6/0.3 of the first echo's extrapolated
    signal, T2* 10/64/48 ms, pool frequencies equal, ``f_bg`` from ``field_hz`` (or
    the first two echoes) and ``φ0`` from the first echo.

    Parameters
    ----------
    magnitude, phase : ndarray (X, Y, Z, E)
        Complex signal as magnitude and phase (rad), ≥ ``MIN_ECHOES`` echoes, finely
        spaced (e.g. 24 echoes every 2 ms): the myelin pool is gone after ~30 ms.
    echo_times : sequence of float
        Echo times (s).
    mask : ndarray of bool
        Voxels to fit.
    field_hz : ndarray (X, Y, Z), optional
        Total field (Hz) to start ``f_bg`` from.

    Returns
    -------
    dict of ndarray (float32, 0 outside the mask)
        ``mwf`` (A_my over the sum of amplitudes, 0-1), ``t2star_my``, ``t2star_ax``,
        ``t2star_ex`` (s), ``df_my``, ``df_ax`` (Hz), ``residual`` (RMS of the complex
        residual over the RMS signal).

    References
    ----------
    Nam Y, Lee J, Hwang D, Kim DH. Improved estimation of myelin water fraction using
    complex model fitting. NeuroImage 2015;116:214-221.
    doi:10.1016/j.neuroimage.2015.04.081
    """
    mag = _checks.as_volume("magnitude", magnitude, ndim=4)
    pha = _checks.as_volume("phase", phase, ndim=4)
    _checks.same_shape("phase", pha, "magnitude", mag)
    te = _checks.echo_times(echo_times, mag.shape[3])
    if te.size < MIN_ECHOES:
        raise ValueError(f"a three-pool (myelin water) fit needs at least {MIN_ECHOES} echoes, got {te.size}; "
                         "acquire e.g. 24 echoes 2 ms apart")
    mask = _checks.as_mask("mask", mask, mag.shape[:3])
    y_all = (mag[mask] * np.exp(1j * pha[mask])).astype(np.complex128)
    if field_hz is not None:
        f0_all = _checks.as_volume("field_hz", field_hz, dtype=np.float64)[mask]
    else:
        f0_all = np.angle(y_all[:, 1] * np.conj(y_all[:, 0])) / (2 * np.pi * (te[1] - te[0]))
    out = np.zeros((len(y_all), 8))
    for start in range(0, len(y_all), _CHUNK):
        y, f0 = y_all[start:start + _CHUNK], f0_all[start:start + _CHUNK]
        # amplitude at TE = 0 from the first two echoes' decay
        s1, s2 = np.abs(y[:, 0]), np.abs(y[:, 1])
        r = np.clip(np.log(np.maximum(s1, 1e-30) / np.maximum(s2, 1e-30)) / (te[1] - te[0]), 0, 200)
        a0 = s1 * np.exp(r * te[0])
        p = np.zeros((len(y), _N))
        p[:, 0], p[:, 1], p[:, 2] = 0.1 * a0, 0.6 * a0, 0.3 * a0
        p[:, 3], p[:, 4], p[:, 5] = 1 / 0.010, 1 / 0.064, 1 / 0.048
        p[:, 8] = f0
        p[:, 9] = np.angle(y[:, 0] * np.exp(-2j * np.pi * f0 * te[0]))
        p, c = _fit_chunk(y, te, p, max_iter)
        total = np.maximum(p[:, 0] + p[:, 1] + p[:, 2], 1e-30)
        rms = np.sqrt(np.mean(np.abs(y) ** 2, axis=1))
        out[start:start + len(y)] = np.column_stack([p[:, 0] / total, 1 / p[:, 3], 1 / p[:, 4], 1 / p[:, 5],
                                                     p[:, 6], p[:, 7], np.sqrt(c / te.size) / rms, total])
    names = ["mwf", "t2star_my", "t2star_ax", "t2star_ex", "df_my", "df_ax", "residual"]
    maps = {}
    for i, name in enumerate(names):
        vol = np.zeros(mask.shape, np.float32)
        vol[mask] = out[:, i]
        maps[name] = vol
    log.info("three-pool fit over %d echoes in %d voxels: median MWF %.3f", te.size, int(mask.sum()),
             float(np.median(out[:, 0])) if len(out) else float("nan"))
    return maps
