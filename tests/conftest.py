"""Shared fixtures for r1lit's integration tests.

`slurm_cluster` starts a one-node SLURM cluster on localhost (munge + slurmctld + slurmd from Debian's
`slurm-wlm`), installing the packages with apt when they are missing; `chromium` finds or installs a headless
browser. Both skip with a reason when they cannot be set up (not root, apt unavailable)."""
from __future__ import annotations

import os, re, shutil, socket, subprocess, sys, time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ARTIFACTS = ROOT / "artifacts"


def _log(msg: str):
    print(f"[r1lit-tests] {msg}", file=sys.stderr, flush=True)


def apt_install(packages: list[str], binaries: list[str]) -> str | None:
    "Install Debian `packages` unless all `binaries` exist. Returns None on success, else the reason to skip."
    if all(shutil.which(b) for b in binaries): return None
    if os.geteuid() != 0: return f"{', '.join(binaries)} missing and not root, cannot apt-get install {' '.join(packages)}"
    if not shutil.which("apt-get"): return "apt-get not available to install " + " ".join(packages)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    t0 = time.time()
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0: return f"{' '.join(cmd)} failed: {r.stderr.strip()[-500:]}"
    _log(f"apt-get installed {' '.join(packages)} in {time.time() - t0:.1f}s")
    missing = [b for b in binaries if not shutil.which(b)]
    return f"installed {packages} but {missing} still missing" if missing else None


# ---------------------------------------------------------------------------------------------------------- SLURM
SLURM_CONF = """\
# One-node test cluster for r1lit's SLURM tests (written by tests/conftest.py).
ClusterName=r1littest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
# A requeued job waits cred_expire seconds (default 120) before it may start again; keep the test short.
AuthInfo=cred_expire=10
CredType=cred/munge
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=5
KillWait=5
OverTimeLimit=0
InactiveLimit=0
Waittime=0
MessageTimeout=10
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    "A running one-node SLURM cluster; `env` points the client commands at its slurm.conf."
    def __init__(self, base: Path):
        self.base = base
        self.conf = base / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[str] = []
        self.munged_started = False

    def cmd(self, *args, check=True, timeout=30) -> str:
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0: raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def node_state(self) -> str:
        return self.cmd("sinfo", "-h", "-o", "%T", check=False).strip()

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.base / name
            if p.exists(): out.append(f"--- {name} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _munge_running() -> bool:
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    reason = apt_install(["slurm-wlm", "munge"], ["slurmctld", "slurmd", "sbatch", "munged"])
    if reason: pytest.skip(reason)
    if os.geteuid() != 0: pytest.skip("the test cluster runs slurmd as root; not root")
    t0 = time.time()
    base = tmp_path_factory.mktemp("slurm")
    base.chmod(0o755)
    for d in ("state", "spool"): (base / d).mkdir()
    cl = SlurmCluster(base)
    host = socket.gethostname().split(".")[0]
    cl.conf.write_text(SLURM_CONF.format(host=host, base=base, cpus=os.cpu_count() or 1,
                                         ctld_port=_free_port(), d_port=_free_port()))
    if not _munge_running():
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not Path("/etc/munge/munge.key").exists():
            subprocess.run(["mungekey", "--create"], check=True)
            shutil.chown("/etc/munge/munge.key", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        cl.munged_started = True
        for _ in range(50):
            if _munge_running(): break
            time.sleep(0.1)
    try:
        cl.cmd("slurmctld", "-f", str(cl.conf))   # daemonises
        cl.cmd("slurmd", "-f", str(cl.conf))
        deadline = time.time() + 60
        while time.time() < deadline:
            st = cl.node_state()
            if st.startswith("idle"): break
            time.sleep(0.5)
        else:
            pytest.fail(f"SLURM node never became idle (sinfo says {st!r})\n{cl.logs()}")
        cl.setup_seconds = time.time() - t0
        _log(f"SLURM test cluster up in {cl.setup_seconds:.1f}s ({base})")
        yield cl
    finally:
        for name in ("slurmd.pid", "slurmctld.pid"):
            p = base / name
            if p.exists():
                try: os.kill(int(p.read_text().strip()), 15)
                except (ProcessLookupError, ValueError): pass
        if cl.munged_started:
            pid = Path("/run/munge/munged.pid")
            if pid.exists():
                try: os.kill(int(pid.read_text().strip()), 15)
                except (ProcessLookupError, ValueError): pass


# ------------------------------------------------------------------------------------------------------- chromium
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    "A function `chromium(url, *args) -> stdout` running headless Debian chromium with a throwaway profile."
    reason = apt_install(["chromium"], ["chromium"])
    if reason: pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    def run(url: str, *args: str, timeout: int = 90) -> str:
        r = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0: raise RuntimeError(f"chromium {' '.join(args)} {url} failed: {r.stderr[-1000:]}")
        return r.stdout
    return run


# ---------------------------------------------------------------------------------------------- project sandbox
@pytest.fixture
def project(tmp_path, monkeypatch):
    """A scratch r1lit project: the repo's notebooks, book sources and config copied into `tmp_path`, with the fixture
    experiment notebooks added next to the real ones, and `R1LIT_ROOT` pointing at it so runs never touch the real runs/ folder."""
    dst = tmp_path / "proj"
    dst.mkdir()
    for name in ("settings.ini", "_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "book", dst / "book", ignore=shutil.ignore_patterns("_generated"))
    # the manifest pins this checkout's committed runs, which a scratch project lacks: there every chapter shows its latest run
    m = dst / "book" / "manifest.yml"
    m.write_text(re.sub(r"(?m)^(\s+run:) \S+$", r"\1 latest", m.read_text()))
    (dst / "nbs" / "experiments").mkdir(parents=True)
    for nb in (ROOT / "nbs").glob("*.ipynb"):          # the module notebooks: the book's Methods part
        shutil.copy(nb, dst / "nbs" / nb.name)
    for nb in [*(ROOT / "nbs" / "experiments").glob("*.ipynb"), *FIXTURES.glob("*.ipynb"),
               *(ROOT / "nbs" / "experiments").glob("*.registration.yml")]:       # a chapter's registration sits beside it
        shutil.copy(nb, dst / "nbs" / "experiments" / nb.name)
    monkeypatch.setenv("R1LIT_ROOT", str(dst))
    return dst
