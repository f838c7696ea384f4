"""The two install paths (pip via settings.ini, pixi via pixi.toml) must declare the same Python dependencies,
and the newcomer's commands must be wired the way the README says."""
import configparser, re, subprocess, sys, tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def pip_requirements() -> dict[str, str]:
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    reqs = cfg["DEFAULT"]["requirements"].split() + cfg["DEFAULT"]["dev_requirements"].split()
    out = {}
    for r in map(Requirement, reqs):
        out[r.name.lower()] = str(r.specifier)
    return out


def pixi_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pixi.toml").read_text())
    deps = data["pypi-dependencies"]
    out = {}
    for name, spec in deps.items():
        if name == "r1lit":
            continue
        spec = spec if isinstance(spec, str) else spec.get("version", "")
        out[name.lower()] = str(Requirement(f"{name}{spec}").specifier)
    return out


def test_pixi_parses_and_has_both_environments_and_tasks():
    data = tomllib.loads((ROOT / "pixi.toml").read_text())
    assert set(data["environments"]) >= {"cpu", "cuda"}
    assert set(data["tasks"]) >= {"demo", "test", "book"}
    assert data["pypi-dependencies"]["r1lit"]["path"] == "."


def test_pixi_declares_the_same_python_dependencies_as_pip():
    pip, pixi = pip_requirements(), pixi_requirements()
    assert pip.keys() == pixi.keys(), f"only in pip: {pip.keys() - pixi.keys()}, only in pixi: {pixi.keys() - pip.keys()}"
    diff = {k: (pip[k], pixi[k]) for k in pip if pip[k] != pixi[k]}
    assert not diff, f"version specifiers differ (pip, pixi): {diff}"


def test_pixi_tasks_mirror_the_makefile():
    tasks = tomllib.loads((ROOT / "pixi.toml").read_text())["tasks"]
    make = (ROOT / "Makefile").read_text()
    assert "r1lit demo" in make and tasks["demo"] == "r1lit demo"
    assert "bash tests/run_all.sh" in make and tasks["test"] == "bash tests/run_all.sh"
    assert "r1lit book" in make and tasks["book"] == "r1lit book"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test\b", ci, re.M)


def test_torch_and_torchvision_are_a_matching_pair():
    import torch, torchvision
    assert torch.__version__.startswith("2.14"), torch.__version__
    assert torchvision.__version__.startswith("0.29"), torchvision.__version__


def test_cli_help_is_fast_and_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "r1lit.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for cmd in ["tiny-model", "data", "eval"]:
        assert cmd in out.stdout


def test_cli_bad_arguments_exit_2_with_a_message():
    out = subprocess.run([sys.executable, "-m", "r1lit.cli", "tiny-model", "gpt2", "x"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
