"""A stage's methods, by name, with the papers they come from.

Every stage module keeps a ``METHODS`` dict of :class:`Method`; the CLI reads its
choices from it and a run writes the citations of the methods it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


# What a method may be given by the chain besides its stage's leading arguments, by keyword:
# the field-noise map (ppm), the echo-combined magnitude, the phase per ppm at the mean echo
# time (rad/ppm), the CSF mask found from R2*.
INPUTS = ("noise", "magnitude", "phase_scale", "csf_mask")


@dataclass(frozen=True)
class Method:
    """One algorithm of a stage.

    ``needs`` names the chain's inputs (:data:`INPUTS`) the method takes, declared here rather
    than read off its signature; ``noise_sd``: it can also return χ's noise SD."""

    name: str
    func: Callable
    summary: str
    citations: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    noise_sd: bool = False

    def __post_init__(self):
        unknown = set(self.needs) - set(INPUTS)
        if unknown:
            raise ValueError(f"method {self.name!r} needs unknown inputs {sorted(unknown)}; inputs are {INPUTS}")


def choose(methods: dict[str, Method], name: str, stage: str) -> Method:
    """The method called ``name``, or a ValueError listing the choices."""
    try:
        return methods[name]
    except KeyError:
        raise ValueError(f"{stage} method {name!r} is unknown; choose one of {', '.join(sorted(methods))}") from None
