"""Distributed training on CPU: two processes joined by gloo against one process at the same global batch, for SFT
and GRPO; preemption seen by one rank stops every rank at the same step; the job scripts for 1 node × 4 GPUs and
2 nodes × 8 GPUs; and a SLURM job on the local test cluster that trains on two CPU processes.

No GPU is used: every multi-process run here is accelerate's DDP path on CPU (`ACCELERATE_USE_CPU=true`, gloo)."""
import json, os, re, shlex, subprocess, sys, time
from pathlib import Path

import pytest

from r1lit.core import PREEMPT_ENV, Preempted, LaunchSettings, read_json
from r1lit.launch import accelerate_command, launch, launch_command, launch_env, launch_plan
from r1lit.experiments import SlurmSpec, new_notebook, read_run, run, write_sbatch
from r1lit.train import GRPOConfig, SFTConfig

pytestmark = pytest.mark.timeout(400)
ROOT = Path(__file__).resolve().parents[1]
# Per-step SFT losses of 2 ranks × batch 2 and 1 rank × batch 4 see the same 4 rows per step (accelerate shards the
# same seeded permutation) and average over the same tokens (average_tokens_across_devices); they differ only by the
# order of float32 sums and by padding to 2 instead of 4 rows. Measured difference: < 1e-6 relative.
SFT_RTOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from r1lit.synthetic import build_synthetic
    from r1lit.tiny import build_tiny
    d = tmp_path_factory.mktemp("dist")
    build_synthetic(d / "scenes", n=16, n_test=4, seed=0, progress=False)
    return d, build_tiny("smolvlm", d / "smolvlm", seed=0, size="test"), d / "scenes"


def _losses(res_or_hist):
    hist = res_or_hist if isinstance(res_or_hist, list) else res_or_hist.log_history
    return {h["step"]: h for h in hist if "loss" in h}


def _sft(d, model, data, name, n, steps=4, **kw):
    return SFTConfig(model=str(model), data=str(data), out_dir=str(d / name), max_steps=steps, batch_size=4 // n,
                     learning_rate=1e-3, lora=True, lora_dropout=0.0, save_steps=100, report_to="none",
                     logging_steps=1, **kw)


def _cpu(n, port):
    return LaunchSettings(num_processes=n, cpu=True, main_port=port)


