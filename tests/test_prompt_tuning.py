"""The prompt-tuning chapter runs end to end through `r1lit.experiments.run` on a test-size model: the run finishes,
every glued number equals its metrics.json entry, every arm's accuracy is a fraction, and the study's figure is shown
as reported by the original study."""
import json

import pytest

from r1lit.book import REPORTED_LABEL, check_glue, glued
from r1lit.core import read_json
from r1lit.experiments import read_run, run

pytestmark = pytest.mark.timeout(400)

PARAMS = {"data_options": {"n": 16, "n_test": 8, "trace": "grid", "relations": ["left of", "right of", "above", "below"]},
          "soft_prompt": {"n_virtual_tokens": 4, "steps": 2, "batch_size": 4, "learning_rate": 0.1, "save_steps": 1000,
                          "logging_steps": 1},
          "sft": {"lora": True, "learning_rate": 1e-3, "max_steps": 2, "batch_size": 4, "save_steps": 1000,
                  "logging_steps": 1, "report_to": "none"},
          "eval_options": {"batch_size": 8, "max_new_tokens": 8}}
ARMS = ("base", "answer", "reasoning", "sft")


def test_prompt_tuning_chapter(project):
    d = run("prompt_tuning", PARAMS, echo=False)
    assert read_run(d)["state"] == "done"
    metrics = read_json(d / "metrics.json")
    nb = json.loads((d / "notebook.ipynb").read_text())
    assert glued(nb), "the notebook glued nothing"
    assert set(glued(nb)) <= set(metrics), f"glued but not in metrics.json: {sorted(set(glued(nb)) - set(metrics))}"
    check_glue(nb, metrics, "prompt_tuning.ipynb")
    for arm in ARMS:
        a = metrics[f"prompt_tuning_{arm}_accuracy"]
        assert 0 <= a <= 1, f"{arm}: accuracy {a} is not a fraction"
        assert metrics[f"prompt_tuning_{arm}_ci_low"] <= a <= metrics[f"prompt_tuning_{arm}_ci_high"]
        assert metrics[f"prompt_tuning_{arm}_n"] == 8
    assert "tiny model, synthetic scenes" in metrics["prompt_tuning_setting"]
    text = json.dumps(nb)
    assert REPORTED_LABEL == "reported by the original study" and REPORTED_LABEL in text
