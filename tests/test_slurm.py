"""SLURM integration: an experiment submitted with `r1lit.experiments.run(..., slurm=SlurmSpec)` runs on a one-node
test cluster, and a job whose time limit is too short is signalled, checkpoints, requeues itself and resumes.

The experiment is the fixture notebook `resumable_counter`: a step loop that sleeps, polls `preempt_requested()` and
saves its step counter only when asked to stop. It tests the runner and requeue machinery, not a real trainer."""
import time

import pytest

from r1lit.core import read_json, read_jsonl
from r1lit.experiments import SlurmSpec, read_run, run, status

pytestmark = pytest.mark.timeout(400)


def wait_for(cl, run_dir, timeout):
    "Poll run.json and squeue until the job has left the queue with a final state; returns the run record."
    rec = read_run(run_dir)
    t0, seen = time.time(), []
    while time.time() - t0 < timeout:
        rec = read_run(run_dir)
        q = cl.cmd("squeue", "-h", "-j", rec["slurm_job_id"], "-o", "%T %r", check=False).strip()
        if not seen or seen[-1][1:] != (rec.get("state"), q): seen.append((round(time.time() - t0, 1), rec.get("state"), q))
        if not q and rec.get("state") in ("done", "failed"): return rec, seen
        if not q and time.time() - seen[-1][0] - t0 > 10:
            out = "".join(p.read_text() for p in run_dir.glob("slurm-*.out"))
            pytest.fail(f"job left the queue but run.json says {rec.get('state')}; history {seen}\n{out}")
        time.sleep(1)
    pytest.fail(f"job did not finish in {timeout}s; history {seen}\n{cl.logs()}")


def test_slurm_run_completes(slurm_cluster, project, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    t0 = time.time()
    d = run("resumable_counter", {"steps": 8, "seconds_per_step": 0.1}, slurm=SlurmSpec(cpus=1, time="00:05:00", signal_lead=60))
    job = read_run(d)["slurm_job_id"]
    assert job and job.isdigit()
    assert [r["state"] for r in status(project / "runs")] in (["queued"], ["running"])
    rec, seen = wait_for(slurm_cluster, d, 120)
    print(f"SLURM run finished in {time.time() - t0:.1f}s: {seen}")
    out = d / f"slurm-{job}.out"
    assert rec["state"] == "done", (rec, out.read_text() if out.exists() else "no slurm output")
    for f in ("notebook.ipynb", "params.yaml", "run.json", "metrics.json", "log.txt", "job.sh", out.name):
        assert (d / f).exists(), f
    assert read_json(d / "metrics.json") == {"steps": 8, "resumed_from": 0}
    assert [r["step"] for r in read_jsonl(d / "steps.jsonl")] == list(range(1, 9))
    assert rec["slurm_job_id"] == job and len(rec["attempts"]) == 1 and rec["attempts"][0]["slurm_job_id"] == job
    assert set(rec["versions"]) >= {"torch", "transformers", "trl", "peft", "datasets", "accelerate"}
    assert rec["python"] and rec["host"] and rec["seed"] == 0 and "dirty" in rec
    assert [(r["state"], r["metrics"]["steps"]) for r in status(project / "runs")] == [("done", 8)]


def test_slurm_preempt_requeue_resume(slurm_cluster, project, monkeypatch):
    """--time=1 (the SLURM minimum) with the signal 50 s before the limit. slurmctld checks time limits about every
    30 s, so the signal lands 10-40 s into the job; 45 one-second steps cannot finish before it."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    steps = 45
    t0 = time.time()
    d = run("resumable_counter", {"steps": steps, "seconds_per_step": 1.0},
            slurm=SlurmSpec(cpus=1, time="1", signal_lead=50))
    rec, seen = wait_for(slurm_cluster, d, 330)
    took = time.time() - t0
    out = (d / f"slurm-{rec['slurm_job_id']}.out").read_text()
    print(f"preempted run finished in {took:.1f}s; history {seen}\n{out}")
    assert rec["state"] == "done", out
    states = [a["state"] for a in rec["attempts"]]
    assert states[0] == "preempted" and states[-1] == "done" and len(states) >= 2, states
    assert all(a["resume"] for a in rec["attempts"][1:]) and not rec["attempts"][0]["resume"]
    # the same final step count as an uninterrupted run, and every step done exactly once: the resumed attempt
    # started from the checkpoint saved on the signal, not from scratch
    assert read_json(d / "metrics.json")["steps"] == steps
    done = [r["step"] for r in read_jsonl(d / "steps.jsonl")]
    assert done == list(range(1, steps + 1)), done
    assert read_json(d / "metrics.json")["resumed_from"] > 0
    assert {r["restart"] for r in read_jsonl(d / "steps.jsonl")} >= {"0", "1"}
    assert "SIGUSR1" in out and "requeueing job" in out
    log = (d / "log.txt").read_text()
    assert log.count("== r1lit run resumable_counter") == len(states) and "checkpoint saved at step" in log
