"""The grounding experiment notebook run through `r1lit.experiments.run` with the DrivingVQA parameter file on the
loader's fixture and a tiny Qwen2.5-VL: the raw release is read by the loader, SFT with LoRA, merge, three GRPO arms
and the grounding evaluation, a few steps each, inside a scratch project."""
import json
from pathlib import Path

import pytest
import yaml

from r1lit.core import read_json, read_jsonl
from r1lit.experiments import read_run, run

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "nbs" / "experiments" / "grounding_drivingvqa_fixture.yaml"
FIXTURE = ROOT / "nbs" / "fixtures" / "drivingvqa"


def test_grounding_drivingvqa_fixture(project):
    spec = yaml.safe_load(PARAMS.read_text())
    arms = spec["arms"]
    d = run("grounding", {"data": str(FIXTURE)}, param_file=PARAMS, echo=False)
    rec = read_run(d)
    assert rec["state"] == "done", rec.get("error")
    assert d.parent == project / "runs" / "grounding"

    # each stage's output exists
    stages = read_json(d / "stages.json")
    expected = {"data", "model", "frame", "sft", "merge", *(f"grpo_{a}" for a in arms)}
    assert expected <= set(stages) and all(stages[s]["done"] for s in expected), stages
    assert (d / "data" / "dataset_dict.json").exists() and (d / "data_model_frame" / "dataset_dict.json").exists()
    assert read_json(d / "sft" / "result.json")["global_step"] == spec["sft"]["max_steps"]
    assert (d / "sft" / "adapter" / "adapter_config.json").exists()
    assert (d / "sft_merged" / "config.json").exists()
    for a in arms:
        res = read_json(d / "grpo" / a / "result.json")
        assert res["global_step"] == spec["grpo"]["max_steps"] and (Path(res["model_dir"]) / "config.json").exists()
        assert read_json(d / "grpo" / a / "train_config.json")["rewards"] == arms[a]

    # evaluation: n equals the split size, every id once, scores are fractions
    n_test = len(json.loads((FIXTURE / "test.json").read_text()))
    m = read_json(d / "metrics.json")
    models = ["sft", *(f"grpo_{a}" for a in arms)]
    for name in models:
        e = d / "eval" / name / "test"
        assert len({r["id"] for r in read_jsonl(e / "responses.jsonl")}) == n_test
        g = read_json(e / "grounding.json")
        assert g["n"] == n_test == m[f"grounding_{name}_test_n"]
        assert g["box_frame"] == {"family": "qwen2_5_vl", "frame": "input_pixels"}
        for k in ("accuracy", "partial", "cites_box", "iou"):
            assert g[k] is not None and 0 <= g[k] <= 1, (name, k, g[k])
            assert m[f"grounding_{name}_test_{k}"] == round(g[k], 4)
        assert all(0 <= v <= 1 for v in [*g["ci95"], *g["cites_box_ci95"], *g["iou_ci95"]])
        assert len(list(read_jsonl(e / "grounding.jsonl"))) == n_test
    assert sorted(m["summary"]["scores"]) == sorted(models)
    nb = (d / "notebook.ipynb").read_text()
    assert "reported by the original study" in nb
