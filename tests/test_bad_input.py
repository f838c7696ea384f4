"""Every `r1lit` subcommand meets bad paths as a user would: a path that does not exist, an empty folder, and a file
of the wrong kind, for each path it reads; and a file where it should write a folder. Each must answer with exit
status 2 and one line `r1lit COMMAND: error: ...` naming the path, with no traceback, and leave the bad path as it
was. The other arguments are valid (a tiny model, a synthetic dataset, a responses file), so the error is the bad
path's own, not a neighbour's.

Every enumerated setting of `r1lit train`, `r1lit run` and `r1lit data` (a reward, a prompt style, a scheduler, a
relation, ...) meets a misspelt value the same way: exit status 2 and one line naming the setting, the value and the
values it takes, before any model or data is loaded, any scene drawn or any run folder made."""
from __future__ import annotations

import json, shutil

import pytest

from r1lit.cli import main

pytestmark = pytest.mark.timeout(300)

MODEL = {"missing": "no such model folder", "empty": "not a model folder", "file": "is a file"}
DATA = {"missing": "dataset folder not found", "empty": "not a DatasetDict folder", "file": "is a file"}
YAML = {"missing": "does not exist", "empty": "is a folder", "file": "must be a YAML mapping"}
RESPONSES = {"missing": "no such responses file", "empty": "no such responses file", "file": "line 1: not valid JSON"}
OUT = {"file": "is a file; expected an output folder"}

