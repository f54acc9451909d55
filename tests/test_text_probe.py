"""Evidence from text alone (issue 17) on the tiny zoo: the suspects and controls are only asked
for sampled answers (no log-probs); the parents score those answers. Truths from zoo.json.

Also the type-I error of the copy test by simulation: a parent against its re-rounded copy, so
"same model" is true; the prompt-stratified test against the unstratified one (labels permuted
across prompts), on a balanced design and on one where the two models' answers are spread
differently over the prompts (as after failed or rate-limited requests).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.analyze import run_records
from harness.cli import main
from probes.text import analysis, equality, likelihood
from probes.text.probe import TextInterpolationProbe
from tests.conftest import case_block
from tests.test_logit_zoo import run_suite, zoo_for_seed

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "configs" / "text-tiny.yaml"


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("text")
    zoo = zoo_for_seed(0)
    ev = run_suite(tmp, zoo, None, None, SUITE)["text_interpolation"]
    return {"ev": ev, "zoo": zoo, "tmp": tmp}


def test_merge_weights_from_text_alone_and_no_control_is_a_merge(text_run):
    ev, zoo = text_run["ev"], text_run["zoo"]
    truth = json.loads((zoo / "zoo.json").read_text())["members"]
    per = ev["per_model"]
    for m in ("linear_0.25", "linear_0.6", "linear_0.75"):
        a = per[m]["weights"]["parent_a"]["value"]
        assert abs(a - truth[m]["parents"]["parent_a"]) <= 0.1, (m, per[m]["weights"])
        assert per[m]["cv_p"] < 0.05, (m, per[m]["reasons"])  # the interpolation beats either parent alone
        assert per[m]["verdict"] == "interpolation", (m, per[m]["reasons"])
    controls = [m for m, r in per.items() if r["role"] == "control"]
    assert len(controls) == 6
    for c in controls:
        assert per[c]["verdict"] != "interpolation", (c, per[c]["reasons"])
    # Issue 26: a fine-tune of either parent is no merge (at 4 answers per prompt b_ft met the
    # rule, fit p 0.07, and withdrew every merge's verdict as a control), and the models of their
    # own initialisation are further from the parents than the parents are from each other.
    for ft in ("a_ft", "b_ft"):
        assert per[ft]["fit_p"] < 0.05, (ft, per[ft]["reasons"])
    for own in ("independent", "student", "impostor"):
        assert per[own]["excess"]["lo"] > per[own]["parents_excess"], (own, per[own]["reasons"])
    for m in ("linear_0.25", "linear_0.6", "linear_0.75"):
        assert per[m]["excess"]["hi"] < per[m]["parents_excess"], (m, per[m]["reasons"])
    # The sibling fine-tune of the parents' base fits an interpolation with a significant gain;
    # the information-matrix test is what tells it from a merge.
    assert per["sibling"]["cv_p"] < 0.05 and per["sibling"]["fit_p"] < 0.05, per["sibling"]["reasons"]
    assert per["copy_a_bf16"]["verdict"] == "copy" and per["copy_a_bf16"]["parent"] == "parent_a"
    # Every model was sampled in process, so every answer is scored as the tokens it sampled, and
    # each parent fitted on its own answers comes back as itself, at the sampling temperature.
    for row in ev["tables"]["cost"]:
        assert row["scored_as_sampled"] == row["scored_answers"] > 0, row
    for row in ev["tables"]["self_check"]:
        assert row["weight_on_itself"]["value"] > 0.95 and abs(row["temperature"]["value"] - 1) < 0.05, row
    report = (text_run["tmp"] / "results" / "r" / "report.md").read_text()
    assert "Self-check" in report and "fitted jointly" in report and "Cost (answers and tokens" in report
    # Issue 26 item 4: the text probe takes part in the case. A suspect with text-only evidence is
    # no longer "not determined": its conclusion names the merge, and the student's imitation of
    # one that text cannot rule out; never a claim about weights text cannot see.
    block = case_block(report, "linear_0.6")
    conclusion = re.search(r"\*\*Conclusion: (.*)\.\*\*", block)
    assert conclusion and "a merge of the parents" in conclusion.group(1), block[:400]
    assert "distilled from the parents" in conclusion.group(1) and "not determined" not in block
    print("\n" + "\n".join(f"{m}: {r['verdict']}; {r['reasons'][0]}" for m, r in per.items()))


def test_the_estimate_counts_both_stages(text_run, capsys):
    """`run --estimate`: samples from every model in stage one; in stage two each parent scores every
    model's answers (at most prompts x samples per model: empty and repeated answers are not sent)."""
    tmp = text_run["tmp"]
    capsys.readouterr()
    assert main(["run", str(tmp / "suite.yaml"), "--estimate"]) == 0
    printed = int(re.search(r"estimate: (\d+) requests", capsys.readouterr().out).group(1))
    models, prompts, samples = 12, 32, 8
    assert printed == models * prompts + 2 * models * prompts * samples
    events = [json.loads(x) for x in (tmp / "results" / "r" / "run.jsonl").read_text().splitlines()]
    sent = next(e for e in events if e["event"] == "collect_end")["requests"]
    assert models * prompts < sent <= printed
    print(f"\nestimate {printed} requests (upper bound), sent {sent}")


