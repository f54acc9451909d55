"""Parents from a pool: which candidates is a suspect made of? Selection with a held-out test.

Input: per-text Gram matrices of centred log-probs over [suspect, candidate_1, ...] (the same
sufficient statistics every logit fit uses). The texts are split once, at random, into a
*selection* half and a *test* half:

1. **Selection half.** For each size s = 1, 2, 3, ... the best subset of the pool (smallest
   residual of the non-negative, sum-to-one fit; exhaustive while the count of subsets is
   small, else forward from the best of size s - 1). Size s + 1 is taken over size s only if it
   predicts held-out texts better, by the same cross-validated test the verdict uses (random
   half splits inside the selection half, per-text relative gain, one-sided Wilcoxon), with
   p < alpha and a mean gain of at least the verdict's ``min_cv_gain``.
2. **Test half.** Each member of the chosen set is kept only if dropping it makes the fit
   (weights fitted on the selection half) predict the test half significantly worse
   (one-sided Wilcoxon on per-text gains, Holm-corrected across members). The test half never
   took part in choosing, so this check's error rate is what it says.
3. **Ambiguity.** Every set that swaps one member for another candidate and predicts the test
   half not significantly worse (same test) is near-equivalent, and reported with its fit: a
   parent and a light fine-tune of it, or a parent and a copy, are not told apart silently.
   Every swap is reported either way, and the report shows each member's best swap and its
   nearest relative (the candidate nearest to it), with how much worse the swap predicts and the p of
   that: the report shows that a fine-tune *was* weighed against its parent, and by how much
   the data told them apart.

The verdict on the chosen set is the logit probe's own rule, computed again with the set as the
parents (``analysis.LogitAnalysis.select_from_pool``). Each subject's pool, the candidates that
tokenise the texts as it does with their Gram matrices, is built by :func:`suspect_pools`, for
the screening (``probe.shortlist``) and the selection alike.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.backends.base import ScoreResult
from harness.stats import adjust, wilcoxon_greater
from probes.base import Record
from probes.logit.interpolation import centred, fit_simplex, sq_distance
from probes.shared.align import align, as_kind


@dataclass
class SuspectPool:
    """One subject's pool: the candidates that tokenise every text as it does (``pool``, in pool
    order), those that do not (``other_tokenisation``: no element-wise merge parent), the
    tokenisation group it belongs to (``members``) and the per-text Gram matrices over
    [subject, *pool] (``gram``, (texts, 1 + len(pool), 1 + len(pool)); None for an empty pool)."""

    subject: str
    pool: list[str]
    other_tokenisation: list[str]
    members: list[str]
    gram: np.ndarray | None


def suspect_pools(
    main: dict[str, dict[str, Record]],
    ids: list[str],
    mode: str,
    top_k: int,
    pool_all: list[str],
    subjects: list[str],
) -> dict[str, SuspectPool]:
    """Each subject's pool out of ``pool_all`` (less itself). The Gram of a tokenisation group is
    computed once, over the group's members (pool and subjects), as both callers always did: in
    top-k modes the shared support, hence the Gram, depends on who is in the group."""
    groups = tokenisation_groups(main, ids, mode, list(dict.fromkeys([*pool_all, *subjects])))
    group_of = {m: key for key, members in groups.items() for m in members}
    grams: dict[str, np.ndarray] = {}
    out: dict[str, SuspectPool] = {}
    for s in subjects:
        key = group_of[s]
        members = groups[key]
        pool = [c for c in pool_all if c != s and c in members]
        gram = None
        if pool:
            if key not in grams:
                grams[key] = pool_gram(main, ids, mode, top_k, members)
            idx = [members.index(x) for x in (s, *pool)]
            gram = grams[key][:, idx][:, :, idx]
        other = [c for c in pool_all if c != s and c not in members]
        out[s] = SuspectPool(s, pool, other, members, gram)
    return out


def tokenisation_groups(
    main: dict[str, dict[str, Record]], ids: list[str], mode: str, models: list[str]
) -> dict[str, list[str]]:
    """Models with identical token ids on every text (teacher-forced modes), in order; in
    next-token mode answers are aligned by token string, so everyone is one group."""
    if mode == "next_token":
        return {"all": models}
    groups: dict[str, list[str]] = {}
    for m in models:
        h = hashlib.sha256()
        for t in ids:
            h.update(as_kind(main[m][t].result, ScoreResult).token_ids.astype(np.int64).tobytes())
        groups.setdefault(h.hexdigest(), []).append(m)
    return groups


def pool_gram(
    main: dict[str, dict[str, Record]], ids: list[str], mode: str, top_k: int, members: list[str]
) -> np.ndarray:
    """(texts, M, M) inner products of centred log-probs of ``members`` on their shared support."""
    out = []
    for t in ids:  # one text at a time: answers are read from the cache and released
        lp, w = align([main[m][t].result for m in members], mode, top_k)
        c = centred(lp, w)
        out.append(np.einsum("pk,pkm,pkn->mn", w, c, c))
    return np.stack(out)


MAX_SIZE = 4  # a merge of more than four parents is beyond what the corpus sizes here can resolve
EXHAUSTIVE = 2000  # subsets of one size fitted exhaustively up to this count


@dataclass
class Step:
    size: int
    members: list[str]
    residual: float  # relative: |S - fit|^2 / |S - nearest single candidate|^2 on the selection half
    cv_gain: float = math.nan  # over the best set one smaller, on the selection half
    p: float = math.nan


@dataclass
class Selection:
    selected: list[str]
    steps: list[Step]
    confirmed: dict[str, float]  # member -> Holm-adjusted p of "dropping it hurts" on the test half
    removed: dict[str, str]  # member chosen on the selection half but not confirmed, with why
    equivalent: list[dict] = field(default_factory=list)  # near-equivalent sets on the test half
    # Per selected member, every swap for another candidate (best first), told apart (p_worse <
    # alpha) or not, with the candidate's distance to the member: "parent_a, not its fine-tune
    # a_ft, by a held-out loss 1.8x" is evidence too.
    swaps: dict[str, list[dict]] = field(default_factory=dict)
    n_select: int = 0
    n_test: int = 0


def _loss(g: np.ndarray, idx: list[int], w: np.ndarray) -> np.ndarray:
    """Per-text squared error of sum_i w_i C_i for S (row 0), from per-text Grams (T, M, M)."""
    cc = g[:, idx][:, :, idx]
    return g[:, 0, 0] - 2 * g[:, 0, idx] @ w + np.einsum("i,tij,j->t", w, cc, w)


def fit_set(g_sum: np.ndarray, idx: list[int]) -> tuple[np.ndarray, float]:
    """Simplex weights of the candidates ``idx`` (rows of the summed Gram) for row 0, and the residual."""
    cols = [0, *idx]
    sub = g_sum[np.ix_(cols, cols)]
    if len(idx) == 1:
        return np.ones(1), float(sq_distance(sub, 0, 1))
    w, r = fit_simplex(sub)
    return w, float(r)


def _best(g_sum: np.ndarray, pool: list[int], size: int, prev: list[int]) -> tuple[list[int], float]:
    """The subset of ``pool`` of this size with the smallest in-sample residual."""
    if math.comb(len(pool), size) <= EXHAUSTIVE:
        subsets = [list(s) for s in itertools.combinations(pool, size)]
    else:  # forward from the previous best
        subsets = [[*prev, c] for c in pool if c not in prev]
    best, best_r = subsets[0], math.inf
    for s in subsets:
        r = fit_set(g_sum, s)[1]
        if r < best_r:
            best, best_r = s, r
    return best, best_r


def _cv_gain(g: np.ndarray, small: list[int], big: list[int], rng: np.random.Generator, splits: int) -> np.ndarray:
    """Per-text relative gain of ``big`` over ``small``, each fitted on random halves and scored
    on the other half, averaged over the splits that held the text out."""
    n = g.shape[0]
    total, count = np.zeros(n), np.zeros(n)
    for _ in range(splits):
        perm = rng.permutation(n)
        train, test = perm[: n // 2], perm[n // 2 :]
        gs = g[train].sum(axis=0)
        loss_small = _loss(g[test], small, fit_set(gs, small)[0])
        loss_big = _loss(g[test], big, fit_set(gs, big)[0])
        total[test] += 1 - loss_big / np.maximum(loss_small, 1e-300)
        count[test] += 1
    return (total / np.maximum(count, 1))[count > 0]


def holdout_gain(g_sel: np.ndarray, g_test: np.ndarray, small: list[int], big: list[int]) -> np.ndarray:
    """Per-text relative gain on the test half of ``big`` over ``small``, both fitted on the selection half."""
    gs = g_sel.sum(axis=0)
    loss_small = _loss(g_test, small, fit_set(gs, small)[0])
    loss_big = _loss(g_test, big, fit_set(gs, big)[0])
    return 1 - loss_big / np.maximum(loss_small, 1e-300)


def select(
    gram: np.ndarray,
    names: list[str],
    rng: np.random.Generator,
    alpha: float,
    min_gain: float,
    splits: int = 50,
) -> Selection:
    """Choose the candidates (``names``, rows 1.. of ``gram``) that explain the suspect (row 0)."""

    n = gram.shape[0]
    perm = rng.permutation(n)
    sel, test = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    g_sel, g_test = gram[sel], gram[test]
    gs = g_sel.sum(axis=0)
    pool = list(range(1, gram.shape[1]))
    first, r1 = _best(gs, pool, 1, [])
    steps = [Step(1, [names[i - 1] for i in first], 1.0)]
    chosen = first
    for size in range(2, min(MAX_SIZE, len(pool)) + 1):
        cand, r = _best(gs, pool, size, chosen)
        gains = _cv_gain(g_sel, chosen, cand, rng, splits)
        p = wilcoxon_greater(gains)
        steps.append(Step(size, [names[i - 1] for i in cand], r / r1 if r1 > 0 else math.nan, float(np.mean(gains)), p))
        if not (p < alpha and np.mean(gains) >= min_gain):
            break
        chosen = cand
    confirmed: dict[str, float] = {}
    removed: dict[str, str] = {}
    if len(chosen) >= 2:
        ps = {i: wilcoxon_greater(holdout_gain(g_sel, g_test, [j for j in chosen if j != i], chosen)) for i in chosen}
        adjusted = dict(zip(ps, adjust(list(ps.values()), "holm")))
        for i, pa in adjusted.items():
            if pa < alpha:
                confirmed[names[i - 1]] = pa
            else:
                removed[names[i - 1]] = (
                    f"chosen on the selection half, but dropping it does not hurt on the {len(test)} held-out "
                    f"texts (Holm p {pa:.2g})"
                )
        kept = [i for i in chosen if names[i - 1] in confirmed]
        chosen = kept if len(kept) >= 2 else kept or chosen[:1]
    equivalent: list[dict] = []
    swaps: dict[str, list[dict]] = {}
    if len(chosen) >= 2:
        base_loss = _loss(g_test, chosen, fit_set(gs, chosen)[0]).sum()
        # Distances in parent-distance units: the RMS distance between the chosen members.
        pairs = list(itertools.combinations(chosen, 2))
        unit = math.sqrt(sum(float(sq_distance(gs, i, j)) for i, j in pairs) / len(pairs))
        for i in chosen:
            alts: list[dict[str, Any]] = []
            for c in pool:
                if c in chosen:
                    continue
                swap = sorted([*[j for j in chosen if j != i], c])
                worse = -holdout_gain(g_sel, g_test, chosen, swap)  # > 0 where the swap predicts worse
                loss = _loss(g_test, swap, fit_set(gs, swap)[0]).sum()
                alts.append(
                    {
                        "set": [names[j - 1] for j in swap],
                        "instead_of": names[i - 1],
                        "alternative": names[c - 1],
                        "distance": math.sqrt(max(float(sq_distance(gs, i, c)), 0.0)) / unit if unit > 0 else math.nan,
                        "held_out_loss_ratio": float(loss / base_loss) if base_loss > 0 else math.nan,
                        "p_worse": wilcoxon_greater(worse),
                    }
                )
            equivalent += [a for a in alts if a["p_worse"] >= alpha]
            swaps[names[i - 1]] = sorted(alts, key=lambda a: a["held_out_loss_ratio"])
    return Selection(
        selected=[names[i - 1] for i in chosen],
        steps=steps,
        confirmed=confirmed,
        removed=removed,
        equivalent=sorted(equivalent, key=lambda e: e["held_out_loss_ratio"]),
        swaps=swaps,
        n_select=len(sel),
        n_test=len(test),
    )


def screen_order(gram: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    """Screening: the candidates (``names``, rows 1.. of per-text Grams over a few texts) ranked
    for full scoring: the members of the best in-sample set of the largest size (MAX_SIZE) by
    weight, then those of the best set one smaller, and so on (a member given weight 0 is not
    counted as in), then the rest by distance to the suspect; each with why. No test is made
    on so few texts: the order only decides which candidates are worth full scoring. A parent
    ranks by the share it takes in the set it completes, however far it is alone (a
    nearest-candidate ranking would put every merge of the same parents first)."""
    gs = gram.sum(axis=0)
    pool = list(range(1, gram.shape[1]))
    dist = {i: float(sq_distance(gs, 0, i)) for i in pool}
    r1 = min(dist.values())
    best: dict[int, tuple[list[int], float]] = {}
    prev: list[int] = []
    for size in range(1, min(MAX_SIZE, len(pool)) + 1):
        best[size] = _best(gs, pool, size, prev)
        prev = best[size][0]
    order: dict[str, str] = {}
    for size in sorted(best, reverse=True):
        members, r = best[size]
        w = fit_set(gs, members)[0]
        for i, wi in sorted(zip(members, w), key=lambda t: -t[1]):
            if wi > 0 and names[i - 1] not in order:
                order[names[i - 1]] = (
                    f"weight {wi:.2f} in the best set of size {size} (residual {r / r1 if r1 > 0 else 0:.3f} of the "
                    "nearest candidate's)"
                )
    for i in sorted(pool, key=dist.__getitem__):
        if names[i - 1] not in order:
            ratio = math.sqrt(dist[i] / r1) if r1 > 0 else math.inf
            order[names[i - 1]] = f"in no best set; {ratio:.2f}x the nearest candidate's distance"
    return list(order.items())


def selection_row(
    s: str, sel: Any, pool: list[str], excluded: dict[str, str], min_gain: float, alpha: float
) -> dict[str, Any]:
    why = dict(excluded)
    why |= sel.removed
    step_of = {c: st for st in sel.steps for c in st.members}
    for c in pool:
        if c not in sel.selected and c not in why:
            st = step_of.get(c)
            why[c] = (
                f"in the best set of size {st.size}, which was not taken: CV gain {100 * st.cv_gain:.0f}% "
                f"(needs >= {100 * min_gain:.0f}%), p {st.p:.2g} (needs < {alpha:g}) on the selection half"
                if st is not None and st.size > len(sel.selected)
                else "in no best set: adds no out-of-sample gain"
            )
    return {
        "model": s,
        "selected": sel.selected,
        "pool": pool,
        "texts": {"selection": sel.n_select, "test": sel.n_test},
        "steps": [
            {"size": st.size, "members": st.members, "residual": st.residual, "cv_gain": st.cv_gain, "p": st.p}
            for st in sel.steps
        ],
        "confirmed_p": sel.confirmed,
        "dropped": why,
        "near_equivalent": sel.equivalent,
        "swaps": sel.swaps,
    }
