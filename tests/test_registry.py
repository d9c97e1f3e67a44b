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


def test_citations_come_from_the_docstring_references():
    """One place for a paper: the numpydoc References of the function. Entries are split at
    blank lines and joined into one line; a remark after the DOI is left out."""
    def method(x):
        """Do it.

        References
        ----------
        Doe J, Roe R. A method. J Imaging 2001;1:2-3.
        doi:10.1000/abc.1 (the second step).

        Poe E. Another. J Imaging 2002;2:4-5. doi:10.1000/xyz.2
        """
    m = Method("m", method, "summary")
    assert m.citations == ("Doe J, Roe R. A method. J Imaging 2001;1:2-3. doi:10.1000/abc.1",
                           "Poe E. Another. J Imaging 2002;2:4-5. doi:10.1000/xyz.2")
    assert Method("p", print, "no docstring references").citations == ()


@pytest.mark.parametrize("stage", sorted(pipeline.STAGES))
def test_every_method_cites_a_paper_with_its_doi(stage):
    for name, method in pipeline.STAGES[stage].items():
        if name == "none":
            continue
        assert method.citations and all("doi:10." in c for c in method.citations), (stage, name)
        assert all("et al" not in c or len(c) > 120 for c in method.citations), (stage, name)  # whole references


def test_medi_cites_medi0_only_when_given_a_csf_mask():
    medi = pipeline.STAGES["inversion"]["medi"]
    with_csf, without = medi.cited({"csf_mask", "noise"}), medi.cited({"noise"})
    assert any("doi:10.1002/mrm.26946" in c for c in with_csf)
    assert not any("doi:10.1002/mrm.26946" in c for c in without)
    assert set(without) < set(with_csf) and any("doi:10.1002/mrm.22816" in c for c in without)  # MEDI itself
    with pytest.raises(ValueError, match="needs unknown inputs"):
        Method("x", print, "x", only_with={"field_map": "X"})
