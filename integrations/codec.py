"""The tokenizer codec: text to token ids and back, and the chat template."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from specdec.errors import InputError


class HFCodec:
    """Tokenizer wrapper: plain encode/decode plus the chat template when the tokenizer has one."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def apply_chat_template(self, prompt: str | Sequence[Mapping[str, Any]]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError("this tokenizer has no chat template: give the prompt without the chat wrapping, or use a chat model")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        out = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return list(out)
