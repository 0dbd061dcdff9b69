"""`auto`: cost-aware drafting. Its parts, one module each: the acceptance model (`acceptance`),
the cost model (`costs`), the exploration budget (`exploration`) and the decision rule
(`policy`)."""

from .policy import CostAwarePolicy

__all__ = ["CostAwarePolicy"]
