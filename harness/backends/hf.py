"""``hf`` backend: a transformers model in this process (CPU or GPU).

It is the embedded default because it gives *exact* full-vocabulary log-probs, which is the
richest data mode the logit probes can use. torch and transformers are imported lazily so
that validating a suite stays fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.backends.base import (
    Backend,
    BackendOptions,
    Capabilities,
    Capability,
    CountRequest,
    CountResult,
    GenerateRequest,
    GenerateResult,
    ModelRef,
    ScoreRequest,
    ScoreResult,
    compact_full,
    decodes_to,
    sha256_text,
)
from harness.errors import BackendError, CapabilityMissing
from harness.provenance import WEIGHT_SUFFIXES, sha256_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")


class HFOptions(BackendOptions):
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="Weights' dtype in memory; 'auto' keeps the checkpoint's."
    )
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:1', ...")
    batch_size: int = Field(8, ge=1, description="Texts per forward pass (sorted by length).")
    gguf_file: str | None = Field(None, description="GGUF file inside `path` (transformers dequantises it).")
    trust_remote_code: bool = Field(False, description="Run the repository's own Python code (trusted sources only).")
    max_length: int = Field(2048, ge=8, description="Hard cap on tokens per scored text.")


def _split_gguf(spec: ModelRef, opts: HFOptions) -> tuple[Path, str | None]:
    """Accept either ``path: dir`` + ``gguf_file: name`` or ``path: file.gguf``."""
    p = Path(spec.path or "")
    if p.suffix == ".gguf":
        return p.parent, p.name
    return p, opts.gguf_file


class HFBackend(Backend):
    name: ClassVar[str] = "hf"
    description: ClassVar[str] = "transformers in process (CPU/GPU): exact full-vocabulary log-probs; the default"
    Options = HFOptions
    local_path: ClassVar[Literal["always", "if_exists", "never"]] = "always"

    options: HFOptions

    @classmethod
    def check_spec(cls, spec: ModelRef) -> None:
        if not spec.path:
            raise ValueError("the hf backend needs `path`: a local model directory or .gguf file")
        opts = HFOptions.model_validate(spec.options)
        directory, gguf = _split_gguf(spec, opts)
        if not spec.hub_pending:
            if not directory.exists():
                raise ValueError(f"model path does not exist: {directory}")
            if gguf and not (directory / gguf).exists():
                raise ValueError(f"GGUF file does not exist: {directory / gguf}")
            if not gguf and not (directory / "config.json").exists():
                raise ValueError(f"not a transformers model directory (no config.json): {directory}")
        if opts.device.startswith("cuda"):
            # No GPU driver (NVIDIA, or ROCm's /dev/kfd): no CUDA, said without the 2 s torch import.
            if not any(Path(x).exists() for x in ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd")):
                raise ValueError(f"options.device: '{opts.device}' asked for, but this machine has no GPU driver")
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"options.device: '{opts.device}' asked for, but torch sees no CUDA device here")

    def __init__(self, spec: ModelRef):
        super().__init__(spec)
        self.model: Any = None
        self.tokenizer: Any = None
        self._fingerprint: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory, gguf = _split_gguf(self.spec, self.options)
        kw: dict[str, Any] = {"trust_remote_code": self.options.trust_remote_code}
        if gguf:
            kw["gguf_file"] = gguf
        dtype = "auto" if self.options.dtype == "auto" else getattr(torch, self.options.dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, **kw)
        except Exception as e:  # transformers raises many types; the user needs the model and the cause
            raise BackendError(f"model '{self.spec.name}': cannot load {directory}: {type(e).__name__}: {e}") from e
        self.model.to(self.options.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def close(self) -> None:
        import gc

        self.model = None
        self.tokenizer = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass

    # ------------------------------------------------------------------ identity
    def capabilities(self) -> Capabilities:
        caps = [
            Capability.FULL_LOGPROBS,
            Capability.TOPK_LOGPROBS,
            Capability.GENERATE,
            Capability.NEXT_TOKEN_TOPK,
            Capability.TOKEN_COUNTS,
            Capability.TOKENIZER_FILES,
        ]
        if self.tokenizer is not None and self.tokenizer.chat_template:
            caps += [Capability.CHAT_TEMPLATE, Capability.CHAT_SCORING]
        vocab = self.model.config.vocab_size if self.model is not None else 0
        return Capabilities(supported=caps, max_top_k=vocab)

    def fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is not None:
            return self._fingerprint
        import torch
        import transformers

        directory, gguf = _split_gguf(self.spec, self.options)
        files = [directory / gguf] if gguf else sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        weights = {p.name: sha256_file(p) for p in files}
        tok_files = {n: sha256_file(directory / n) for n in TOKENIZER_FILES if (directory / n).exists()}
        config = directory / "config.json"
        fp = {
            "backend": self.name,
            "path": str(directory),
            "gguf_file": gguf,
            "weights_sha256": weights,
            "tokenizer_sha256": tok_files,
            "config_sha256": sha256_file(config) if config.exists() else None,
            "dtype": str(self.model.dtype).removeprefix("torch.") if self.model is not None else self.options.dtype,
            "device": self.options.device,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "chat_template_sha256": sha256_text(getattr(self.tokenizer, "chat_template", None)),
            "vocab_size": int(self.model.config.vocab_size) if self.model is not None else None,
        }
        # The cache key: what determines the numbers (not the path, so a moved model still hits).
        key_fields = {k: fp[k] for k in ("backend", "weights_sha256", "tokenizer_sha256", "config_sha256", "dtype")}
        key_fields |= {"device": self.options.device.split(":")[0], "torch": fp["torch"], "tf": fp["transformers"]}
        fp["key"] = hashlib.sha256(repr(sorted(key_fields.items())).encode()).hexdigest()
        self._fingerprint = fp
        return fp

    def batch_size(self, kind: str) -> int:
        return {"score": self.options.batch_size, "count": 64}.get(kind, 1)

    # ------------------------------------------------------------------ requests
    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.tokenizer.chat_template:
            raise CapabilityMissing(f"model '{self.spec.name}' has no chat template")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def count(self, requests: list[CountRequest]) -> list[CountResult]:
        return [CountResult(n, "tokenizer") for n in self.count_tokens([r.text for r in requests])]

    def _reply_ids(self, r: ScoreRequest) -> list[int]:
        """The answer's tokens: the sampled ids when this tokenizer decodes them to the answer's
        text (the sampler shared this vocabulary), the text tokenised otherwise."""
        if r.reply_ids and max(r.reply_ids) < len(self.tokenizer) and min(r.reply_ids) >= 0:
            if decodes_to(self.tokenizer.decode(r.reply_ids, skip_special_tokens=True), r.text):
                return list(r.reply_ids)
        return self.tokenizer(r.text, add_special_tokens=False)["input_ids"]

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """Teacher-forced log-probs, batched by similar length; one log_softmax per batch."""
        import torch

        cap = self.options.max_length
        encoded, skip = [], []  # skip: prompt tokens before the scored text (its last one is kept as token 0)
        for r in requests:
            if r.prompt is None:
                ids, head = self.tokenizer(r.text, add_special_tokens=True)["input_ids"], 0
            else:
                prompt = self.tokenizer(self.render_chat(r.prompt), add_special_tokens=False)["input_ids"]
                ids, head = prompt + self._reply_ids(r), len(prompt) - 1
            limit = min(cap, head + (r.max_tokens or cap))
            encoded.append(ids[:limit])
            skip.append(head)
            if len(encoded[-1]) - head < 2:
                raise BackendError(
                    f"model '{self.spec.name}': text tokenises to <2 tokens, nothing to score: {r.text!r}"
                )
        out: list[ScoreResult | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: -len(encoded[i]))
        bs = self.options.batch_size
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            width = len(encoded[idx[0]])
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[row, : len(encoded[i])] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self.options.device), attention_mask=mask.to(self.options.device)
                ).logits
                logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                targets = ids[:, 1:].to(logprobs.device)
                actual = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                k = max((requests[i].top_k for i in idx if requests[i].mode == "topk"), default=0)
                top = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1) if k else None  # once per batch
                for row, i in enumerate(idx):
                    n, h = len(encoded[i]) - 1, skip[i]
                    req = requests[i]
                    res = ScoreResult(
                        token_ids=np.asarray(encoded[i][h:], dtype=np.int64),
                        token_logprobs=actual[row, h:n].cpu().numpy(),
                    )
                    if req.mode == "full":
                        res.full = logprobs[row, h:n].cpu().numpy()
                        res = compact_full(res, req)
                    elif top is not None:  # top-k mode: k > 0, so the batch's topk was taken
                        kk = min(req.top_k, logprobs.shape[-1])
                        res.topk_ids = top.indices[row, h:n, :kk].cpu().numpy()
                        res.topk_logprobs = top.values[row, h:n, :kk].cpu().numpy()
                    out[i] = res
        return [r for r in out if r is not None]  # every index was filled above

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """Chat generations. Sampling is seeded per request (transformers' sampler uses torch's
        global generator, so the seed is set immediately before each call)."""
        import torch

        results = []
        for r in requests:
            prompt = self.render_chat(r.messages)
            enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(self.options.device)
            sample = r.temperature > 0
            kw: dict[str, Any] = {"do_sample": sample, "max_new_tokens": r.max_new_tokens, "num_return_sequences": r.n}
            if sample:  # top_k 0: transformers would otherwise cut every draw to the 50 likeliest tokens
                kw |= {"temperature": r.temperature, "top_p": r.top_p, "top_k": 0}
            torch.manual_seed(r.seed)
            with torch.inference_mode():
                out = self.model.generate(
                    **enc,
                    **kw,
                    pad_token_id=self.tokenizer.pad_token_id,
                    output_logits=r.top_logprobs > 0,
                    return_dict_in_generate=True,
                )
            n_prompt = enc["input_ids"].shape[1]
            seqs = out.sequences[:, n_prompt:]
            eos = self.tokenizer.eos_token_id
            texts, counts, sampled = [], [], []
            for s in seqs:
                s = s.tolist()
                if eos in s:
                    s = s[: s.index(eos)]
                while s and s[-1] == self.tokenizer.pad_token_id:
                    s.pop()
                texts.append(self.tokenizer.decode(s, skip_special_tokens=True))
                counts.append(len(s))
                sampled.append(s)
            first: list[list[tuple[str, float]]] = []
            if r.top_logprobs > 0:
                lp = torch.log_softmax(out.logits[0][0].float(), -1)  # raw logits, before sampling warpers
                top = torch.topk(lp, r.top_logprobs)
                first = [[(self.tokenizer.decode([int(t)]), float(v)) for t, v in zip(top.indices, top.values)]]
            results.append(GenerateResult(texts, counts, n_prompt, prompt, first, sampled))
        return results
