"""The bias, sim2real, alignment and SmolVLM chapters run end to end through `r1lit.experiments.run` on test-size
models: each run finishes, its metrics.json holds every number glued into the executed notebook (and every number the
prose quotes), the glued values equal the metrics, and rates are fractions."""
import json, re

import pytest

from r1lit.book import check_glue, glued
from r1lit.core import read_json
from r1lit.experiments import read_run, run

pytestmark = pytest.mark.timeout(400)

REL = ["left of", "right of", "above", "below"]
DATA = {"n": 32, "n_test": 16, "trace": "grid", "relations": REL}
SFT = {"lora": False, "learning_rate": 2e-3, "max_steps": 3, "batch_size": 8, "save_steps": 1000, "report_to": "none"}
GRPO = {"lora": False, "max_steps": 1, "batch_size": 4, "num_generations": 4, "max_completion_length": 8,
        "rewards": {"accuracy": 1.0}, "save_steps": 1000, "report_to": "none"}
EVAL = {"batch_size": 16, "max_new_tokens": 8}
COMMON = {"data_options": DATA, "sft": SFT, "grpo": GRPO, "eval_options": EVAL}

PARAMS = {
    "bias": {**COMMON, "arms": {"unbiased": {"stages": ["base", "sft", "grpo"]},
                                "strongly text-biased (0.997)": {"data_options": {"text_bias": 0.994}},
                                "vision-biased": {"data_options": {"vision_bias": 1.0}, "stages": ["sft"]}}},
    "sim2real": {**COMMON, "eval_options": {"batch_size": 16, "max_new_tokens": 12}},
    "alignment": {**COMMON, "eval_options": {"batch_size": 16, "max_new_tokens": 12}},
    "smolvlm": {**COMMON, "arms": {"unbiased": {"stages": ["base", "sft", "grpo"]},
                                   "strongly text-biased": {"data_options": {"text_bias": 0.994}, "stages": ["sft"]}}},
}

FRACTION = re.compile(r"(accuracy|ci_low|ci_high|_level|shortcut|misaligned|cue_agreement|cue_share|format|parsed|reasoning_true)$|_p_")


def prose_keys(nb: dict) -> set:
    "Every key the notebook's markdown quotes with {glue:text}`key`."
    return {k.split(":")[0] for c in nb["cells"] if c["cell_type"] == "markdown"
            for k in re.findall(r"\{glue:text\}`([^`]+)`", "".join(c["source"]))}


@pytest.mark.parametrize("name", list(PARAMS))
def test_chapter_runs(project, name):
    d = run(name, PARAMS[name], echo=False)
    assert read_run(d)["state"] == "done"
    metrics = read_json(d / "metrics.json")
    nb = json.loads((d / "notebook.ipynb").read_text())
    g = glued(nb)
    assert g, "the notebook glued nothing"
    assert set(g) <= set(metrics), f"glued but not in metrics.json: {sorted(set(g) - set(metrics))}"
    check_glue(nb, metrics, f"{name}.ipynb")
    assert prose_keys(nb) <= set(g), f"quoted in the prose but never glued: {sorted(prose_keys(nb) - set(g))}"
    assert f"{name}_setting" in metrics and "tiny model, synthetic scenes" in metrics[f"{name}_setting"]
    bad = {k: v for k, v in metrics.items() if FRACTION.search(k) and v is not None and not 0 <= v <= 1}
    assert not bad, f"not fractions: {bad}"
    assert "reported by the original study" in (d / "notebook.ipynb").read_text()
    if name in ("bias", "smolvlm"):
        assert metrics[f"{name}_unbiased_sft_test_n"] == 16
        level = metrics[f"{name}_strongly_text_biased_0_997_text_level" if name == "bias" else f"{name}_strongly_text_biased_text_level"]
        assert level > 0.9 and metrics[f"{name}_unbiased_text_level"] < level, metrics
    if name == "bias":
        assert metrics["bias_vision_biased_cue_agreement"] == 1.0
    if name == "sim2real":
        assert metrics["sim2real_source"] == "style_A" and metrics["sim2real_target"] == "style_B"
        assert metrics["sim2real_sft_style_B_n"] == 16
    if name == "alignment":
        assert metrics["alignment_base_test_n"] == 16 and metrics["alignment_split"] == "test"
