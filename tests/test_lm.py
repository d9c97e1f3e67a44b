"""The batched Levenberg-Marquardt engine against answers worked out independently."""

import numpy as np

from qsmflow._shared.lm import levenberg_marquardt


def _linear(a):
    """A linear model f = A p (the same A for every voxel)."""
    def model(p, rows):
        return p @ a.T, np.broadcast_to(a, (len(p),) + a.shape).copy()
    return model


def test_a_linear_model_reaches_the_least_squares_answer():
    """Three parameters (the general solve) and two (the closed form), real and complex data:
    the answer of numpy's lstsq, with small damping, in a few steps."""
    rng = np.random.default_rng(0)
    for k, dtype in ((3, float), (2, float), (3, complex)):
        a = rng.normal(size=(7, k)) + (1j * rng.normal(size=(7, k)) if dtype is complex else 0)
        y = rng.normal(size=(5, 7)) + (1j * rng.normal(size=(5, 7)) if dtype is complex else 0)
        p, cost, steps, moving = levenberg_marquardt(_linear(a), y, np.zeros((5, k)), lam=1e-9, max_iter=8)
        big = np.vstack([a.real, a.imag]) if dtype is complex else a
        for v in range(5):
            rhs = np.concatenate([y[v].real, y[v].imag]) if dtype is complex else y[v]
            expect, res, *_ = np.linalg.lstsq(big, rhs, rcond=None)
            np.testing.assert_allclose(p[v], expect, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(cost[v], res[0], rtol=1e-6)
        assert steps == 8 and moving == 5  # no tolerance given: every voxel runs to max_iter


def test_weights_bounds_and_the_stopping_rule():
    """Zero-weight samples do not count; a bound holds; a tolerance stops the voxels early."""
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    y = np.array([[1.0, 3.0, 5.0, 100.0]])  # a line 1 + 2x, and an outlier
    w = np.array([[1.0, 1.0, 1.0, 0.0]])
    p, cost, _, _ = levenberg_marquardt(_linear(a), y, np.zeros((1, 2)), weights=w, lam=1e-9, max_iter=10)
    np.testing.assert_allclose(p[0], [1.0, 2.0], atol=1e-8)
    assert cost[0] < 1e-12
    p, _, _, _ = levenberg_marquardt(_linear(a), y, np.zeros((1, 2)), weights=w, lam=1e-9, max_iter=20,
                                     lower=[-np.inf, -np.inf], upper=[np.inf, 1.5])
    # the slope stays at its bound; the intercept starts from the clipped Gauss-Newton point
    # (1, 1.5) and moves towards the constrained optimum 3 - 1.5 = 1.5 (the mean of y - 1.5x
    # over x = 0, 1, 2), never past it: clipped steps make slow progress along a bound
    assert p[0, 1] == 1.5 and 1.0 <= p[0, 0] < 1.5
    _, _, steps, moving = levenberg_marquardt(_linear(a), y, np.zeros((1, 2)), weights=w, lam=1e-9, max_iter=30,
                                              tol=1e-10)
    assert steps < 10 and moving == 0


def test_damping_rises_after_a_failed_step_and_voxels_are_independent():
    """f = exp(b t): from b = 0 an undamped step overshoots on one voxel; the other voxel's
    answer is the same alone or in a batch of two, and in chunks of one."""
    t = np.linspace(0, 2, 6)
    def model(p, rows):
        e = np.exp(p[:, 0:1] * t)
        return e, (t * e)[..., None]
    y = np.exp(np.array([[-3.0], [0.5]]) * t)
    p, _, _, _ = levenberg_marquardt(model, y, np.zeros((2, 1)), lam=1e-3, max_iter=60, tol=1e-12)
    np.testing.assert_allclose(p[:, 0], [-3.0, 0.5], rtol=1e-8)
    alone, _, _, _ = levenberg_marquardt(model, y[1:], np.zeros((1, 1)), lam=1e-3, max_iter=60, tol=1e-12)
    chunked, _, _, _ = levenberg_marquardt(model, y, np.zeros((2, 1)), lam=1e-3, max_iter=60, tol=1e-12, chunk=1)
    assert alone[0, 0] == p[1, 0] and np.array_equal(chunked, p)
