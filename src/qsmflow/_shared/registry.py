"""A stage's methods, by name, with the papers they come from.

Every stage module keeps a ``METHODS`` dict of :class:`Method`; the CLI reads its
choices from it and a run writes the citations of the methods it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Method:
    """One algorithm of a stage."""

    name: str
    func: Callable
    summary: str
    citations: tuple[str, ...] = ()


def choose(methods: dict[str, Method], name: str, stage: str) -> Method:
    """The method called ``name``, or a ValueError listing the choices."""
    try:
        return methods[name]
    except KeyError:
        raise ValueError(f"{stage} method {name!r} is unknown; choose one of {', '.join(sorted(methods))}") from None
