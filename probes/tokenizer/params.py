"""The tokenizer probe's parameters (``params:`` of a ``tokenizer`` probe in a suite), read by
planning (``probe.py``) and analysis (``analysis.py``) alike."""

from __future__ import annotations

from pydantic import Field

from probes.base import ProbeParams


class TokenizerParams(ProbeParams):
    candidates: dict[str, str] = Field(
        default_factory=dict, description="Extra candidate tokenizers: name -> model dir, tokenizer.json or GGUF."
    )
    library: bool | list[str] = Field(
        True, description="Add the prepared library of real tokenizers (all, or these names); see `assets fetch`."
    )
    max_strings: int | None = Field(None, ge=1, description="Use only this many diagnostic strings (balanced).")
    white_box: bool = Field(True, description="Compare tokenizer files where models have them.")