def _scored_features(run_dir: Path, models: list[str]) -> dict[str, list[np.ndarray]]:
    """Per model, per prompt: its answers' parent-scored features, from a finished run."""
    probe, records, cache = run_records(run_dir)
    assert isinstance(probe, TextInterpolationProbe)
    parents = ["parent_a", "parent_b"]
    samples, scores = analysis.answers(records, parents)
    out = {}
    for m in models:
        scored = analysis.scored_answers(samples[m], scores, parents)
        out[m] = [analysis.features(scored[pid]) for pid in sorted(scored)]
    cache.close()
    return out


def test_type_one_error_of_the_copy_test_stratified_and_not(tmp_path: Path):
    """200 repetitions of parent_a against its re-rounded copy (the same model): each draws 4
    answers per prompt and model, without replacement, from 48 sampled per prompt. Stratified:
    rejection rate within [0.02, 0.08] at alpha 0.05 on both designs. Unstratified: on the
    unbalanced design (one model 6 answers on even prompts and 2 on odd, the other the reverse)
    prompt differences read as model differences and it rejects far too often."""
    zoo = zoo_for_seed(0)
    suite = yaml.safe_load(SUITE.read_text())
    suite["models"] = [m for m in suite["models"] if m["name"] in ("parent_a", "parent_b", "copy_a_bf16")]
    suite["probes"][0]["params"] |= {"prompts": 16, "samples": 48, "bootstrap": 20, "cv_splits": 5}
    for m in suite["models"]:
        m["path"] = str(zoo / Path(m["path"]).name)
    suite |= {"output_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache")}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--run-id", "r"]) == 0
    feats = _scored_features(tmp_path / "results" / "r", ["parent_a", "copy_a_bf16"])
    rng = np.random.default_rng(17)
    reps, alpha = 200, 0.05
    rejected = {
        k: 0
        for k in ("stratified balanced", "stratified unbalanced", "unstratified balanced", "unstratified unbalanced")
    }
    for _ in range(reps):
        for design in ("balanced", "unbalanced"):
            a, b = [], []
            for j, (fa, fb) in enumerate(zip(feats["parent_a"], feats["copy_a_bf16"])):
                na, nb = (4, 4) if design == "balanced" else ((6, 2) if j % 2 == 0 else (2, 6))
                a.append(fa[rng.choice(len(fa), na, replace=False)])
                b.append(fb[rng.choice(len(fb), nb, replace=False)])
            rejected[f"stratified {design}"] += equality.stratified_test(a, b, rng, 199)[1] < alpha
            rejected[f"unstratified {design}"] += equality.unstratified_test(a, b, rng, 199)[1] < alpha
    rate = {k: v / reps for k, v in rejected.items()}
    print(f"\ntype-I error at alpha {alpha}, {reps} repetitions: {rate}")
    assert 0.02 <= rate["stratified balanced"] <= 0.08, rate
    assert 0.02 <= rate["stratified unbalanced"] <= 0.08, rate
    # The tiny zoo's answers hardly depend on the prompt (prompts explain 2-3% of the features'
    # variance), so here the unstratified test is not hurt: measured and printed, not asserted.


def test_why_stratify_when_prompts_shape_the_answers():
    """The same designs where prompts explain half of the features' variance (a real model's
    answers depend on the prompt): features drawn from a known model, prompt effect plus answer
    noise, identical for both "models" (the null is true by construction). The stratified test
    keeps its level; the unstratified one rejects more than twice as often as it should."""
    rng = np.random.default_rng(5)
    reps, alpha, prompts = 200, 0.05, 16
    rejected = {"stratified": 0, "unstratified": 0}
    for _ in range(reps):
        effect = rng.normal(0, 1, (prompts, 2))
        a, b = [], []
        for j in range(prompts):
            na, nb = (6, 2) if j % 2 == 0 else (2, 6)
            a.append(effect[j] + rng.normal(0, 1, (na, 2)))
            b.append(effect[j] + rng.normal(0, 1, (nb, 2)))
        rejected["stratified"] += equality.stratified_test(a, b, rng, 199)[1] < alpha
        rejected["unstratified"] += equality.unstratified_test(a, b, rng, 199)[1] < alpha
    rate = {k: v / reps for k, v in rejected.items()}
    print(f"\ntype-I error with a prompt effect, unbalanced design, {reps} repetitions: {rate}")
    assert 0.02 <= rate["stratified"] <= 0.08, rate
    assert rate["unstratified"] > 2 * alpha, rate  # 0.17 measured: over 3 binomial SDs above 0.05


