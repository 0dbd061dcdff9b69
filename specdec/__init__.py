"""specdec: exactly lossless speculative decoding with pluggable length policies and proposers."""

from specdec.decoder import Decoder
from specdec.draft import Draft
from specdec.errors import (
    CacheError,
    ConcurrentUseError,
    ConfigurationError,
    InputError,
    ModelFileError,
    ModelNotFoundError,
    NonFiniteLogitsError,
    PluginError,
    SpecdecError,
    VocabularyMismatchError,
)
from specdec.features import DraftFeatures, TokenFeatures
from specdec.policy import Decision, LengthPolicy, RoundState
from specdec.proposer import ProposalRequest, Proposer
from specdec.samplers import Sampler, TorchSampler
from specdec.sampling import SamplingConfig
from specdec.stats import GenerationResult, GenerationStats
from specdec.verification import Verification
from specdec.verifier import Verifier

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "ConcurrentUseError",
    "ConfigurationError",
    "Decision",
    "Decoder",
    "Draft",
    "DraftFeatures",
    "GenerationResult",
    "GenerationStats",
    "InputError",
    "LengthPolicy",
    "ModelFileError",
    "ModelNotFoundError",
    "NonFiniteLogitsError",
    "PluginError",
    "ProposalRequest",
    "Proposer",
    "RoundState",
    "Sampler",
    "SamplingConfig",
    "SpecdecError",
    "TokenFeatures",
    "TorchSampler",
    "Verification",
    "Verifier",
    "VocabularyMismatchError",
]