# (case, argv with {bad} for the bad path and {model} {data} {responses} {out} {empty} for valid ones, expected phrases)
CASES = [
    ("tiny-model OUT_DIR", ["tiny-model", "smolvlm", "{bad}"], OUT),
    ("data synthetic OUT_DIR", ["data", "synthetic", "{bad}", "--n", "4", "--n-test", "2"], OUT),
    ("data vsr SRC_DIR", ["data", "vsr", "{bad}", "--images", "{empty}", "{out}"],
     {"missing": "VSR folder not found", "empty": "missing train.jsonl", "file": "is a file; expected a VSR folder"}),
    ("data vsr --images", ["data", "vsr", "{empty}", "--images", "{bad}", "{out}"],
     {"missing": "VSR image folder not found", "file": "is a file; expected a VSR image folder"}),
    ("data vsr OUT_DIR", ["data", "vsr", "{empty}", "--images", "{empty}", "{bad}"], OUT),
    ("data rel3d SRC", ["data", "rel3d", "{bad}", "{out}"],
     {"missing": "Rel3D split file not found", "empty": "Rel3D split file not found", "file": "not valid JSON"}),
    ("data spatialsense SRC", ["data", "spatialsense", "{bad}", "{out}"],
     {"missing": "annotations.json not found", "empty": "annotations.json not found", "file": "not valid JSON"}),
    ("data drivingvqa SRC_DIR", ["data", "drivingvqa", "{bad}", "{out}"],
     {"missing": "DrivingVQA folder not found", "empty": "no DrivingVQA file", "file": "is a file; expected a DrivingVQA folder"}),
    ("data text-bias SRC_DIR", ["data", "text-bias", "{bad}", "{out}", "--level", "0.7"], DATA),
    ("data text-bias OUT_DIR", ["data", "text-bias", "{data}", "{bad}", "--level", "0.7"], OUT),
    ("data vision-bias SRC_DIR", ["data", "vision-bias", "{bad}", "{out}", "--strength", "0.5"], DATA),
    ("eval --model", ["eval", "--model", "{bad}", "--data", "{data}", "--out", "{out}"], MODEL),
    ("eval --data", ["eval", "--model", "{model}", "--data", "{bad}", "--out", "{out}"], DATA),
    ("eval --out", ["eval", "--model", "{model}", "--data", "{data}", "--out", "{bad}"], OUT),
    ("train sft -p model", ["train", "sft", "-p", "model", "{bad}", "-p", "data", "{data}", "-p", "out_dir", "{out}"], MODEL),
    ("train sft -p data", ["train", "sft", "-p", "model", "{model}", "-p", "data", "{bad}", "-p", "out_dir", "{out}"], DATA),
    ("train sft -p out_dir", ["train", "sft", "-p", "model", "{model}", "-p", "data", "{data}", "-p", "out_dir", "{bad}"],
     {"file": "is a file; expected an output folder"}),
    ("train grpo -p model", ["train", "grpo", "-p", "model", "{bad}", "-p", "data", "{data}", "-p", "out_dir", "{out}"], MODEL),
    ("train grpo -p data", ["train", "grpo", "-p", "model", "{model}", "-p", "data", "{bad}", "-p", "out_dir", "{out}"], DATA),
    ("train prompt -p model", ["train", "prompt", "-p", "model", "{bad}", "-p", "data", "{data}", "-p", "out_dir", "{out}"], MODEL),
    ("train prompt -p data", ["train", "prompt", "-p", "model", "{model}", "-p", "data", "{bad}", "-p", "out_dir", "{out}"], DATA),
    ("train -f", ["train", "sft", "-f", "{bad}"], YAML),
    ("merge-lora ADAPTER_DIR", ["merge-lora", "{bad}", "{out}"],
     {"missing": "LoRA adapter folder not found", "empty": "no adapter_config.json", "file": "is a file; expected a LoRA adapter folder"}),
    ("merge-lora OUT_DIR", ["merge-lora", "{empty}", "{bad}"], OUT),
    ("judge RESPONSES", ["judge", "{bad}", "--out", "{out}", "--model", "m", "--base-url", "http://127.0.0.1:9"], RESPONSES),
    ("judge --exclude-ids", ["judge", "{responses}", "--out", "{out}", "--model", "m", "--base-url", "http://127.0.0.1:9",
                             "--exclude-ids", "{bad}"], {"missing": "no such id file", "empty": "is a folder; expected an id file"}),
    ("judge --out", ["judge", "{responses}", "--out", "{bad}", "--model", "m", "--base-url", "http://127.0.0.1:9"], OUT),
    ("judge-gt RESPONSES", ["judge-gt", "{bad}", "--data", "{data}", "--out", "{out}"], RESPONSES),
    ("judge-gt --data", ["judge-gt", "{responses}", "--data", "{bad}", "--out", "{out}"], DATA),
    ("judge-gt --out", ["judge-gt", "{responses}", "--data", "{data}", "--out", "{bad}"], OUT),
    ("bench grpo --out", ["bench", "grpo", "--arms", "r1lit", "--out", "{bad}"],
     {"empty": "is a folder; expected the benchmark's JSON file", "file": "not valid JSON"}),
    ("bench grpo --workdir", ["bench", "grpo", "--arms", "r1lit", "--workdir", "{bad}"], OUT),
    ("run -f", ["run", "vsr", "-f", "{bad}"], YAML),
    ("run --run-dir", ["run", "vsr", "--run-dir", "{bad}"], {"file": "is a file; expected a run folder"}),
    ("run --profile", ["run", "vsr", "--slurm", "--profile", "{bad}"], YAML),
    ("status --root", ["status", "--root", "{bad}"], {"missing": "no such runs folder", "file": "is a file; expected a runs folder"}),
    ("cache pack OUT", ["cache", "pack", "{bad}", "--cache", "{empty}"], {"empty": "is a folder; expected the archive's file name"}),
    ("cache pack --cache", ["cache", "pack", "{out}", "--cache", "{bad}"],
     {"missing": "no stage cache to pack", "empty": "holds no finished stage", "file": "is a file; expected a stage cache folder"}),
    ("cache unpack ARCHIVE", ["cache", "unpack", "{bad}", "--cache", "{out}"],
     {"missing": "no such archive", "empty": "is a folder; expected a .tar.gz", "file": "not a packed stage cache"}),
    ("book --manifest", ["book", "--manifest", "{bad}"], YAML),
    ("book --out", ["book", "--out", "{bad}"], OUT),
]


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    "A tiny model, a synthetic dataset and a responses file for its test split: the arguments that are not under test."
    from r1lit.synthetic import build_synthetic
    from r1lit.tiny import build_tiny
    d = tmp_path_factory.mktemp("valid")
    model = build_tiny("smolvlm", d / "model", size="test")
    dd = build_synthetic(d / "data", n=8, n_test=4, seed=0, layout="grid", coord_grid=4, object_size=(0.19, 0.22), trace="lrc")
    (d / "responses.jsonl").write_text("".join(json.dumps({"id": i, "response": "<answer>True</answer>", "answer": "True"}) + "\n"
                                               for i in dd["test"]["id"]))
    (d / "empty").mkdir()
    return {"model": str(model), "data": str(d / "data"), "responses": str(d / "responses.jsonl"), "empty": str(d / "empty")}


