"""The stage registry: each method's declared inputs match what its function takes."""

import inspect

import pytest

from qsmflow import pipeline
from qsmflow._shared.registry import INPUTS, Method


@pytest.mark.parametrize("stage", sorted(pipeline.STAGES))
def test_declared_inputs_are_exactly_the_chain_inputs_a_method_takes(stage):
    for name, method in pipeline.STAGES[stage].items():
        params = inspect.signature(method.func).parameters
        takes = {p for p in INPUTS if p in params and params[p].kind == inspect.Parameter.KEYWORD_ONLY}
        if stage == "inversion":  # the chain passes inversions what they declare
            assert set(method.needs) == takes, (stage, name)
        assert set(method.needs) <= set(params), (stage, name)
        assert method.noise_sd == ("return_sd" in params), (stage, name)


def test_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="needs unknown inputs"):
        Method("x", print, "x", needs=("field_map",))
