"""A stage's methods, by name, with the papers they come from.

Every stage module keeps a ``METHODS`` dict of :class:`Method`; the CLI reads its
choices from it and a run writes the citations of the methods it used. A method's
citations are the References section of its function's docstring: written once, where
the algorithm is.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Callable

_DOI = re.compile(r"(doi:\S+?)\.?(?=\s|$)")


def references(func: Callable) -> tuple[str, ...]:
    """The papers in the numpydoc References section of ``func``'s docstring, one string each
    (blank lines separate them; a remark after the DOI is left out)."""
    doc = inspect.cleandoc(func.__doc__ or "")
    found = re.search(r"^References\n-+\n(.*?)(?=\n\S[^\n]*\n-+\n|\Z)", doc, re.S | re.M)
    if not found:
        return ()
    out = []
    for entry in re.split(r"\n\s*\n", found.group(1).strip()):
        text = " ".join(entry.split())
        doi = _DOI.search(text)
        out.append(text[:doi.end(1)] if doi else text)
    return tuple(out)


# What a method may be given by the chain besides its stage's leading arguments, by keyword:
# the field-noise map (ppm), the echo-combined magnitude, the phase per ppm at the mean echo
# time (rad/ppm), the CSF weights found from R2*, for the χ uncertainty map the weights' and
# the local field's changes that another scan's noise would bring (one per sample), and the
# head's superior direction in voxel axes (from the affine).
INPUTS = ("noise", "magnitude", "phase_scale", "csf_mask", "sd_csf_jitter", "sd_field_jitter", "superior")


@dataclass(frozen=True)
class Method:
    """One algorithm of a stage.

    ``needs`` names the chain's inputs (:data:`INPUTS`) the method takes, declared here rather
    than read off its signature; ``noise_sd``: it can also return χ's noise SD; ``warm_start``:
    it can start from a χ (``chi0``, ``chi0_steps``) and be given its weight back, and its first
    pass from its weight search's solution (``search_start``). ``citations``
    default to :func:`references` of ``func``; ``only_with`` maps an input to the words
    naming the paper cited only when the method is given that input (MEDI+0's CSF term is
    MEDI+0 only with a CSF mask)."""

    name: str
    func: Callable
    summary: str
    citations: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    noise_sd: bool = False
    warm_start: bool = False
    only_with: dict = field(default_factory=dict)

    def __post_init__(self):
        unknown = (set(self.needs) | set(self.only_with)) - set(INPUTS)
        if unknown:
            raise ValueError(f"method {self.name!r} needs unknown inputs {sorted(unknown)}; inputs are {INPUTS}")
        if not self.citations:
            object.__setattr__(self, "citations", references(self.func))

    def cited(self, given) -> tuple[str, ...]:
        """The citations of a run that was given the inputs ``given``."""
        absent = [words for name, words in self.only_with.items() if name not in given]
        return tuple(c for c in self.citations if not any(w in c for w in absent))


def choose(methods: dict[str, Method], name: str, stage: str) -> Method:
    """The method called ``name``, or a ValueError listing the choices."""
    try:
        return methods[name]
    except KeyError:
        raise ValueError(f"{stage} method {name!r} is unknown; choose one of {', '.join(sorted(methods))}") from None