def bad_path(tmp_path, kind: str):
    if kind == "missing": return tmp_path / "nope"
    if kind == "empty": (tmp_path / "hollow").mkdir(); return tmp_path / "hollow"
    (tmp_path / "notes.txt").write_text("hello\n"); return tmp_path / "notes.txt"


def scratch_project(tmp_path, monkeypatch):
    "A project folder with the VSR experiment: `run`, `status` and `book` look here, never at the real runs/."
    project = tmp_path / "project"
    (project / "nbs" / "experiments").mkdir(parents=True)
    (project / "settings.ini").write_text("[DEFAULT]\nlib_name = r1lit\n")
    from r1lit.core import project_root
    shutil.copy(project_root() / "nbs" / "experiments" / "vsr.ipynb", project / "nbs" / "experiments" / "vsr.ipynb")
    monkeypatch.setenv("R1LIT_ROOT", str(project))
    monkeypatch.chdir(tmp_path)
    return project


@pytest.mark.parametrize("case,argv,phrases,kind",
                         [pytest.param(c, a, p, k, id=f"{c} [{k}]") for c, a, p in CASES for k in p])
def test_bad_path_gives_one_line_error(case, argv, phrases, kind, valid, tmp_path, monkeypatch, capsys):
    project = scratch_project(tmp_path, monkeypatch)
    bad = bad_path(tmp_path, kind)
    before = bad.read_text() if bad.is_file() else None
    args = [a.format(bad=bad, out=tmp_path / "out", **valid) for a in argv]
    rc = main(args)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("r1lit")]
    assert rc == 2, f"exit status {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"r1lit {args[0]}: error: "), err
    assert str(bad) in lines[0] or bad.name in lines[0], f"the error does not name {bad}: {lines[0]}"
    assert phrases[kind] in lines[0], f"expected {phrases[kind]!r} in: {lines[0]}"
    # nothing lost: the bad path is as it was, and a refused run left no run folder behind
    if before is not None: assert bad.read_text() == before
    if kind == "empty": assert not any(bad.iterdir())
    assert not (project / "runs").exists() or not any((project / "runs").rglob("run.json"))


def test_every_subcommand_is_swept():
    "A new subcommand that takes a path joins the sweep: every subcommand (and data source) appears in CASES."
    from r1lit.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    data = next(a for a in sub.choices["data"]._actions if a.dest == "dataset")
    swept = {" ".join(c.split()[:2]) if c.startswith("data ") else c.split()[0] for c, _, _ in CASES}
    expected = {*(set(sub.choices) - {"data", "demo"}), *(f"data {d}" for d in data.choices)}   # demo takes no path
    assert expected <= swept, f"not swept: {sorted(expected - swept)}"


TRAIN = ["-p", "model", "{model}", "-p", "data", "{data}", "-p", "out_dir", "{out}"]
SYNTHETIC = ["data", "synthetic", "{out}", "--n", "4", "--n-test", "2"]