def test_fit_test_keeps_its_level_on_a_true_interpolation():
    """The information-matrix test of the fitted interpolation, on samples drawn from a known
    geometric interpolation (random parents sharing a base, weights 0.6 / 0.4, T = 1, 24 prompts
    x 60 tokens): the null is true by construction, so at alpha 0.05 it rejects within [0.02,
    0.08] of 200 repetitions. Samples from a third model off the same base (a sibling, twice as
    far from it as the parents) are rejected most of the time (0.70 measured)."""
    rng = np.random.default_rng(0)

    def draw(sibling: bool) -> list[likelihood.TokenData]:
        data = []
        for _ in range(24):
            base = rng.normal(0, 2, (60, 100))
            logp = [base + rng.normal(0, 1, base.shape) for _ in range(2)]
            logp = [z - np.logaddexp.reduce(z, axis=1, keepdims=True) for z in logp]
            z = base + rng.normal(0, 2, base.shape) if sibling else 0.6 * logp[0] + 0.4 * logp[1]
            q = np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))
            x = (q.cumsum(axis=1) < rng.random((60, 1))).sum(axis=1)
            support = np.stack(logp, axis=-1)
            data.append(likelihood.TokenData(support[np.arange(60), x], support, np.ones((60, 100))))
        return data

    def rate(sibling: bool, reps: int) -> float:
        rejected = 0
        for _ in range(reps):
            data = draw(sibling)
            rejected += likelihood.fit_test(likelihood.fit(data), data).p < 0.05
        return rejected / reps

    null, sibling = rate(False, 200), rate(True, 40)
    print(f"\ninformation-matrix test at alpha 0.05: {null:.3f} on a true interpolation, {sibling:.3f} on a sibling")
    assert 0.02 <= null <= 0.08
    assert sibling > 0.4


def test_answers_further_from_the_parents_than_they_are_from_each_other_are_no_merge():
    """Issue 26: a model of its own initialisation met the interpolation rule on the tiny zoo's
    seed 2 (32 prompts x 8 answers; its figures below, as measured): weights inside the margins,
    a significant held-out gain and a fit test that does not reject. The parents find its answers
    0.503 [0.443, 0.576] nats/token less likely than their own, but each other's only 0.314 less
    likely (the yardstick, ``parents_excess``): the interpolation explains it worse than the
    parents explain each other, so it is no mixture of them. Before the yardstick it read
    "interpolation", and as a control it withdrew every merge's verdict. The merge of the same run
    (linear_0.6: excess 0.161 [0.100, 0.220]) keeps it."""
    from harness.evidence import Interval
    from probes.text.result import Equality, TextResult
    from probes.text.verdict import decide

    def result(weight: Interval, excess: Interval, fit_p: float) -> TextResult:
        return TextResult(
            role="control",
            prompts=32,
            samples=256,
            tokens=7000,
            weights={
                "parent_a": weight,
                "parent_b": Interval(value=1 - weight.value, lo=1 - weight.hi, hi=1 - weight.lo),
            },
            temperature=Interval(value=1.13, lo=1.11, hi=1.15),
            sampling_temperature=1.0,
            nll=5.1,
            excess=excess,
            excess_p=1e-9,
            parents_excess=0.314,
            cv_gain=0.0317,
            cv_p=4.8e-08,
            fit_statistic=5.2,
            fit_df=3,
            fit_p=fit_p,
            equality={
                x: Equality(statistic=0.1, p=0.001, p_adjusted=0.002, p_unstratified=0.001)
                for x in ("parent_a", "parent_b")
            },
        )

    independent = result(Interval(value=0.449, lo=0.387, hi=0.519), Interval(value=0.503, lo=0.443, hi=0.576), 0.175)
    verdict, _, reasons = decide(independent, 0.05, 0.05)
    assert verdict == "inconclusive", reasons
    assert "not within their distance from each other (0.314" in reasons[-1]
    merge = result(Interval(value=0.619, lo=0.590, hi=0.653), Interval(value=0.161, lo=0.100, hi=0.220), 0.726)
    verdict, _, reasons = decide(merge, 0.05, 0.05)
    assert verdict == "interpolation", reasons
    # An own initialisation with its weight at a parent (an impostor trained on its data) is not
    # "derived" from it either.
    impostor = result(Interval(value=0.97, lo=0.92, hi=1.0), Interval(value=0.585, lo=0.510, hi=0.666), 0.0)
    assert decide(impostor, 0.05, 0.05)[0] == "inconclusive"
