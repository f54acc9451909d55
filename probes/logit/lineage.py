"""The lineage signal: do the suspect and a parent share weights, or only behaviour?

Why: a model distilled from the parents into its own initialisation imitates them where it was
trained (natural text), and there its log-probs can sit as close to a parent as a fine-tune's
do (DESIGN.md, "Lineage is not likeness"). What imitation does not carry over is what training
never touched: the response to inputs with no task in them. Those keep the initialisation's
fingerprint through fine-tuning and merging (the idea behind SeedPrints-style lineage tests),
so a model that inherits weights stays as close to its parent there as on natural text, while
a model with its own initialisation falls away.

The inputs (:func:`task_free_items`) are built from the shipped corpus with a fixed seed, so
every model sees the same strings in every mode and the cache key is stable:

* ``shuffled``: a corpus text with its words in random order (no syntax, the same words);
* ``salad``: words drawn uniformly from the whole corpus vocabulary, every language mixed
  (rare words as often as common ones: rare-token contexts);
* ``chars``: random strings of letters, digits, punctuation and the corpus's CJK characters
  (they tokenise into near-random token sequences).

The verdict reads one statistic (:func:`weight_descent`): the model's distance to its nearest
parent on these inputs, in units of the parents' own distance on the same inputs, with a
cluster-bootstrap CI over inputs. The distance is the RMS difference of the **actual token's
log-prob** at every position (:func:`token_gram`). Why that number: it is normalised over the
whole vocabulary, and every teacher-forced mode reports it exactly (full, top-k, compact full, an
API's echoed prompt log-probs), so the signal reads the same in every one of them. On task-free
inputs the actual token is mostly one no model ranks highly, so the number measures the tail of
the distribution, which imitation of the head does not reproduce. A distance over the tokens
every model ranks highest (the top-k head, centred) does not have that property: a good
imitator reproduces the head (tiny zoo seed 2, top-20: a student of parent_a sat at 0.93, CI
0.89-0.97, from it, inside the parents' own distance).

The yardstick comes from the data: relatives that inherited weights stay within the parents'
own distance of a parent, an initialisation of its own sits beyond it. Measured (the same
numbers in full and top-20 data; tiny zoo seeds 0, 1, 2, 24 inputs): merges 0.25-0.80 (merge
trained further 0.71-0.80), fine-tunes of a parent 0.72-0.85 (CI upper at most 0.94), the
sibling 0.89-1.11 (CI 0.79-1.24), students distilled into their own initialisation 3.75-6.03 (CI
lower at least 2.92), the impostor 2.06-2.45 (at least 1.87), the independent model 6.17-9.34.
Smol family (full vocabulary, `hf`): the merge 0.49, the merge trained further 0.27, the sibling
0.67, the fine-tune of nex_mini 0.57, the student 5.43 (CI 4.52-6.41), the impostor 5.11 (4.41-5.89).

Beside it the report gives the **excess**, log(task-free distance / natural-text distance),
per parent, both on the actual tokens' log-probs, and for two parents the **task-free residual**
off the parents' line and the **position** on it (:func:`line_fit`).
None of them decides. The residual was measured to see whether task-free inputs could rule a
merge out where next-token data cannot (tiny zoo, seeds 0-2): linear, slerp and ties merges
0.09-0.29, dare_ties 0.44-0.48, task arithmetic 0.59-0.70, the merge trained further 0.56-0.65,
fine-tunes of a parent 0.71-0.85, the sibling 0.81-1.01. The last four overlap, so no rule reads it.

These inputs are always scored teacher-forced, never sent as chat messages: the first token of
an answer after a chat template is exactly what training shaped (tiny zoo: fine-tunes of a
parent sat 1.07-1.10 parents' distances away there, a merge 1.08). In next-token mode they are
scored where the backend can score a prompt (vLLM, llama.cpp, in process); a backend that only
chats gives no lineage signal.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from harness.backends.base import ScoreResult
from harness.data import Item
from harness.evidence import Interval
from probes.shared.corpus import CORPUS

KINDS = ("shuffled", "salad", "chars")
PREFIX = "taskfree-"  # item ids: kept apart from natural texts in analysis
SEED = 20260604  # fixed: the inputs are part of the probe's definition, not of a run
WORDS_PER_INPUT = 40


@lru_cache(maxsize=4)
def _corpus_texts() -> tuple[str, ...]:
    with CORPUS.open(encoding="utf-8") as f:
        return tuple(json.loads(line)["text"] for line in f if line.strip())


def task_free_items(n: int) -> list[Item]:
    """``n`` task-free inputs, the three kinds in turn; deterministic (a prefix when ``n`` grows)."""
    texts = _corpus_texts()
    words = sorted({w for t in texts for w in t.split()})
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    out: list[Item] = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        rng = random.Random(f"{SEED}:{i}")  # one stream per input: a prefix stays a prefix
        if kind == "shuffled":
            picked: list[str] = []
            while len(picked) < WORDS_PER_INPUT:  # whole texts, concatenated, then shuffled
                picked += texts[rng.randrange(len(texts))].split()
            rng.shuffle(picked)
            text = " ".join(picked[:WORDS_PER_INPUT])
        elif kind == "salad":
            text = " ".join(rng.choice(words) for _ in range(WORDS_PER_INPUT))
        else:
            text = " ".join(
                "".join(rng.choice(chars) for _ in range(rng.randint(2, 7))) for _ in range(WORDS_PER_INPUT)
            )
        out.append(Item(f"{PREFIX}{i:03d}", text, f"task-free:{kind}"))
    return out


def is_task_free(item_id: str) -> bool:
    return item_id.startswith(PREFIX)


def token_gram(results: Sequence[ScoreResult]) -> np.ndarray | None:
    """(M*M,) Gram of the actual tokens' log-probs of one input, models in ``results`` order, or
    None when the models tokenise it differently. Not centred: the log-prob of the token that
    follows is already normalised over the whole vocabulary. Positions any model gives no finite
    log-prob are left out."""
    tokens = [r.token_ids for r in results]
    if any(not np.array_equal(t, tokens[0]) for t in tokens[1:]):
        return None
    lp = np.stack([np.asarray(r.token_logprobs, dtype=float) for r in results], axis=1)
    lp = lp[np.isfinite(lp).all(axis=1)]
    return (lp.T @ lp).ravel()


def pair_distances(gram: np.ndarray) -> np.ndarray:
    """(..., M, M) summed Gram of centred log-probs -> (..., M, M) squared distances."""
    d = np.diagonal(gram, axis1=-2, axis2=-1)
    return d[..., :, None] + d[..., None, :] - 2 * gram


def relative_distances(gram: np.ndarray) -> np.ndarray:
    """(..., M, M) Gram with the subject in column 0 and the parents after it -> (..., k) the
    subject's RMS distance to each parent, in units of the parents' mean pairwise distance."""
    d2 = pair_distances(gram)
    k = gram.shape[-1] - 1
    pairs = [(i, j) for i in range(1, k + 1) for j in range(i + 1, k + 1)]
    scale = np.mean([d2[..., i, j] for i, j in pairs], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.maximum(d2[..., 0, 1:], 0.0) / scale[..., None])


def line_fit(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3, 3) Gram of [subject, parent 1, parent 2] -> (position, residual), each (...,):
    where the subject's projection falls on the line through the parents, as parent 1's weight
    (1 at parent 1, 0 at parent 2), and its distance from that line in units of the parents'
    distance (about 0 for a merge; the distance itself for a model that moved away from one
    parent at right angles to the other)."""
    d2 = pair_distances(gram)
    ab, s1, s2 = d2[..., 1, 2], d2[..., 0, 1], d2[..., 0, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        position = (s2 + ab - s1) / (2 * ab)
        return position, np.sqrt(np.maximum(s2 / ab - position**2, 0.0))


def excess(natural: np.ndarray, task_free: np.ndarray) -> np.ndarray:
    """log(task-free relative distance) - log(natural relative distance), per parent; both (..., k)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(task_free) - np.log(natural)


def weight_descent(tf: Interval | None, own_min: float) -> tuple[str, str]:
    """Does the model share the nearest parent's weights? ("inherited" | "own" | "undecided" |
    "absent", the reason in words), from ``tf``, its distance to that parent on the task-free
    inputs in units of the parents' own distance there.

    * **inherited**: the CI lies at or below 1: on inputs training never touched, it is no
      farther from the parent than the parents are from each other (a yardstick the data gives);
    * **own** initialisation: the CI lies above ``own_min``;
    * **undecided** between the two: a sibling fine-tuned further than the parents were sits at
      the yardstick or just past it (tiny zoo seed 0: 1.11, CI 1.01-1.24), where distance alone
      cannot say whether weights are shared, so the verdict says neither;
    * **absent**: no task-free inputs were scored.
    """
    if tf is None or tf.lo is None or tf.hi is None or not np.isfinite([tf.lo, tf.hi]).all():
        return "absent", "no task-free inputs were scored (teacher-forced modes only; params.task_free_texts)"
    nums = f"task-free distance {tf.text()} parents' distances"
    if tf.hi <= 1:
        return "inherited", f"{nums}: within the parents' own distance on inputs training never touched"
    if tf.lo > own_min:
        return "own", f"{nums}: beyond {own_min:g}, farther than relatives get on inputs training never touched"
    return "undecided", f"{nums}: between the parents' own distance (1) and {own_min:g}"