# (case, argv with {model} {data} {responses} {out} for valid paths and {settings} for a YAML file holding SETTINGS_FILE,
#  what the one line must say)
SETTINGS = [
    ("train sft prompt_style", ["train", "sft", *TRAIN, "-p", "prompt_style", "resoning"],
     "prompt_style: unknown prompt style 'resoning'; known: reasoning, answer_only"),
    ("train sft lr_scheduler", ["train", "sft", *TRAIN, "-p", "lr_scheduler", "cosin"],
     "lr_scheduler: unknown scheduler 'cosin'; known: linear, cosine"),
    ("train grpo rewards", ["train", "grpo", *TRAIN, "-p", "rewards", "{acuracy: 1.0}"],
     "rewards: unknown reward 'acuracy'; known: accuracy, format"),
    ("train grpo rewards weight", ["train", "grpo", *TRAIN, "-p", "rewards", "{accuracy: high}"],
     "rewards: the weight of reward 'accuracy' must be a number, got 'high'"),
    ("train grpo rewards -f", ["train", "grpo", "-f", "{settings}", *TRAIN],
     "rewards: unknown reward 'acuracy'; known: accuracy, format"),
    ("train grpo rewards --preset", ["train", "grpo", "--preset", "study", *TRAIN, "-p", "rewards", "{acuracy: 1.0}"],
     "rewards: unknown reward 'acuracy'; known: accuracy, format"),
    ("train grpo prompt_style", ["train", "grpo", *TRAIN, "-p", "prompt_style", "resoning"],
     "prompt_style: unknown prompt style 'resoning'; known: reasoning"),
    ("train grpo lr_scheduler", ["train", "grpo", *TRAIN, "-p", "lr_scheduler", "cosin"], "lr_scheduler: unknown scheduler 'cosin'"),
    ("train prompt objective", ["train", "prompt", *TRAIN, "-p", "objective", "reason"],
     "objective: unknown objective 'reason'; known: answer, reasoning"),
    ("train prompt prompt_style", ["train", "prompt", *TRAIN, "-p", "prompt_style", "resoning"],
     "prompt_style: unknown prompt style 'resoning'"),
    ("train prompt prompt_style for the objective", ["train", "prompt", *TRAIN, "-p", "prompt_style", "reasoning"],
     "prompt_style: objective 'answer' needs a prompt style without reasoning, not 'reasoning'; known: answer_only"),
    ("train prompt teacher_filter", ["train", "prompt", *TRAIN, "-p", "objective", "reasoning", "-p", "teacher_responses",
                                     "{responses}", "-p", "teacher_filter", "good"],
     "teacher_filter: unknown teacher filter 'good'; known: correct, format, all"),
    ("train prompt lr_scheduler", ["train", "prompt", *TRAIN, "-p", "lr_scheduler", "cosin"], "lr_scheduler: unknown scheduler 'cosin'"),
    ("data synthetic --relations", [*SYNTHETIC, "--relations", "left of", "behind"],
     "relations: unknown relation 'behind'; known: left of, right of"),
    ("data synthetic --shapes", [*SYNTHETIC, "--shapes", "square", "hexagon"], "shapes: unknown shape 'hexagon'; known: square"),
    ("data synthetic --colours", [*SYNTHETIC, "--colours", "red", "teal"], "colours: unknown colour 'teal'; known: red"),
    ("data synthetic --layout", [*SYNTHETIC, "--layout", "spiral"], "layout: unknown layout 'spiral'; known: free, grid"),
    ("data synthetic --trace", [*SYNTHETIC, "--trace", "boxes"], "trace: unknown trace 'boxes'; known: pixel, grid, lrc"),
    ("data synthetic --task", [*SYNTHETIC, "--task", "count"], "task: unknown task 'count'; known: relation, presence"),
    ("data synthetic --train-style", [*SYNTHETIC, "--train-style", "sketch"], "train_style: unknown style 'sketch'; known: flat, noisy"),
    ("data synthetic --shifted-style", [*SYNTHETIC, "--shifted-style", "inked"], "shifted_style: unknown style 'inked'; known: flat"),
    ("run prompt_style", ["run", "vsr", "-p", "prompt_style", "resoning"], "prompt_style: unknown prompt style 'resoning'; known: reasoning"),
    ("run train.grpo.rewards", ["run", "vsr", "-p", "train", "{grpo: {rewards: {acuracy: 1.0}}}"],
     "train.grpo.rewards: unknown reward 'acuracy'; known: accuracy, format"),
    ("run train.sft.prompt_style", ["run", "vsr", "-p", "train", "{sft: {prompt_style: resoning}}"],
     "train.sft.prompt_style: unknown prompt style 'resoning'"),
    ("run train.sft.lr_scheduler", ["run", "vsr", "-p", "train", "{sft: {lr_scheduler: cosin}}"],
     "train.sft.lr_scheduler: unknown scheduler 'cosin'"),
    ("run -f train.grpo.rewards", ["run", "vsr", "-f", "{settings}"], "train.grpo.rewards: unknown reward 'acuracy'"),
    ("run data_options.relations", ["run", "vsr", "-p", "data_options", "{relations: [left of, behind]}"],
     "data_options.relations: unknown relation 'behind'; known: left of"),
    ("run data_options.trace", ["run", "vsr", "-p", "data_options", "{trace: boxes}"], "data_options.trace: unknown trace 'boxes'"),
    ("run data_options.layout", ["run", "vsr", "-p", "data_options", "{layout: spiral}"], "data_options.layout: unknown layout 'spiral'"),
    ("run data_options.shapes", ["run", "vsr", "-p", "data_options", "{shapes: [hexagon]}"], "data_options.shapes: unknown shape 'hexagon'"),
    ("run data_options.colours", ["run", "vsr", "-p", "data_options", "{colours: [teal]}"], "data_options.colours: unknown colour 'teal'"),
    ("run data_options.task", ["run", "vsr", "-p", "data_options", "{task: count}"], "data_options.task: unknown task 'count'"),
    ("run data_options.train_style", ["run", "vsr", "-p", "data_options", "{train_style: sketch}"],
     "data_options.train_style: unknown style 'sketch'"),
    ("run model_options.family", ["run", "vsr", "-p", "model_options", "{family: gpt2}"],
     "model_options.family: unknown tiny model family 'gpt2'; known: "),
    ("run model_options.instruct.lr_scheduler", ["run", "vsr", "-p", "model_options", "{instruct: {lr_scheduler: cosin}}"],
     "model_options.instruct.lr_scheduler: unknown scheduler 'cosin'"),
    ("run --accelerate-config", ["run", "vsr", "--slurm", "--accelerate-config", "bogus"], "no accelerate config 'bogus'"),
]
SETTINGS_FILE = {"train": "rewards: {acuracy: 1.0}\n", "run": "train: {grpo: {rewards: {acuracy: 1.0}}}\n"}


