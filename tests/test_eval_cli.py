"""`r1lit eval` from the shell: a run killed with SIGKILL midway and started again ends with every id exactly once,
and its scores cover the whole split."""
import json, signal, subprocess, sys, time
from pathlib import Path

import pytest

from r1lit.core import read_json, read_jsonl

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from r1lit.synthetic import build_synthetic
    from r1lit.tiny import build_tiny
    d = tmp_path_factory.mktemp("eval")
    build_synthetic(d / "data", n=4, n_test=48, trace="grid")
    build_tiny("smolvlm", d / "model", size="test")
    return d


def _eval_cmd(d, out):
    return [sys.executable, "-m", "r1lit.cli", "eval", "--model", str(d / "model"), "--data", str(d / "data"),
            "--split", "test", "--out", str(out), "--batch-size", "4", "--max-new-tokens", "24"]


def test_eval_killed_midway_resumes_with_each_id_once(tiny):
    out = tiny / "killed"
    p = subprocess.Popen(_eval_cmd(tiny, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    resp = out / "responses.jsonl"
    t0 = time.time()
    while time.time() - t0 < 120:
        if resp.exists() and len(list(read_jsonl(resp))) >= 8: break
        if p.poll() is not None: pytest.fail(f"eval ended before it could be killed: {p.stdout.read()[-2000:]}")
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    before = len(list(read_jsonl(resp)))
    assert 8 <= before < 48, before
    r = subprocess.run(_eval_cmd(tiny, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ids = [x["id"] for x in read_jsonl(resp, strict=True)]
    assert len(ids) == len(set(ids)) == 48
    s = read_json(out / "scores.json")
    assert s["n"] == 48 and s["n_failed"] == 0 and 0 <= s["accuracy"] <= 1 and len(s["ci95"]) == 2
    # the restarted run generated only what was missing: same responses as an uninterrupted run
    ref = tiny / "reference"
    assert subprocess.run(_eval_cmd(tiny, ref), capture_output=True).returncode == 0
    by_id = lambda f: {x["id"]: x["response"] for x in read_jsonl(f)}
    assert by_id(resp) == by_id(ref / "responses.jsonl")


def test_eval_bad_inputs_are_clear_errors(tiny):
    r = subprocess.run([sys.executable, "-m", "r1lit.cli", "eval", "--model", str(tiny / "model"), "--data",
                        str(tiny / "nope"), "--out", str(tiny / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "nope" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "r1lit.cli", "eval", "--model", str(tiny / "model"), "--data",
                        str(tiny / "data"), "--split", "validation", "--out", str(tiny / "y")], capture_output=True, text=True)
    assert r.returncode == 2 and "validation" in r.stderr, r.stderr
