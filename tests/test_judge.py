"""Integration tests of `r1lit.judge` against a real local chat-completions server (tests/judge_server.py).

The real `openai` client talks HTTP to 127.0.0.1 only. The tests check that every item ends judged or recorded as an
error, that 429 / 500 / slow replies / invalid replies are retried within bounds, that a judge run killed midway and
restarted asks nothing twice for items it had finished, and that the API key is never written to disk."""
from __future__ import annotations

import json, os, signal, subprocess, sys, time, uuid
from pathlib import Path

import pytest

from judge_server import ScriptedJudgeServer
from r1lit.core import read_json, read_jsonl, append_jsonl

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Is the following statement true: The red square is left of the blue circle."


def responses(tags_kinds, path: Path) -> Path:
    "A responses.jsonl whose reasoning carries each item's tag and scripted behaviour."
    recs = [{"id": f"test-{tag}", "prompt": QUESTION, "text": QUESTION,
             "response": f"<think>The red square is left. [[item:{tag}]] [[script:{kind}]]</think><answer>True</answer>",
             "answer": "True", "gold": "True", "correct": True, "format_ok": True, "error": None, "seconds": 0.1,
             "relation": "left of", "split": "test"} for tag, kind in tags_kinds]
    path.parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, recs)
    return path


@pytest.fixture
def server():
    s = ScriptedJudgeServer(slow_s=2.0).start()
    yield s
    s.stop()


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "R1LIT_JUDGE_MODEL")}
    env.update(extra)
    return env


def judge_command(responses_path, out, base_url, **kw) -> list[str]:
    "`r1lit judge …` when the CLI has the subcommand, else the same call through `judge_cli`."
    from r1lit.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    if "judge" in sub.choices:
        cmd = [sys.executable, "-m", "r1lit.cli", "judge", str(responses_path), "--model", "judge-test",
               "--base-url", base_url, "--out", str(out)]
        for k, v in kw.items(): cmd += [f"--{k.replace('_', '-')}", str(v)]
        return cmd
    args = {"responses": str(responses_path), "model": "judge-test", "base_url": base_url, "out": str(out), **kw}
    return [sys.executable, "-c", "import json, sys; from r1lit.judge import judge_cli; judge_cli(**json.loads(sys.argv[1]))",
            json.dumps(args)]


SCRIPT = [("a1", "ok"), ("a2", "ok"), ("a3", "ok"), ("c1", "contradiction"), ("m1", "malformed"),
          ("m2", "malformed_once"), ("s1", "bad_schema_once"), ("r1", "429_once"), ("e1", "500_once"),
          ("e2", "500_always"), ("t1", "slow_once"), ("t2", "slow_always")]