@pytest.mark.parametrize("case,argv,phrase", [pytest.param(c, a, p, id=c) for c, a, p in SETTINGS])
def test_bad_setting_gives_one_line_error(case, argv, phrase, valid, tmp_path, monkeypatch, capsys):
    project = scratch_project(tmp_path, monkeypatch)
    import r1lit.experiments, r1lit.synthetic, r1lit.train
    def started(what):
        def fail(*a, **k): raise AssertionError(f"{what} started before the bad setting was refused")
        return fail
    monkeypatch.setattr(r1lit.train, "train", started("training"))          # the error must come before any work
    monkeypatch.setattr(r1lit.synthetic, "make_scene", started("drawing scenes"))
    monkeypatch.setattr(r1lit.experiments, "run", started("the experiment"))
    (tmp_path / "settings.yaml").write_text(SETTINGS_FILE.get(argv[0], ""))
    fill = {f"{{{k}}}": str(v) for k, v in dict(valid, out=tmp_path / "out", settings=tmp_path / "settings.yaml").items()}
    args = [fill.get(a, a) for a in argv]                 # whole placeholders only: YAML values have braces of their own
    rc = main(args)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("r1lit")]
    assert rc == 2, f"exit status {rc}; stderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith(f"r1lit {args[0]}: error: "), err
    assert phrase in lines[0], f"expected {phrase!r} in: {lines[0]}"
    assert not (tmp_path / "out").exists(), "a refused command wrote its output folder"
    assert not (project / "runs").exists(), "a refused run made a run folder"


