"""The grounding experiment notebook run through `r1lit.experiments.run` with the DrivingVQA parameter file on the
loader's fixture and a tiny Qwen2.5-VL: the raw release is read by the loader, the SFT targets' boxes are rewritten into
the model's frame, SFT with LoRA, three GRPO reward arms and the grounding evaluation in original pixels, a few steps
each, inside a scratch project."""
import json
from pathlib import Path

import pytest
import yaml

from r1lit.core import read_json, read_jsonl
from r1lit.experiments import read_run, run
from r1lit.pipeline import Results

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "nbs" / "experiments" / "grounding_drivingvqa_fixture.yaml"
FIXTURE = ROOT / "nbs" / "fixtures" / "drivingvqa"


def test_grounding_drivingvqa_fixture(project):
    spec = yaml.safe_load(PARAMS.read_text())
    arms = spec["reward_arms"]
    d = run("grounding", {"data": str(FIXTURE)}, param_file=PARAMS, echo=False)
    rec = read_run(d)
    assert rec["state"] == "done", rec.get("error")
    res = Results.load(d)
    n_test = len(json.loads((FIXTURE / "test.json").read_text()))
    m = read_json(d / "metrics.json")
    for a in arms:
        ar = next(x for x in res.arms if x.arm == a)
        assert ar.training["sft"]["global_step"] == spec["train"]["sft"]["max_steps"]
        assert ar.training["grpo"]["global_step"] == spec["train"]["grpo"]["max_steps"]
        (e,) = res.evaluations(arm=a, model="grpo")
        assert e.n == n_test and e.grounding is not None
        folder = res.path(e.dir)
        assert len({r["id"] for r in read_jsonl(folder / "responses.jsonl")}) == n_test
        g = read_json(folder / "grounding.json")
        assert g["box_frame"] == {"family": "qwen2_5_vl", "frame": "input_pixels"}
        for k in ("accuracy", "partial", "cites_box"):
            assert g[k] is not None and 0 <= g[k] <= 1, (a, k, g[k])
        assert len(list(read_jsonl(folder / "grounding.jsonl"))) == n_test
        # the training targets were rewritten into the model's frame, and the IoU arms got the per-row scale
        grpo_cfg = read_json(res.path(ar.models["grpo"]).parent / "train_config.json")
        assert grpo_cfg["rewards"] == arms[a]
        assert read_json(Path(grpo_cfg["data"]) / "r1lit_dataset.json")["generator"] == "r1lit.grounding.model_frame_dataset"
    assert set(m["tests"]) == {f"{k}_{a}_vs_acc_format" for k in ("iou", "accuracy") for a in arms if a != "acc_format"}
    assert "reported by the original study" in (d / "notebook.ipynb").read_text()