def test_every_item_judged_or_recorded_with_retries(server, tmp_path, monkeypatch):
    from r1lit.judge import judge_cli, JUDGMENTS_FILE
    monkeypatch.setenv("OPENAI_API_KEY", "sk-r1lit-fake-" + uuid.uuid4().hex)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    resp = responses(SCRIPT, tmp_path / "eval" / "responses.jsonl")
    t0 = time.time()
    s = judge_cli(resp, model="judge-test", base_url=server.url, out=tmp_path / "judge", concurrency=4, timeout=1.0,
                  max_attempts=3, max_invalid=1, backoff=0.05, price_in=1.0, price_out=2.0, progress=False)
    took = time.time() - t0
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "judge" / JUDGMENTS_FILE)}
    # every item is accounted for: judged or recorded as an error, none dropped
    assert s["n"] == len(SCRIPT) == len(recs)
    errors = {k for k, r in recs.items() if r["error"]}
    assert errors == {"test-m1", "test-e2", "test-t2"}, {k: r["error"] for k, r in recs.items()}
    assert recs["test-m1"]["error_kind"] == "invalid_output" and recs["test-e2"]["error_kind"] == "api"
    assert "Timeout" in recs["test-t2"]["error"]
    assert (s["n_judged"], s["n_errors"]) == (9, 3)
    assert s["counts"]["contradiction"] == 1 and s["counts"]["aligns"] == 8
    assert s["misaligned"] == pytest.approx(1 / 9) and all(0 <= x <= 1 for x in s["misaligned_ci95"])
    # retries happened, and stayed within their bounds
    n_req = {tag: len(server.requests_for(tag)) for tag, _ in SCRIPT}
    assert n_req == {"a1": 1, "a2": 1, "a3": 1, "c1": 1, "m1": 2, "m2": 2, "s1": 2, "r1": 2, "e1": 2, "e2": 3,
                     "t1": 2, "t2": 3}, n_req
    r1 = server.requests_for("r1")
    assert r1[1]["t"] - r1[0]["t"] >= 0.95, "the retry after a 429 did not honour Retry-After: 1"
    assert recs["test-r1"]["type"] == "aligns" and recs["test-t1"]["type"] == "aligns"
    # usage and cost: every 200 reply carried 100 + 20 tokens; the server's count and the tally agree
    n_ok = sum(1 for e in server.log if e["status"] == 200)
    assert (s["this_run"]["prompt_tokens"], s["this_run"]["completion_tokens"]) == (100 * n_ok, 20 * n_ok)
    assert s["this_run"]["cost_usd"] == pytest.approx((100 * n_ok * 1.0 + 20 * n_ok * 2.0) / 1e6)
    assert read_json(tmp_path / "judge" / "summary.json")["n"] == len(SCRIPT)
    # a rerun that does not retry errors makes no request; one that does retries only the errors
    before = len(server.log)
    judge_cli(resp, model="judge-test", base_url=server.url, out=tmp_path / "judge", timeout=1.0, max_attempts=1,
              max_invalid=0, backoff=0.05, retry_errors=False, progress=False)
    assert len(server.log) == before
    s2 = judge_cli(resp, model="judge-test", base_url=server.url, out=tmp_path / "judge", timeout=1.0, max_attempts=1,
                   max_invalid=0, backoff=0.05, progress=False)
    assert sorted({e["item"] for e in server.log[before:]}) == ["e2", "m1", "t2"]
    assert s2["n"] == len(SCRIPT)
    print(f"scripted run: {took:.1f}s, {len(server.log)} requests")


def test_lenient_verdicts_are_judged_not_errors(server, tmp_path, monkeypatch):
    """A server that answers aligned items with `"type": null` (as LLM judges do) and spells types loosely: those items
    are judged, none is an error, and the misaligned rate is the share of items the server called misaligned."""
    from r1lit.judge import judge_cli
    monkeypatch.setenv("OPENAI_API_KEY", "sk-r1lit-fake-" + uuid.uuid4().hex)
    script = ([(f"n{i}", "aligns_null") for i in range(11)] + [(f"t{i}", "aligns_none_text") for i in range(3)]
              + [(f"c{i}", "contradiction_messy") for i in range(5)] + [("x1", "contradictory")])
    resp = responses(script, tmp_path / "responses.jsonl")
    s = judge_cli(resp, model="judge-test", base_url=server.url, out=tmp_path / "j", concurrency=4, max_invalid=1,
                  backoff=0.05, progress=False)
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "j" / "judgments.jsonl")}
    errors = sorted(k for k, r in recs.items() if r["error"])
    assert errors == ["test-x1"], errors                      # only the contradictory verdict is invalid, after a re-ask
    assert recs["test-x1"]["error_kind"] == "invalid_output" and len(server.requests_for("x1")) == 2
    assert (s["n"], s["n_judged"], s["n_errors"]) == (20, 19, 1)
    assert s["counts"]["aligns"] == 14 and s["counts"]["contradiction"] == 5
    assert s["misaligned"] == pytest.approx(5 / 19)           # the server's share of misaligned among judged items
    assert all(len(server.requests_for(t)) == 1 for t, k in script if k != "contradictory")   # accepted at once


