"""Length policies: when to stop drafting."""

from .adaedl import AdaEdlPolicy
from .confidence import ConfidencePolicy
from .auto import CostAwarePolicy
from .fixed import FixedPolicy
from .heuristic import HeuristicPolicy
from .oracle import OraclePolicy
from .pacer import PacerPolicy
from .svip import SvipPolicy

__all__ = [
    "AdaEdlPolicy",
    "ConfidencePolicy",
    "CostAwarePolicy",
    "FixedPolicy",
    "HeuristicPolicy",
    "OraclePolicy",
    "PacerPolicy",
    "SvipPolicy",
]

from specdec.hookspecs import hookimpl


@hookimpl
def specdec_register_policies() -> dict[str, type]:
    return {
        "fixed": FixedPolicy,
        "heuristic": HeuristicPolicy,
        "confidence": ConfidencePolicy,
        "svip": SvipPolicy,
        "adaedl": AdaEdlPolicy,
        "auto": CostAwarePolicy,
        "oracle": OraclePolicy,
        "pacer": PacerPolicy,
    }
