"""The real VSR experiment notebook as a SLURM job on the one-node test cluster, with a tiny model: once straight
through, and once under a time limit too short to finish, where the real trainer must checkpoint on the signal,
requeue, resume from the checkpoint and end at the same final step as an uninterrupted run."""
import re, time

import pytest

from r1lit.core import read_json
from r1lit.experiments import SlurmSpec, read_run, run
from r1lit.pipeline import Results

from test_slurm import wait_for

pytestmark = pytest.mark.timeout(600)

TINY = dict(seeds=[0], model_options={"family": "smolvlm", "size": "test"},
            data_options={"n": 64, "n_test": 16, "trace": "grid", "relations": ["left of", "right of", "above", "below"]},
            eval_options={"max_new_tokens": 16, "batch_size": 16})
GRPO = {"max_steps": 2, "batch_size": 8, "num_generations": 4, "max_completion_length": 8, "report_to": "none", "lora": False}


def sft_steps_for(seconds: float, tmp) -> int:
    "How many SFT steps of the tiny model take about `seconds` here (measured on 30 steps), so the test's preemption lands in SFT on any machine."
    from r1lit.synthetic import build_synthetic
    from r1lit.tiny import build_tiny
    from r1lit.train import SFTConfig, sft
    build_synthetic(tmp / "data", n=64, n_test=4, trace="grid")
    build_tiny("smolvlm", tmp / "model", size="test")
    r = sft(SFTConfig(model=str(tmp / "model"), data=str(tmp / "data"), out_dir=str(tmp / "sft"), max_steps=30,
                      batch_size=16, lora=False, report_to="none", save_steps=100000))
    per_step = r.seconds / 30
    return max(20, int(seconds / per_step))


def test_slurm_vsr_tiny_completes(slurm_cluster, project, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    params = {**TINY, "mid_step": 2, "extra_steps": 2, "grpo_from_end": False,
              "train": {"sft": {"max_steps": 4, "batch_size": 8, "lora": False, "report_to": "none", "save_steps": 2,
                                "save_total_limit": None},
                        "grpo": GRPO}}
    d = run("vsr", params, slurm=SlurmSpec(cpus=2, time="00:10:00", signal_lead=60))
    rec, seen = wait_for(slurm_cluster, d, 300)
    out = (d / f"slurm-{rec['slurm_job_id']}.out").read_text()
    assert rec["state"] == "done", out
    for f in ("notebook.ipynb", "params.yaml", "run.json", "metrics.json", "log.txt", "job.sh", "results.json", "stages.json"):
        assert (d / f).exists(), f
    m = read_json(d / "metrics.json")
    for label in ("base", "sft_mid", "sft_end", "grpo_mid"):
        assert m["arms"][label]["n"] == 16 and 0 <= m["arms"][label]["accuracy"] <= 1
    res = Results.load(d)
    assert res.training_log("grpo", "grpo", 0)[-1]["step"] == 2
    assert next(a for a in res.arms if a.arm == "sft").training["sft"]["global_step"] == 4


def test_slurm_preempted_training_resumes(slurm_cluster, project, monkeypatch):
    """--time=1 (SLURM's minimum) with the signal 50 s before the limit: the signal lands 10-40 s into the job, while
    SFT (about a minute of steps) is running. The trainer saves a checkpoint and stops, the job requeues, and the next
    attempt resumes SFT from that checkpoint; the run ends done with the uninterrupted step count. The chapter is the
    sim2real notebook with one arm (SFT only), the real trainer in its real pipeline."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    steps = sft_steps_for(seconds=35, tmp=project / "calibrate")
    params = {**TINY, "eval_splits": {"in_domain": "test"}, "main_split": "in_domain",
              "train": {"sft": {"max_steps": steps, "batch_size": 16, "lora": False, "report_to": "none", "save_steps": 100000}},
              "arms": {"flat": {"stages": {"sft": {}}, "evaluate": ["base", "sft"]}}}
    t0 = time.time()
    d = run("sim2real", params, slurm=SlurmSpec(cpus=2, time="1", signal_lead=50))
    rec, seen = wait_for(slurm_cluster, d, 560)
    out = "".join(p.read_text() for p in d.glob("slurm-*.out"))
    print(f"preempted run finished in {time.time() - t0:.0f}s; history {seen}")
    assert rec["state"] == "done", out
    states = [a["state"] for a in rec["attempts"]]
    assert states[0] == "preempted" and states[-1] == "done", states
    log = (d / "log.txt").read_text()
    stopped = [int(k) for k in re.findall(r"sft stopped at step (\d+)", log)]
    assert stopped and 0 < stopped[0] < steps, (stopped, states)
    # the next attempt resumed from the checkpoint saved at that step, not from scratch ...
    assert re.search(rf"resuming sft from \S+/checkpoint-{stopped[0]}\b", log), log[-3000:]
    # ... and reached the step count of an uninterrupted run
    res = Results.load(d)
    assert res.arms[0].training["sft"]["global_step"] == steps
    assert read_json(d / "metrics.json")["arms"]["flat_sft"]["n"] == 16