def test_bad_choice_of_a_data_flag_is_argparse_usage_error(tmp_path, capsys):
    "A flag whose values argparse knows (`--split-by`) answers as argparse does: usage, one error line, exit status 2."
    with pytest.raises(SystemExit) as e:
        main(["data", "spatialsense", str(tmp_path), str(tmp_path / "out"), "--split-by", "random"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    lines = [l for l in err.splitlines() if l.startswith("r1lit")]
    assert len(lines) == 1 and "argument --split-by: invalid choice: 'random'" in lines[0] and "'predicate'" in lines[0], err


def test_experiment_defaults_pass_the_settings_check():
    "`r1lit run` checks enumerated settings by name at any depth: every experiment's own parameters and settings files pass."
    import ast
    from r1lit.cli import check_settings
    from r1lit.core import project_root, read_yaml_mapping
    from r1lit.experiments import notebook_params
    def value(src: str):
        try: return ast.literal_eval(src)
        except (ValueError, SyntaxError): return None     # an expression: the notebook computes it
    d = project_root() / "nbs" / "experiments"
    for f in sorted(d.glob("*.ipynb")): check_settings({k: value(v) for k, v in notebook_params(f).items()})
    for f in sorted(d.glob("*.yaml")): check_settings(read_yaml_mapping(f))


def test_design_with_a_misspelt_reward_fails_before_its_first_stage(tmp_path):
    "A chapter's design with a misspelt reward in one stage is refused when its arms are read, before any stage runs."
    from r1lit import pipeline
    design = {"stages": {"sft": {"max_steps": 2}, "grpo": {"rewards": {"acuracy": 1.0}}}}
    with pytest.raises(ValueError) as e: pipeline.arm_spec(design, "main")
    assert "'acuracy'" in str(e.value), e.value
    assert str(e.value) == ("arm 'main', stage 'grpo': rewards: unknown reward 'acuracy'; known: accuracy, format, iou, "
                            "choice, cells"), e.value
    shared = {"train": {"grpo": {"rewards": {"acuracy": 1.0}}}, "stages": {"sft": {}, "grpo": {}}}   # every grpo stage's
    with pytest.raises(ValueError, match="stage 'grpo': rewards: unknown reward 'acuracy'"): pipeline.arm_spec(shared, "main")
    # the whole design: a bad second arm stops it before the first arm's first stage (no run folder, no stage)
    arms = {"arms": {"good": {"stages": {"sft": {}}}, "bad": {"stages": {"grpo": {"rewards": {"acuracy": 1.0}}}}}}
    with pytest.raises(ValueError, match="arm 'bad', stage 'grpo': rewards: unknown reward 'acuracy'"):
        pipeline.run_design(tmp_path / "run", arms, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_experiment_settings_files_name_real_parameters():
    "Every YAML settings file in nbs/experiments/ sets only parameters its notebook declares (else papermill ignores them)."
    from r1lit.core import project_root, read_yaml_mapping
    from r1lit.experiments import notebook_params
    d = project_root() / "nbs" / "experiments"
    files = sorted(d.glob("*.yaml"))
    assert files
    for f in files:
        nb = next(nb for nb in sorted(d.glob("*.ipynb"), key=lambda p: -len(p.stem)) if f.stem.startswith(nb.stem))
        unknown = sorted(set(read_yaml_mapping(f)) - set(notebook_params(nb)))
        assert not unknown, f"{f.name}: {unknown} are not parameters of {nb.name}"
