"""Length policies: when to stop drafting."""

from .fixed import FixedPolicy

__all__ = ["FixedPolicy"]

from specdec.hookspecs import hookimpl


@hookimpl
def specdec_register_policies() -> dict[str, type]:
    return {"fixed": FixedPolicy}
