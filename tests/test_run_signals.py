"""`r1lit run` and `r1lit train` interrupted by a signal (Ctrl-C in a terminal, `kill`, a scheduler's SIGTERM).

The first signal asks the work to checkpoint and stop; a run is then recorded as preempted, its notebook and log are
kept, no kernel outlives it, and `--resume` finishes the work without repeating a step. A notebook that does not poll
the flag has its kernel interrupted after the grace period. `r1lit train` saves a checkpoint at the signal."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from r1lit.core import PREEMPT_EXIT_CODE, read_json, read_jsonl
from r1lit.experiments import new_notebook, read_run

pytestmark = pytest.mark.timeout(240)
R1LIT = [sys.executable, "-m", "r1lit.cli"]


@pytest.fixture
def start():
    "Start `r1lit ARGS` in the background; whatever a failed test leaves running is killed with its children."
    started = []
    def _start(args, env_extra=None):
        env = {**os.environ, **(env_extra or {})}
        p = subprocess.Popen(R1LIT + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(p)
        return p
    yield _start
    for p in started:
        if p.poll() is None:
            for q in [*descendants(p.pid), psutil.Process(p.pid)]:
                try: q.kill()
                except psutil.NoSuchProcess: pass
            p.wait()


def wait_until(cond, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond(): return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def descendants(pid):
    return psutil.Process(pid).children(recursive=True)


def all_gone(procs):
    return not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_sigterm_checkpoints_and_resume_finishes(project, start):
    run_dir = project / "runs" / "resumable_counter" / "interrupted"
    steps_file = run_dir / "steps.jsonl"
    p = start(["run", "resumable_counter", "-p", "steps", "200", "-p", "seconds_per_step", "0.05",
               "--run-dir", str(run_dir)])
    wait_until(lambda: steps_file.exists() and len(list(read_jsonl(steps_file))) >= 5, 120, "the first steps")
    procs = descendants(p.pid)
    assert any("ipykernel" in " ".join(q.cmdline()) for q in procs), [q.cmdline() for q in procs]
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=90)
    assert p.returncode == PREEMPT_EXIT_CODE, out
    assert "SIGTERM: saving the work in progress" in out and "--resume" in out, out
    wait_until(lambda: all_gone(procs), 20, "the runner and its kernel to exit")

    rec = read_run(run_dir)
    assert rec["state"] == "preempted" and rec["error"] == "stopped by SIGTERM", rec
    assert rec["attempts"][-1]["signal"] == "SIGTERM"
    done = [r["step"] for r in list(read_jsonl(steps_file))]
    assert 5 <= len(done) < 200 and done == list(range(1, len(done) + 1))
    assert read_json(run_dir / "checkpoint.json") == {"step": len(done)}
    nb = (run_dir / "notebook.ipynb").read_text()
    assert f"checkpoint saved at step {len(done)}" in nb
    time.sleep(1.0)
    assert len(list(read_jsonl(steps_file))) == len(done), "something kept running after the run stopped"

    r = subprocess.run(R1LIT + ["run", "resumable_counter", "--run-dir", str(run_dir), "--resume"],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [x["step"] for x in list(read_jsonl(steps_file))] == list(range(1, 201))
    assert read_json(run_dir / "metrics.json") == {"steps": 200, "resumed_from": len(done)}
    assert [a["state"] for a in read_run(run_dir)["attempts"]] == ["preempted", "done"]


def test_a_cell_that_ignores_the_flag_is_interrupted(project, start):
    nb = new_notebook([("code", "import time\nprint('working', flush=True)\ntime.sleep(600)\nprint('never')")])
    (project / "nbs" / "experiments" / "stuck.ipynb").write_text(json.dumps(nb))
    run_dir = project / "runs" / "stuck" / "one"
    p = start(["run", "stuck", "--run-dir", str(run_dir)], {"R1LIT_STOP_GRACE": "2"})
    wait_until(lambda: (run_dir / "log.txt").exists() and "working" in (run_dir / "log.txt").read_text(), 120,
               "the cell to start")
    procs = descendants(p.pid)
    t0 = time.time()
    p.send_signal(signal.SIGINT)                  # what Ctrl-C in a terminal sends
    out, _ = p.communicate(timeout=60)
    assert time.time() - t0 < 45, "the grace period was not honoured"
    assert p.returncode == PREEMPT_EXIT_CODE, out
    wait_until(lambda: all_gone(procs), 20, "the runner and its kernel to exit")
    rec = read_run(run_dir)
    assert rec["state"] == "preempted" and rec["error"] == "stopped by SIGINT", rec
    cell = json.loads((run_dir / "notebook.ipynb").read_text())["cells"][-1]
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")
    assert printed.strip() == "working", printed
    assert [o["ename"] for o in cell["outputs"] if o["output_type"] == "error"] == ["KeyboardInterrupt"]
    assert "working" in (run_dir / "log.txt").read_text()


def test_sigterm_to_r1lit_train_saves_a_checkpoint_and_resume_continues(tmp_path, start):
    model, data, out = tmp_path / "model", tmp_path / "data", tmp_path / "sft"
    for args in (["tiny-model", "smolvlm", str(model)], ["data", "synthetic", str(data), "--n", "32", "--n-test", "4"]):
        r = subprocess.run(R1LIT + args, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    common = ["train", "sft", "-p", "model", str(model), "-p", "data", str(data), "-p", "out_dir", str(out),
              "-p", "batch_size", "2", "-p", "lora", "false", "-p", "report_to", "none", "-p", "save_steps", "100000"]
    log = tmp_path / "train.log"
    with open(log, "w") as f:
        p = subprocess.Popen(R1LIT + common + ["-p", "max_steps", "100000"], stdout=f, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "it/s]" in log.read_text() or "s/it]" in log.read_text(), 120, "training steps")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=60) == PREEMPT_EXIT_CODE, log.read_text()[-2000:]
    finally:
        if p.poll() is None: p.kill()
    text = log.read_text()
    assert "saving the work in progress" in text and "add --resume to continue" in text, text[-2000:]
    ckpts = sorted(out.glob("checkpoint-*"), key=lambda d: int(d.name.split("-")[1]))
    assert len(ckpts) == 1 and not (out / "result.json").exists(), ckpts
    step = int(ckpts[0].name.split("-")[1])
    assert step >= 1 and (ckpts[0] / "optimizer.pt").exists() and (ckpts[0] / "scheduler.pt").exists()
    r = subprocess.run(R1LIT + common + ["-p", "max_steps", str(step + 3), "--resume"], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"resuming sft from {ckpts[0]}" in r.stdout + r.stderr
    assert read_json(out / "result.json")["global_step"] == step + 3
