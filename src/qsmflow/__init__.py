"""qsmflow: quantitative susceptibility mapping and R2*/T2* mapping in pure Python.

The chain in four names: ``run(load_gre(mags, phases))`` with ``Options``, and
``simulate_head`` for a phantom with its ground truth. They are imported on first use, so
that ``import qsmflow`` (and the command line's start) stays light.
"""

__version__ = "0.1.0"

_LAZY = {"run": ("qsmflow.pipeline", "run"), "Options": ("qsmflow.pipeline", "Options"),
         "load_gre": ("qsmflow.io", "load_gre"), "simulate_head": ("qsmflow.phantom", "simulate_head")}

__all__ = ["Options", "__version__", "load_gre", "run", "simulate_head"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'qsmflow' has no attribute {name!r}")
