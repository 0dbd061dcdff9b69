"""PACER: a trained blockwise pre-verifier decides when to stop drafting (arXiv 2602.01274).

One package for the whole strategy: the network (`network`), training-data collection
(`collect`), training and threshold tuning (`train`), the built-in training prompts (`prompts`),
the weights trained for the default draft (`default/`) and the length policy (`policy`).
"""

from .policy import PacerPolicy, default_path

__all__ = ["PacerPolicy", "default_path"]
