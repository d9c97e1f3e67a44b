"""Element-wise work on whole volumes, split into slabs over the cores qsmflow may use.

numpy runs each element-wise operation on one core, while the FFTs use them all. In the
inversions' conjugate-gradient loops the element-wise work between the FFTs (finite
differences, weights, vector updates) is about half of the time. numpy releases the GIL
on large arrays, so slabs of a volume processed in threads run side by side: on this
project's 2-core machine a product, a sum and a difference of the 1 mm inversion's box
took 9 ms in two slabs against 17 ms in one (``benchmarks/README.md``, Speed).

Only the main thread splits its work. Work already running side by side (the χ
uncertainty's noise samples, the file writers) stays in its own thread, and
``$QSMFLOW_THREADS=1`` (each job of ``qsmflow bids --jobs N``) turns the splitting off.
Splitting never changes a result: every element is computed by the same operation, and the
inner products add per-slab partial sums in a fixed order.
"""

from __future__ import annotations

import atexit
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Environment variable capping the threads of qsmflow's FFTs and slabs (``qsmflow bids`` sets it per job).
THREADS_ENV = "QSMFLOW_THREADS"

# Below this many elements per slab, starting a thread costs more than it saves.
_MIN_SLAB = 1 << 18

# The machine's cores, asked once: os.cpu_count() took 47 µs a call here, and the inversions
# ask for every slab split (4,800 times in a 1 mm run, 0.2 s).
_CPU_COUNT = os.cpu_count() or 1

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def threads() -> int:
    """Worker threads for an FFT: ``$QSMFLOW_THREADS`` when set to a positive integer, else every core (-1)."""
    value = os.environ.get(THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else -1


def cores() -> int:
    """How many cores qsmflow may use: ``$QSMFLOW_THREADS`` when set, else all of them."""
    n = threads()
    return n if n > 0 else _CPU_COUNT


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="qsmflow-slab")
        return _pool


@atexit.register
def _close():  # pragma: no cover - interpreter exit
    if _pool is not None:
        _pool.shutdown(wait=False)


def _forget_pool():
    """In a forked child: the parent's pool threads do not exist there (waiting on them would
    hang), and its lock may have been held by one of them; start afresh."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


# Elements per chunk of the element-wise work that makes a temporary (``a·x`` in ``y += a·x``):
# 2^16 float32 (256 kB) keep it in cache instead of writing and reading a volume-sized array.
_CHUNK = 1 << 16


def chunks(part: slice) -> list[slice]:
    """``part`` (a slab of a flat array) in consecutive chunks of at most 2^16 elements."""
    return [slice(i, min(i + _CHUNK, part.stop)) for i in range(part.start, part.stop, _CHUNK)]


def slabs(length: int, size: int) -> list[slice]:
    """Contiguous slabs of ``range(length)`` (an axis of an array of ``size`` elements), one
    per core, or one slab when splitting would not pay (small arrays, one core, or a
    thread other than the main one)."""
    n = min(cores(), length, size // _MIN_SLAB)
    if n <= 1 or threading.current_thread() is not threading.main_thread():
        return [slice(0, length)]
    bounds = [round(i * length / n) for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def each(fn, parts: list) -> list:
    """``[fn(part) for part in parts]`` (slabs from :func:`slabs`, or anything one per slab), side
    by side in threads."""
    if len(parts) == 1:
        return [fn(parts[0])]
    return list(_executor(len(parts)).map(fn, parts))


def ufunc(op, *args, out: np.ndarray, axis: int = 0) -> np.ndarray:
    """``op(*args, out=out)`` (a numpy ufunc) slab by slab along ``axis``: arrays with
    ``out``'s number of dimensions and length along ``axis`` are sliced with it, anything
    else (scalars, arrays broadcast along it) is passed whole."""
    parts = slabs(out.shape[axis], out.size)
    if len(parts) == 1:
        return op(*args, out=out)
    n = out.shape[axis]

    def run(part):
        ix = (slice(None),) * axis + (part,)
        op(*(a[ix] if isinstance(a, np.ndarray) and a.ndim == out.ndim and a.shape[axis] == n else a
             for a in args), out=out[ix])

    each(run, parts)
    return out


def axpy(y: np.ndarray, a, x: np.ndarray) -> np.ndarray:
    """``y += a·x`` in place (``a`` a scalar, ``x`` and ``y`` C-contiguous of one shape), slab by
    slab, the temporary ``a·x`` a :func:`chunks` at a time."""
    if not (y.flags.c_contiguous and x.flags.c_contiguous and x.shape == y.shape):
        raise ValueError("axpy needs two C-contiguous arrays of one shape")
    fy, fx = y.reshape(-1), x.reshape(-1)

    def run(part):
        for c in chunks(part):
            fy[c] += a * fx[c]

    each(run, slabs(fy.size, fy.size))
    return y


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """Inner product of two arrays of one shape (C-contiguous), float32 partial sums per slab
    by BLAS, added in float64."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    parts = slabs(fa.size, fa.size)
    return float(sum(each(lambda s: float(np.vdot(fa[s], fb[s])), parts)))
