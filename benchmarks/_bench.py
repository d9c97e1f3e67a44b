"""Shared helpers of the benchmark scripts: peak-memory sampling, table printing and the
inputs the chain gave its inversion."""

from __future__ import annotations

import os
import threading
import time

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


class PeakMemory:
    """Samples the RSS every few ms in a thread; ``mark()`` starts a new interval.

    ``peak()`` is the highest RSS seen since the last ``mark()``. Sampling misses
    spikes shorter than the interval, so it is a lower bound within a few MB.
    """

    def __init__(self, interval_s: float = 0.005):
        self.interval = interval_s
        self._peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            r = rss_bytes()
            if r > self._peak:
                self._peak = r
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def mark(self) -> None:
        self._peak = rss_bytes()

    def peak(self) -> int:
        return max(self._peak, rss_bytes())


class StageMeter:
    """A ``progress`` callback for :func:`qsmflow.pipeline.run` recording time and peak RSS per stage."""

    def __init__(self, mem: PeakMemory):
        self.mem = mem
        self.rows: dict[str, tuple[float, float]] = {}
        self._t0 = 0.0

    def __call__(self, stage: str, event: str) -> None:
        if event == "start":
            self.mem.mark()
            self._t0 = time.perf_counter()
        else:
            self.rows[stage] = (time.perf_counter() - self._t0, self.mem.peak() / 2**30)


def table(header: list[str], rows: list[list], title: str | None = None) -> str:
    """A GitHub-markdown table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return ((f"**{title}**\n\n") if title else "") + "\n".join(lines)


def inversion_inputs(res, magnitude, echo_times, field_strength) -> dict:
    """What the chain gave its inversion besides the field, rebuilt from its result ``res``:
    the field-noise map (ppm), the echo-combined magnitude and the phase per ppm at the mean
    echo time (keywords of :func:`qsmflow.pipeline.inversion_and_reference`)."""
    import numpy as np

    from qsmflow._shared import echoes, units

    return {"noise_ppm": res.field_noise_hz / units.hz_per_ppm(field_strength),
            "magnitude": echoes.rss(magnitude),
            "phase_scale": units.rad_per_ppm(field_strength, float(np.mean(echo_times)))}


def save_grid(rows, path) -> None:
    """Write rows of PIL image tiles as one white-backed figure (each row's tiles left to right,
    rows top to bottom, each row as tall as its tallest tile) and print where."""
    from PIL import Image

    width = max(sum(t.width for t in r) for r in rows)
    height = sum(max(t.height for t in r) for r in rows)
    fig = Image.new("RGB", (width, height), "white")
    y = 0
    for r in rows:
        x = 0
        for t in r:
            fig.paste(t, (x, y))
            x += t.width
        y += max(t.height for t in r)
    path.parent.mkdir(exist_ok=True)
    fig.save(path)
    print(f"wrote {path}")