def test_sft_two_processes_match_one_and_preempt_all_ranks(tiny):
    """One SFT run on 1 process; one on 2 processes that rank 1 alone sees preempted after step 2, then resumed. The
    resumed 2-process run must have stopped both ranks at step 2 and end with the 1-process run's losses."""
    d, model, data = tiny
    t0 = time.time()
    one = launch("sft", _sft(d, model, data, "sft1", 1), _cpu(1, 29541), echo=False)
    t1 = time.time()
    # rank-specific flag files: only rank 1's appears, at the end of step 2, so without the all-reduce rank 0 would
    # go on into step 3 and wait for rank 1 in the gradient all-reduce until the timeout
    script = d / "preempt_rank1.py"
    script.write_text(f"""
import os, sys
from pathlib import Path
from transformers import TrainerCallback
from r1lit.core import PREEMPT_ENV, Preempted, read_json
from r1lit.train import SFTConfig, sft
rank = int(os.environ["RANK"])
os.environ[PREEMPT_ENV] = str(Path({str(d)!r}) / f"flag.{{rank}}")
class Rank1Sees(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if rank == 1 and state.global_step == 2: Path(os.environ[PREEMPT_ENV]).touch()
try: sft(SFTConfig.from_dict(read_json(sys.argv[1])), callbacks=[Rank1Sees()])
except Preempted: pass      # as r1lit.launch.run_rank: the main process wrote preempted.json
sys.exit(0)
""")
    cfg2 = _sft(d, model, data, "sft2", 2)
    Path(cfg2.out_dir).mkdir(parents=True)
    cfg_json = d / "sft2.json"
    cfg_json.write_text(json.dumps(cfg2.to_dict()))
    cmd = accelerate_command("sft", cfg_json, _cpu(2, 29542))
    cmd = cmd[:cmd.index("-m", 3)] + [str(script), str(cfg_json)]
    r = subprocess.run(cmd, env=launch_env(_cpu(2, 29542)), capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert read_json(d / "sft2" / "preempted.json") == {"step": 2, "num_processes": 2}
    assert (d / "sft2" / "checkpoint-2").is_dir() and not (d / "sft2" / "result.json").exists()
    t2 = time.time()
    two = launch("sft", _sft(d, model, data, "sft2", 2, resume=True), _cpu(2, 29543), echo=False)
    t3 = time.time()
    print(f"SFT 1 process {t1 - t0:.1f}s, 2 processes preempted {t2 - t1:.1f}s, resumed {t3 - t2:.1f}s")
    assert "resuming sft from" in (d / "sft2" / "launch.log").read_text()
    assert read_json(d / "sft2" / "train_config.json")["num_processes"] == 2
    assert read_json(d / "sft1" / "train_config.json")["num_processes"] == 1
    assert one.global_step == two.global_step == 4
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for s in a:
        print(s, a[s]["loss"], b[s]["loss"])
        assert b[s]["loss"] == pytest.approx(a[s]["loss"], rel=SFT_RTOL)
    # the same rows at every step: equal token counts (TRL's running counter restarts at the resume, after step 2)
    tok_a = {s: a[s]["num_tokens"] - (a[s - 1]["num_tokens"] if s > 1 else 0) for s in a}
    tok_b = {s: b[s]["num_tokens"] - (b[s - 1]["num_tokens"] if s not in (1, 3) else 0) for s in b}
    assert tok_a == tok_b, (tok_a, tok_b)
    assert (Path(two.model_dir) / "config.json").exists() and (Path(two.adapter_dir) / "adapter_config.json").exists()


def test_grpo_two_processes_match_one(tiny):
    """GRPO, 2 steps: 1 process × 4 completions per step against 2 processes × 2 completions (the 4 completions of one
    prompt split over the ranks). TRL seeds sampling per rank (set_seed(device_specific=True)), so the completions,
    and with them rewards and losses, are not the same draws as in one process; what must agree is the structure: the
    same optimizer steps, the same prompts, and a loss that is a finite mean over the same group size."""
    d, model, data = tiny
    cfg = lambda name, n: GRPOConfig(model=str(model), data=str(data), out_dir=str(d / name), max_steps=2,
                                     batch_size=4 // n, num_generations=4, max_completion_length=8, learning_rate=1e-3,
                                     lora=True, lora_dropout=0.0, save_steps=100, report_to="none", logging_steps=1)
    t0 = time.time()
    one = launch("grpo", cfg("grpo1", 1), _cpu(1, 29544), echo=False)
    t1 = time.time()
    two = launch("grpo", cfg("grpo2", 2), _cpu(2, 29545), echo=False)
    print(f"GRPO 1 process {t1 - t0:.1f}s, 2 processes {time.time() - t1:.1f}s")
    a, b = _losses(one), _losses(two)
    print({s: (a[s]["loss"], b[s]["loss"], a[s].get("reward"), b[s].get("reward")) for s in a})
    assert one.global_step == two.global_step == 2 and sorted(a) == sorted(b) == [1, 2]
    assert read_json(d / "grpo2" / "train_config.json")["num_processes"] == 2
    for s in a:
        for h in (a[s], b[s]):
            assert all(v == v for v in (h["loss"], h["reward"]))       # finite, not NaN
        # the KL to the reference is 0 before the first update in both runs (gathered over both ranks in b)
    assert a[1]["kl"] == pytest.approx(0, abs=1e-6) and b[1]["kl"] == pytest.approx(0, abs=1e-6)


def _sbatch_lines(script: str):
    "The #SBATCH options, the exported variables, and the launch commands the training stage derives from them."
    sb = dict(l[len("#SBATCH --"):].split("=", 1) for l in script.splitlines() if l.startswith("#SBATCH --") and "=" in l)
    ex = dict(re.match(r"export (\w+)=(.*)", l).groups() for l in script.splitlines() if l.startswith("export "))
    # what r1lit.launch.train_stage runs in the job: the exported settings, with the shell's values left as names
    s = LaunchSettings.from_env({**{k: v for k, v in ex.items() if k.startswith("R1LIT_")}, "R1LIT_MAIN_PORT": "0",
                                 "R1LIT_MAIN_ADDR": "$R1LIT_MAIN_ADDR"})
    show = lambda cmd: " ".join(cmd).replace("--main_process_port 0", "--main_process_port $R1LIT_MAIN_PORT")
    shown = ([show(launch_command("sft", "OUT_DIR/launch.json", s))] if s.num_machines > 1 else []) + \
            [("on every node: " if s.num_machines > 1 else "") + show(accelerate_command("sft", "OUT_DIR/launch.json", s,
                                                                                           "$SLURM_NODEID" if s.num_machines > 1 else 0))]
    return sb, ex, shown


def test_sbatch_one_node_four_gpus():
    script = write_sbatch("vsr", "/scratch/runs/vsr/r1", SlurmSpec(gpus=4, cpus=32), root=ROOT, command="r1lit")
    sb, ex, shown = _sbatch_lines(script)
    assert (sb["nodes"], sb["ntasks"], sb["gpus"], sb["cpus-per-task"]) == ("1", "1", "4", "32")
    assert ex["R1LIT_NUM_PROCESSES"] == "4" and ex["R1LIT_NUM_MACHINES"] == "1" and ex["NCCL_NVLS_ENABLE"] == "0"
    assert ex["R1LIT_MAIN_PORT"] == "$((29500 + SLURM_JOB_ID % 1000))" and "R1LIT_CPU" not in ex
    assert ex["R1LIT_MAIN_ADDR"] == '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
    (cmd,) = shown
    argv = shlex.split(cmd)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and "srun" not in argv
    assert argv[argv.index("--num_processes") + 1] == "4" and argv[argv.index("--config_file") + 1].endswith("nbs/accelerate/ddp.yaml")
    # what accelerate would do with it, port filled in as the job would
    plan = launch_plan([a.replace("$R1LIT_MAIN_PORT", "29517") for a in argv])
    assert plan["launcher"] == "torchrun" and plan["torchrun"]["nproc_per_node"] == "4"


def test_sbatch_two_nodes_eight_gpus():
    script = write_sbatch("vsr", "/scratch/runs/vsr/r1", SlurmSpec(gpus=8, nodes=2, accelerate_config="fsdp"), root=ROOT, command="r1lit")
    sb, ex, shown = _sbatch_lines(script)
    assert (sb["nodes"], sb["ntasks-per-node"], sb["gpus-per-node"]) == ("2", "1", "8") and "gpus" not in sb
    assert ex["R1LIT_NUM_PROCESSES"] == "16" and ex["R1LIT_NUM_MACHINES"] == "2" and ex["R1LIT_ACCELERATE_CONFIG"] == "fsdp"
    srun, node = shown
    assert srun.startswith("srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1 ") and "-m r1lit.launch node sft" in srun
    argv = shlex.split(node.removeprefix("on every node: "))
    flags = {f: argv[argv.index(f) + 1] for f in ("--num_processes", "--num_machines", "--machine_rank", "--main_process_ip", "--main_process_port")}
    assert flags == {"--num_processes": "16", "--num_machines": "2", "--machine_rank": "$SLURM_NODEID",
                     "--main_process_ip": "$R1LIT_MAIN_ADDR", "--main_process_port": "$R1LIT_MAIN_PORT"}
    # the job's variables as SLURM would give them to node 1 of job 4321
    filled = [a.replace("$SLURM_NODEID", "1").replace("$R1LIT_MAIN_ADDR", "gpu-a01").replace("$R1LIT_MAIN_PORT", str(29500 + 4321 % 1000)) for a in argv]
    plan = launch_plan(filled)
    assert plan["torchrun"] == {"nnodes": "2", "nproc_per_node": "8", "node_rank": 1, "master_addr": "gpu-a01",
                                "master_port": "29821", "rdzv_endpoint": None}
    assert plan["env"]["ACCELERATE_USE_FSDP"] == "true"


DIST_NB = new_notebook([("code", """
import json, os
from pathlib import Path
from r1lit.core import LaunchSettings
from r1lit.launch import train_stage
from r1lit.experiments import save_metrics, run_dir_from_env
from r1lit.synthetic import build_synthetic
from r1lit.tiny import build_tiny
from r1lit.train import SFTConfig
d = run_dir_from_env()
build_synthetic(d/"scenes", n=16, n_test=4, seed=0, progress=False)
model = build_tiny("smolvlm", d/"model", seed=0, size="test")
s = LaunchSettings.from_env()
print("launch settings", s)
res = train_stage("sft", SFTConfig(model=str(model), data=str(d/"scenes"), out_dir=str(d/"sft"), max_steps=steps, batch_size=2,
                                   learning_rate=1e-3, lora=False, save_steps=100, report_to="none", logging_steps=1, resume=resume))
cfg = json.loads((d/"sft"/"train_config.json").read_text())
save_metrics({"global_step": res.global_step, "num_processes": cfg.get("num_processes", 1), "settings_processes": s.num_processes})
""")], parameters="steps = 3\nseed = 0\nresume = False")


def test_slurm_job_trains_on_two_cpu_processes(slurm_cluster, project, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    (project / "nbs" / "accelerate").mkdir()
    for f in (ROOT / "nbs" / "accelerate").glob("*.yaml"): (project / "nbs" / "accelerate" / f.name).write_text(f.read_text())
    (project / "nbs" / "experiments" / "dist_sft.ipynb").write_text(json.dumps(DIST_NB))
    t0 = time.time()
    d = run("dist_sft", {"steps": 3}, slurm=SlurmSpec(cpus=2, processes=2, time="00:08:00", signal_lead=60))
    job = read_run(d)["slurm_job_id"]
    script = (d / "job.sh").read_text()
    assert "export R1LIT_NUM_PROCESSES=2" in script and "export R1LIT_CPU=1" in script and "--gpus" not in script
    while time.time() - t0 < 300:
        q = slurm_cluster.cmd("squeue", "-h", "-j", job, "-o", "%T", check=False).strip()
        if not q and read_run(d).get("state") in ("done", "failed"): break
        time.sleep(2)
    rec = read_run(d)
    out = (d / f"slurm-{job}.out").read_text() if (d / f"slurm-{job}.out").exists() else ""
    print(f"SLURM job {job}: {rec.get('state')} after {time.time() - t0:.1f}s")
    assert rec["state"] == "done", (rec.get("error"), out[-3000:])
    m = read_json(d / "metrics.json")
    assert m == {"global_step": 3, "num_processes": 2, "settings_processes": 2}
    log = (d / "sft" / "launch.log").read_text()
    assert "accelerate.commands.launch" in log and "--num_processes 2" in log
    port = int(re.search(r"--main_process_port (\d+)", log).group(1))
    assert port == 29500 + int(job) % 1000
    assert (d / "sft" / "result.json").exists() and (d / "sft" / "accelerate.yaml").exists()
