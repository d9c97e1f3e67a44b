"""What a run does: the options and result types, the chain, the one-stage runs, one subject
from loading to its report, a BIDS dataset, the outputs and the report, the demo.

Stages (masking, unwrap, bgremove, inversion, ...) never import this package; it imports them.
"""

from .chain import run
from .options import Options, QSMResult
from .subject import process_subject

__all__ = ["Options", "QSMResult", "process_subject", "run"]
