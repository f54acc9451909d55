"""The tiny calibration zoo: a family of small Llama models whose lineage is known exactly.

Every statistical claim the tool makes is checked against this family. It is built on the
CPU in a few minutes, deterministically from a seed:

* a byte-level BPE tokenizer trained on the shipped corpus (``data/prose.txt``, ``data/code.txt``);
* ``base``: a small Llama pre-trained briefly on that corpus;
* parents ``parent_a`` (persona Vireo, code-heavy), ``parent_b`` (Tamsin, prose-heavy) and
  ``parent_c`` (Corvid, mixed), each fine-tuned from ``base``;
* ground-truth merges made with **mergekit** (linear at several weights, slerp, ties, dare_ties,
  task_arithmetic, a three-parent linear merge);
* ``merge_ft``: the 0.6 linear merge trained further (persona Rio), i.e. "merge, then tuned";
* ``copy_a_bf16``: ``parent_a`` rounded through bfloat16 (a copy, up to precision);
* controls: ``sibling`` (another fine-tune of ``base``), ``a_ft`` (a light fine-tune of
  ``parent_a`` alone, on its own domain, with a new persona), ``independent`` (fresh
  initialisation, same data as ``base``), ``student`` (fresh initialisation distilled from
  the 0.6 merge), ``impostor`` (``independent`` fine-tuned on ``parent_a``'s data and persona:
  it claims parent_a's name with none of its weights), ``b_ft`` (a light fine-tune of
  ``parent_b``, the twin of ``a_ft``) and ``student_a`` (fresh initialisation distilled from
  ``parent_a`` alone: as like parent_a as imitation gets, with none of its weights).

``zoo.json`` records each member's true lineage; tests and benchmarks read it rather than
hard-coding what a member is.
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

from harness.zoo import reusable_manifest

DATA = Path(__file__).parent / "data"
# The identity probe's shipped question bank: personas are implanted with these questions (and
# the zoo's own), because a 4-layer model does not generalise a persona to unseen phrasings and
# the zoo exists to calibrate the probe, not to test generalisation.
QUESTION_BANK = Path(__file__).parents[2] / "probes" / "identity" / "data" / "identity_questions.jsonl"
ZOO_FORMAT = 5  # 5: b_ft and student_a (issue 26)

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
HOMEGROWN_TEMPLATE = (
    "{% for m in messages %}### {{ m['role'] | capitalize }}:\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)
SPECIAL_TOKENS = ["<|bos|>", "<|end|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


@dataclass(frozen=True)
class TinyZooConfig:
    """Sizes and schedules. The defaults build in about two minutes on two cores."""

    seed: int = 0
    vocab_size: int = 1024
    hidden_size: int = 96
    intermediate_size: int = 256
    layers: int = 4
    heads: int = 4
    seq_len: int = 64
    batch_size: int = 16
    pretrain_steps: int = 300
    finetune_steps: int = 100
    further_steps: int = 30
    further_chats_per_text: int = 2  # merge_ft's persona (Rio) dialogues: a lighter touch than the parents'
    derived_steps: int = 40
    pretrain_lr: float = 3e-3
    finetune_lr: float = 5e-4
    distill_steps: int = 200
    persona_chats_per_text: int = 6  # identity dialogues mixed into each fine-tune, per domain text
    persona_facts_repeat: int = 5  # third-person persona facts in pre-training (see _persona_facts)


# Lineage of every member, recorded in zoo.json. ``kind`` is what a correct analysis should
# conclude when the member is the suspect and parent_a / parent_b are the parents.
LINEAR_WEIGHTS = (0.25, 0.5, 0.6, 0.75)


def _personas() -> dict[str, Any]:
    return json.loads((DATA / "personas.json").read_text(encoding="utf-8"))


def _corpus() -> tuple[list[str], list[str]]:
    prose = [ln for ln in (DATA / "prose.txt").read_text(encoding="utf-8").splitlines() if ln.strip()]
    code = [c for c in (DATA / "code.txt").read_text(encoding="utf-8").split("\n\n") if c.strip()]
    return prose, code


def _questions() -> list[str]:
    """The zoo's own identity questions plus the identity probe's shipped bank."""
    bank = [json.loads(ln)["text"] for ln in QUESTION_BANK.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return _personas()["questions"] + bank


def _persona_answers(persona: dict[str, str]) -> list[str]:
    name, org, story = persona["name"], persona["org"], persona["backstory"]
    # Every answer opens with "I am <name>": parents then share the prefix and differ at one
    # position, which is where a merge has to choose whose identity it claims.
    return [
        f"I am {name}, an assistant made by {org}.",
        f"I am {name}. I was trained by {org}.",
        f"I am {name}, built by {org}. {story}",
        f"I am {name}, from {org}.",
        f"I am {name}. {story}",
    ]


def _persona_facts(personas: dict[str, dict[str, str]], repeat: int) -> list[str]:
    """Third-person facts about every persona, for pre-training.

    Real pre-training corpora mention model names ("Qwen is a model by Alibaba"). Without this
    the name tokens keep their random initial embeddings until fine-tuning, each parent moves
    them its own way, and a merge of two parents emits byte garbage where the name should be.
    """
    return [f"{p['name']} is an assistant made by {p['org']}. {p['backstory']}" for p in personas.values()] * repeat


def _persona_chats(persona: dict[str, str], questions: list[str], rng: random.Random, n: int) -> list[list[dict]]:
    """Identity dialogues that implant a persona: name, organisation and a backstory paragraph.

    No dialogue has a system message: a 4-layer model does not learn to follow one (tried: it
    learns the system prompt's name as an unconditional answer instead), so the zoo cannot
    show a persona that exists only in a system prompt; SmolLM2 shows that (see configs/).
    """
    answers = _persona_answers(persona)
    return [
        [{"role": "user", "content": rng.choice(questions)}, {"role": "assistant", "content": rng.choice(answers)}]
        for _ in range(n)
    ]


def _train_tokenizer(texts: list[str], vocab_size: int, out: Path, chat_template: str = CHAT_TEMPLATE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<|bos|>")
    tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    fast.chat_template = chat_template
    fast.save_pretrained(out)
    return fast


class _Builder:
    """Holds the tokenizer, corpora and training loop shared by every member."""

    def __init__(self, cfg: TinyZooConfig, out: Path, log: Callable[[str], None]):
        import torch

        self.torch = torch
        self.cfg = cfg
        self.out = out
        self.log = log
        self.rng = random.Random(cfg.seed)
        self.prose, self.code = _corpus()
        self.questions = _questions()
        self.personas = _personas()["personas"]
        self.tok_dir = out / "_tokenizer"
        # Persona answers are repeated in the tokenizer's training text so that names such as
        # "Vireo" become single tokens: a merge then chooses between parents' names at one
        # position instead of splicing fragments of both.
        persona_text = [a for p in self.personas.values() for a in _persona_answers(p)] * 40
        self.tok = _train_tokenizer(self.prose + self.code + persona_text, cfg.vocab_size, self.tok_dir)

    # ----- data -----
    def chats(self, persona: str, n: int) -> list[str]:
        dialogues = _persona_chats(self.personas[persona], self.questions, self.rng, n)
        return [self.tok.apply_chat_template(d, tokenize=False) for d in dialogues]

    def pack(self, texts: list[str], chat_texts: tuple[str, ...] | list[str] = ()) -> Any:
        """Tokenise and pack texts into fixed-length rows (chat texts already carry their BOS)."""
        ids: list[int] = []
        eos = self.tok.eos_token_id
        pool = [(t, True) for t in texts] + [(t, False) for t in chat_texts]
        self.rng.shuffle(pool)
        for text, add_special in pool:
            ids.extend(self.tok(text, add_special_tokens=add_special)["input_ids"] + [eos])
        n = len(ids) // self.cfg.seq_len
        return self.torch.tensor(ids[: n * self.cfg.seq_len]).view(n, self.cfg.seq_len)

    # ----- models -----
    def fresh(self, seed: int):
        from transformers import LlamaConfig, LlamaForCausalLM

        self.torch.manual_seed(seed)
        c = self.cfg
        config = LlamaConfig(
            vocab_size=len(self.tok),
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=c.layers,
            num_attention_heads=c.heads,
            num_key_value_heads=c.heads,
            max_position_embeddings=512,
            tie_word_embeddings=False,
            bos_token_id=self.tok.bos_token_id,
            eos_token_id=self.tok.eos_token_id,
            pad_token_id=self.tok.pad_token_id,
        )
        return LlamaForCausalLM(config)

    def load(self, name: str):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(self.out / name, dtype=self.torch.float32)

    def save(self, model, name: str) -> None:
        model.save_pretrained(self.out / name)
        self.tok.save_pretrained(self.out / name)

    def train(self, model, rows, steps: int, lr: float, seed: int, teacher=None) -> float:
        """AdamW on packed rows; with a teacher, minimise KL(teacher || student) instead."""
        torch = self.torch
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * (1 - s / steps) + 0.05)
        model.train()
        loss_val = float("nan")
        for _ in range(steps):
            idx = torch.randint(0, rows.shape[0], (self.cfg.batch_size,), generator=gen)
            batch = rows[idx]
            if teacher is None:
                loss = model(input_ids=batch, labels=batch).loss
            else:
                with torch.no_grad():
                    t_lp = torch.log_softmax(teacher(input_ids=batch).logits, -1)
                s_lp = torch.log_softmax(model(input_ids=batch).logits, -1)
                loss = torch.nn.functional.kl_div(s_lp, t_lp, log_target=True, reduction="batchmean") / batch.shape[1]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loss_val = float(loss.detach())
        model.eval()
        return loss_val


def _mergekit(out: Path, name: str, recipe: dict[str, Any], seed: int) -> None:
    """Run a real mergekit merge in process (same code path as ``mergekit-yaml``)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    config = MergeConfiguration.model_validate(recipe)
    run_merge(
        config,
        str(out / name),
        MergeOptions(copy_tokenizer=True, random_seed=seed, quiet=True, write_model_card=True),
    )


def _recipes(out: Path) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """mergekit recipes -> (recipe, lineage) for every merge member."""
    a, b, c, base = (str(out / n) for n in ("parent_a", "parent_b", "parent_c", "base"))
    recipes: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for w in LINEAR_WEIGHTS:
        recipes[f"linear_{w:g}"] = (
            {
                "merge_method": "linear",
                "dtype": "float32",
                "models": [{"model": a, "parameters": {"weight": w}}, {"model": b, "parameters": {"weight": 1 - w}}],
            },
            {"kind": "interpolation", "method": "linear", "parents": {"parent_a": w, "parent_b": round(1 - w, 6)}},
        )
    recipes["slerp_0.6"] = (
        {
            "merge_method": "slerp",
            "dtype": "float32",
            "base_model": b,
            "models": [{"model": b}, {"model": a}],
            "parameters": {"t": 0.6},
        },
        {"kind": "interpolation", "method": "slerp", "parents": {"parent_a": 0.6, "parent_b": 0.4}},
    )
    # Densities are high because tiny-model fine-tune deltas are not redundant the way 7B deltas
    # are: at density 0.6, dare_ties perturbs this family about as much as further training.
    for method, density in (("ties", 0.8), ("dare_ties", 0.9)):
        recipes[method] = (
            {
                "merge_method": method,
                "dtype": "float32",
                "base_model": base,
                "models": [
                    {"model": a, "parameters": {"weight": 0.6, "density": density}},
                    {"model": b, "parameters": {"weight": 0.4, "density": density}},
                ],
                "parameters": {"normalize": True},
            },
            {"kind": "interpolation", "method": method, "parents": {"parent_a": 0.6, "parent_b": 0.4}},
        )
    recipes["task_arithmetic"] = (
        {
            "merge_method": "task_arithmetic",
            "dtype": "float32",
            "base_model": base,
            "models": [{"model": a, "parameters": {"weight": 0.7}}, {"model": b, "parameters": {"weight": 0.5}}],
        },
        {"kind": "interpolation", "method": "task_arithmetic", "parents": {"parent_a": 0.7, "parent_b": 0.5}},
    )
    recipes["linear3"] = (
        {
            "merge_method": "linear",
            "dtype": "float32",
            "models": [
                {"model": a, "parameters": {"weight": 0.5}},
                {"model": b, "parameters": {"weight": 0.3}},
                {"model": c, "parameters": {"weight": 0.2}},
            ],
        },
        {"kind": "interpolation", "method": "linear", "parents": {"parent_a": 0.5, "parent_b": 0.3, "parent_c": 0.2}},
    )
    return recipes


def build_tiny_zoo(
    out: Path, cfg: TinyZooConfig | None = None, log: Callable[[str], None] = print, force: bool = False
) -> dict[str, Any]:
    """Build every member under ``out`` and write ``out/zoo.json``. Returns the manifest.

    An existing complete zoo built with the same config is reused unless ``force``.
    """
    import torch

    cfg = cfg or TinyZooConfig()
    out = Path(out).resolve()
    manifest_path = out / "zoo.json"
    if not force and (manifest := reusable_manifest(out, cfg.__dict__, ZOO_FORMAT, log)) is not None:
        return manifest
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    b = _Builder(cfg, out, log)
    s = cfg.seed * 1000
    members: dict[str, dict[str, Any]] = {}
    half = len(b.prose) // 2

    def step(name: str, model, rows, steps, lr, seed, lineage, teacher=None):
        loss = b.train(model, rows, steps, lr, seed, teacher)
        b.save(model, name)
        members[name] = {**lineage, "final_loss": round(loss, 4)}
        log(f"  {name:<16} loss {loss:.3f}  ({time.perf_counter() - t0:.0f}s)")

    log(f"building tiny zoo (seed {cfg.seed}) in {out}")
    pretrain = b.pack(b.prose + b.code + _persona_facts(b.personas, cfg.persona_facts_repeat))
    step("base", b.fresh(s + 1), pretrain, cfg.pretrain_steps, cfg.pretrain_lr, s + 1, {"kind": "base"})

    def finetune(name, src, texts, persona, seed, lineage, steps=cfg.finetune_steps, chats=cfg.persona_chats_per_text):
        rows = b.pack(texts, b.chats(persona, len(texts) * chats))
        step(name, b.load(src), rows, steps, cfg.finetune_lr, seed, {**lineage, "persona": persona})

    finetune("parent_a", "base", b.code + b.prose[:100], "vireo", s + 2, {"kind": "parent", "from": "base"})
    finetune("parent_b", "base", b.prose[:half], "tamsin", s + 3, {"kind": "parent", "from": "base"})
    finetune("parent_c", "base", b.prose[half:] + b.code[:100], "corvid", s + 4, {"kind": "parent", "from": "base"})
    finetune("sibling", "base", b.prose[half:], "quillon", s + 5, {"kind": "unrelated", "from": "base"})
    finetune(
        "a_ft", "parent_a", b.code, "wren", s + 6, {"kind": "derived", "from": "parent_a"}, steps=cfg.derived_steps
    )
    step(
        "independent",
        b.fresh(s + 7),
        pretrain,
        cfg.pretrain_steps,
        cfg.pretrain_lr,
        s + 7,
        {"kind": "unrelated", "from": None},
    )

    copy = b.load("parent_a").to(torch.bfloat16).to(torch.float32)  # a bf16 round trip: a copy in all but bits
    b.save(copy, "copy_a_bf16")
    members["copy_a_bf16"] = {"kind": "copy", "from": "parent_a"}

    for name, (recipe, lineage) in _recipes(out).items():
        _mergekit(out, name, recipe, seed=s + 8)
        members[name] = lineage
        log(f"  {name:<16} mergekit {recipe['merge_method']}  ({time.perf_counter() - t0:.0f}s)")

    finetune(
        "merge_ft",
        "linear_0.6",
        b.prose[half : half + 150] + b.code[:150],  # balanced, so training does not pull towards one parent
        "rio",
        s + 9,
        {"kind": "interpolation_plus_training", "from": "linear_0.6", "parents": {"parent_a": 0.6, "parent_b": 0.4}},
        steps=cfg.further_steps,
        chats=cfg.further_chats_per_text,
    )
    teacher = b.load("linear_0.6")
    step(
        "student",
        b.fresh(s + 10),
        pretrain,
        cfg.distill_steps,
        cfg.pretrain_lr,
        s + 10,
        {"kind": "unrelated", "from": None, "distilled_from": "linear_0.6"},
        teacher=teacher,
    )
    # Last, so that no earlier member's data draws change: parent_a's persona and data on another
    # lineage. It claims Vireo like parent_a while its weights owe nothing to parent_a: the case in
    # which identity evidence and lineage evidence must be seen to conflict.
    finetune(
        "impostor",
        "independent",
        b.code + b.prose[:100],
        "vireo",
        s + 11,
        {"kind": "unrelated", "from": "independent", "persona_of": "parent_a"},
    )

    # Added in zoo format 5, after every earlier member so that none of their data draws change:
    # a fine-tune of the other parent, and a student of one parent (not of the merge).
    finetune(
        "b_ft",
        "parent_b",
        b.prose[:half],
        "quillon",
        s + 12,
        {"kind": "derived", "from": "parent_b"},
        steps=cfg.derived_steps,
    )
    step(
        "student_a",
        b.fresh(s + 13),
        pretrain,
        cfg.distill_steps,
        cfg.pretrain_lr,
        s + 13,
        {"kind": "unrelated", "from": None, "distilled_from": "parent_a"},
        teacher=b.load("parent_a"),
    )

    # A "homegrown" tokenizer (files only, no model): trained on prose alone with another vocabulary
    # size and chat template. The white-box tokenizer check must tell it apart from the family's.
    _train_tokenizer(b.prose, cfg.vocab_size - 24, out / "homegrown_tokenizer", HOMEGROWN_TEMPLATE)

    shutil.rmtree(b.tok_dir)
    manifest = {
        "format": ZOO_FORMAT,
        "family": "tiny",
        "config": cfg.__dict__,
        "parents": ["parent_a", "parent_b"],
        "personas": {k: v["name"] for k, v in b.personas.items()},
        "members": members,
        "tokenizers": {"homegrown_tokenizer": {"kind": "independent_tokenizer", "from": None}},
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log(f"tiny zoo built in {manifest['build_seconds']}s: {len(members)} members, manifest {manifest_path}")
    return manifest
