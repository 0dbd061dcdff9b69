"""specdec: exactly lossless speculative decoding with pluggable length policies and proposers."""

from specdec._layout import extend_package_path

extend_package_path(__path__, __file__)

from specdec.decoder import Decoder  # noqa: E402
from specdec.draft import Draft  # noqa: E402
from specdec.errors import (  # noqa: E402
    ConfigurationError,
    InputError,
    ModelNotFoundError,
    NonFiniteLogitsError,
    PluginError,
    SpecdecError,
    VocabularyMismatchError,
)
from specdec.features import DraftFeatures, TokenFeatures  # noqa: E402
from specdec.policy import Decision, LengthPolicy, RoundState  # noqa: E402
from specdec.proposer import ProposalRequest, Proposer  # noqa: E402
from specdec.samplers import Sampler, TorchSampler  # noqa: E402
from specdec.sampling import SamplingConfig  # noqa: E402
from specdec.stats import GenerationResult, GenerationStats  # noqa: E402
from specdec.verification import Verification  # noqa: E402
from specdec.verifier import Verifier  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "Decision",
    "Decoder",
    "Draft",
    "DraftFeatures",
    "GenerationResult",
    "GenerationStats",
    "InputError",
    "LengthPolicy",
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
