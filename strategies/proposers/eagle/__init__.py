"""EAGLE-style feature-level draft heads: one decoder layer that reads the target's own hidden
states (arXiv 2401.15077, 2406.16858, 2503.01840)."""

from .checkpoint import LoadedHead, load_head, save_head
from .config import HeadConfig
from .network import EagleHead, HeadCache
from .proposer import EagleProposer

__all__ = ["EagleHead", "EagleProposer", "HeadCache", "HeadConfig", "LoadedHead", "load_head", "save_head"]