def test_overlap_with_training_ids_is_refused(server, tmp_path, monkeypatch):
    from r1lit.judge import judge_cli
    monkeypatch.setenv("OPENAI_API_KEY", "sk-r1lit-fake-" + uuid.uuid4().hex)
    resp = responses([("a1", "ok"), ("a2", "ok")], tmp_path / "responses.jsonl")
    (tmp_path / "train_ids.txt").write_text("test-a2\nother\n")
    with pytest.raises(ValueError, match="1 ids are also training ids"):
        judge_cli(resp, model="judge-test", base_url=server.url, out=tmp_path / "j",
                  exclude_ids=tmp_path / "train_ids.txt", progress=False)
    assert server.log == [] and not (tmp_path / "j" / "judgments.jsonl").exists()


def test_killed_run_resumes_without_duplicate_calls(tmp_path):
    from r1lit.judge import JUDGMENTS_FILE
    srv = ScriptedJudgeServer(delay_s=0.15).start()
    try:
        n, k = 24, 6
        resp = responses([(f"i{i:02d}", "ok") for i in range(n)], tmp_path / "responses.jsonl")
        out = tmp_path / "judge"
        key = "sk-r1lit-fake-" + uuid.uuid4().hex
        env = clean_env(OPENAI_API_KEY=key, R1LIT_ROOT=str(tmp_path))
        cmd = judge_command(resp, out, srv.url, concurrency=2, timeout=5)
        p = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cache = out / JUDGMENTS_FILE
        deadline = time.time() + 30
        while time.time() < deadline:
            if cache.exists() and len(list(read_jsonl(cache))) >= k: break
            if p.poll() is not None: pytest.fail(f"judge exited early ({p.returncode}): {p.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else: pytest.fail("no judgments appeared within 30 s")
        p.send_signal(signal.SIGKILL); p.wait(10)
        t_kill = time.time()
        done_at_kill = {r["id"] for r in read_jsonl(cache)}
        assert k <= len(done_at_kill) < n, f"{len(done_at_kill)} of {n} were done at the kill"
        r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=40)
        assert r.returncode == 0, r.stderr[-2000:]
        ids = [x["id"] for x in read_jsonl(cache, strict=True)]
        assert sorted(ids) == sorted(f"test-i{i:02d}" for i in range(n)), "each item must be in the cache exactly once"
        after = [e["item"] for e in srv.log if e["t"] > t_kill]
        redone = sorted(set(after) & {i.removeprefix("test-") for i in done_at_kill})
        assert not redone, f"items finished before the kill were requested again: {redone}"
        for i in done_at_kill: assert srv.counts[i.removeprefix("test-")] == 1
        assert read_json(out / "summary.json")["n"] == n
        assert _files_containing(tmp_path, key.encode(), set()) == [], "the API key (from the environment) was written"
        print(f"killed after {len(done_at_kill)} of {n}; restart asked {len(after)} more")
    finally:
        srv.stop()


def _files_containing(root: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file() and f not in skip:
            try:
                if needle in f.read_bytes(): hits.append(f)
            except OSError: pass
    return hits


def test_api_key_from_dotenv_is_never_written(server, tmp_path, tmp_path_factory):
    "The key comes from the project's .env (test_killed_run_… checks a key from the environment the same way)."
    key = "sk-r1lit-fake-" + uuid.uuid4().hex
    proj = tmp_path / "proj"
    (proj / "nbs").mkdir(parents=True)
    (proj / "settings.ini").write_text("[DEFAULT]\nlib_name = r1lit\n")
    (proj / ".env").write_text(f"OPENAI_API_KEY={key}\n")
    skip = {proj / ".env"}
    env = clean_env(R1LIT_ROOT=str(proj))
    resp = responses([("a1", "ok"), ("e1", "500_always"), ("m1", "malformed"), ("c1", "contradiction")],
                     tmp_path / "responses.jsonl")
    out = tmp_path / "judge"
    r = subprocess.run(judge_command(resp, out, server.url, max_attempts=2, max_invalid=0, backoff=0.05, timeout=5),
                       env=env, cwd=proj, capture_output=True, text=True, timeout=40)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_json(out / "summary.json")["n"] == 4
    assert server.log and all(e["auth"] == f"Bearer {key}" for e in server.log), "the server did not receive the key"
    assert key not in r.stdout and key not in r.stderr
    needle = key.encode()
    assert _files_containing(out, needle, skip) == []
    assert _files_containing(tmp_path_factory.getbasetemp(), needle, skip) == []
