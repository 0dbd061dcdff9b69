"""Model backends behind specdec's `LanguageModel` protocol."""

from .base import LanguageModel, ModelOutput, TextCodec
from .toy import ToyModel

__all__ = ["LanguageModel", "ModelOutput", "TextCodec", "ToyModel"]
