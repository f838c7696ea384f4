"""Every experiment chapter runs end to end through `r1lit.experiments.run` on test-size models and two seeds: each run
finishes, its metrics.json has the shape every chapter shares (seeds, arms, tests), every glued number equals its
metrics entry, every number the prose quotes was glued, and the study's figures are labelled as the study's. The runs
share one stage cache, so the base model and the SFT run that several chapters reuse are built once."""
import json, re

import pytest

from r1lit.book import check_glue, glued
from r1lit.core import read_json
from r1lit.experiments import flatten, read_run, run

pytestmark = pytest.mark.timeout(600)

REL = ["left of", "right of", "above", "below"]
TINY = {"seeds": [0, 1], "model_options": {"family": "smolvlm", "size": "test"},
        "data_options": {"n": 32, "n_test": 12, "layout": "grid", "coord_grid": 4, "object_size": [0.19, 0.22],
                         "trace": "lrc", "relations": REL},
        "train": {"sft": {"lora": False, "learning_rate": 1e-3, "max_steps": 4, "batch_size": 4, "save_steps": 2,
                          "save_total_limit": None, "logging_steps": 1, "report_to": "none"},
                  "grpo": {"lora": False, "max_steps": 2, "batch_size": 4, "num_generations": 4, "max_completion_length": 12,
                           "rewards": {"accuracy": 1.0, "format": 0.5}, "save_steps": 1000, "logging_steps": 1,
                           "report_to": "none"}},
        "eval_options": {"batch_size": 16, "max_new_tokens": 12}}
BIAS_ARMS = {"unbiased": {"stages": {"sft": {}}, "evaluate": ["sft"]},
             "biased_100": {"data_options": {"text_bias": 1.0}, "stages": {"sft": {}, "grpo": {"start": "sft@2", "max_steps": 2}},
                            "evaluate": ["sft", "sft@4", "grpo"]}}
BIAS_TESTS = {"sft_biased_vs_unbiased_against": {"a": ["unbiased", "sft"], "b": ["biased_100", "sft"], "split": "in_domain",
                                                 "shortcut": ["biased_100", "against"]},
              "grpo_vs_sft_against": {"a": ["biased_100", "sft@4"], "b": ["biased_100", "grpo"], "split": "in_domain",
                                      "shortcut": ["biased_100", "against"]}}
PARAMS = {
    "vsr": {"mid_step": 2, "extra_steps": 2},
    "alignment": {"mid_step": 2, "extra_steps": 2, "checkpoints": [2]},
    "grounding": {"grpo_start": "sft@2", "grpo_steps": 2},
    "sim2real": {},
    "bias": {"arms": BIAS_ARMS, "tests": BIAS_TESTS,
             "hypotheses": {"sft_biased_vs_unbiased_against": ["-", "biased SFT is worse against the shortcut"],
                            "grpo_vs_sft_against": ["+", "GRPO resists the shortcut"]}},
    "prompt_tuning": {"soft_prompt": {"n_virtual_tokens": 4, "steps": 2, "batch_size": 4, "learning_rate": 0.1,
                                      "save_steps": 1000, "logging_steps": 1, "init_text": None}},
    "smolvlm": {},
}
FRACTION = re.compile(r"(accuracy|ci_low|ci_high|_p|misaligned|format|parsed|reasoning_true|facts_true|zero_spread.*)$")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stage-cache")


def prose_keys(nb: dict) -> set:
    "Every key the notebook's markdown quotes with {glue:text}`key`."
    return {k.split(":")[0] for c in nb["cells"] if c["cell_type"] == "markdown"
            for k in re.findall(r"\{glue:text\}`([^`]+)`", "".join(c["source"]))}


@pytest.mark.parametrize("name", list(PARAMS))
def test_chapter_runs(project, cache, monkeypatch, name):
    monkeypatch.setenv("R1LIT_CACHE", str(cache))
    d = run(name, {**TINY, **PARAMS[name]}, echo=False)
    assert read_run(d)["state"] == "done"
    metrics = read_json(d / "metrics.json")
    # the shape every chapter shares
    assert metrics["seeds"] == [0, 1] and metrics["arms"] and metrics["tests"]
    for arm in metrics["arms"].values():
        assert {"n", "accuracy", "ci95", "per_seed"} <= set(arm) and 0 <= arm["accuracy"] <= 1
    for t in metrics["tests"].values():
        assert {"a", "b", "statistic", "p", "effect", "ci95", "n", "per_seed"} <= set(t)
        if t["n"] == 0:      # a random test-size model states no reasoning to judge: the test says so, with no number
            assert t["reason"] and t["p"] is None and t["effect"] is None; continue
        assert 0 <= t["p"] <= 1 and t["ci95"][0] <= t["effect"] <= t["ci95"][1] + 1e-9 and t["n"] > 0
        assert [s["seed"] for s in t["per_seed"]] == [0, 1] or t["metric"] != "correct"
    for t in metrics["tests"].values():     # the seed-level analysis the verdicts read, beside every pooled test
        assert {"effect", "ci95", "p", "k", "method"} <= set(t["seed_level"])
        assert t["seed_level"]["k"] == len(t["seed_level"]["per_seed"]) <= 2
    nb = json.loads((d / "notebook.ipynb").read_text())
    g = glued(nb)
    flat = flatten(metrics)
    assert g and set(g) <= set(flat), f"glued but not in metrics.json: {sorted(set(g) - set(flat))}"
    check_glue(nb, metrics, f"{name}.ipynb")
    assert prose_keys(nb) <= set(g), f"quoted in the prose but never glued: {sorted(prose_keys(nb) - set(g))}"
    assert "tiny" in metrics["setting"] and "synthetic scenes" in metrics["setting"]
    # the Discussion reads every registered hypothesis against a test this run made
    disc = "".join("".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"] if c["cell_type"] == "code"
                   and "report.verdicts" in "".join(c["source"]) for o in c.get("outputs", []))
    assert (disc.startswith("- **") or "\n- **" in disc) and " against " in disc and "did not make" not in disc, disc
    bad = {k: v for k, v in flat.items() if FRACTION.search(k) and isinstance(v, float) and not 0 <= v <= 1}
    assert not bad, f"not fractions: {bad}"
    assert "reported by the original study" in (d / "notebook.ipynb").read_text()
    text = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                   for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "Traceback" not in text


def test_alignment_llm_over_a_vsr_run(project, cache, monkeypatch):
    """The LLM-judge chapter over a finished (tiny) VSR run, against the scripted local judge server: every response of
    both compared models is judged, training ids are refused, and the test pools both seeds over the same items."""
    from judge_server import ScriptedJudgeServer
    monkeypatch.setenv("R1LIT_CACHE", str(cache))
    key = "sk-r1lit-fake-" + "0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    vsr = run("vsr", {**TINY, **PARAMS["vsr"]}, echo=False)            # stages come from the shared cache
    server = ScriptedJudgeServer().start()
    try:
        d = run("alignment_llm", {"responses_from": str(vsr), "compare": [["sft", "sft"], ["grpo", "grpo"]],
                                  "judge_model": "judge-test", "judge_base_url": server.url,
                                  "judge_options": {"backoff": 0.05, "concurrency": 4}}, echo=False)
    finally:
        server.stop()
    assert read_run(d)["state"] == "done"
    m = read_json(d / "metrics.json")
    assert set(m["tests"]) == {"in_domain", "shifted"}
    n_test = TINY["data_options"]["n_test"]
    for t in m["tests"].values():              # the scripted judge calls every item aligned: no difference, over 2 seeds
        assert t["n_seeds"] == 2 and t["n"] == 2 * n_test and t["effect"] == 0 and t["p"] == 1.0
    assert len(m["alignment"]) == 2 * 2 * 2 and not any(r["n_errors"] for r in m["alignment"])   # 2 models x 2 splits x 2 seeds
    assert len(server.log) == 2 * 2 * 2 * n_test
    for f in d.rglob("*"):
        if f.is_file() and f.suffix in (".ipynb", ".json", ".jsonl", ".txt", ".yaml"): assert key not in f.read_text(), f


def test_chapters_share_one_embedded_default():
    """The chapters' embedded defaults share the base model, scenes, training settings and seeds, so the stage cache
    trains each shared stage once for the whole book; a chapter that drifts from the others would silently train its
    own copies (and its numbers would no longer be about the same models)."""
    import ast
    from r1lit.core import project_root
    from r1lit.experiments import notebook_params
    shared = ("seeds", "data_seed", "model", "model_options", "data", "data_options", "train", "eval_options", "prompt_style")
    defaults = {ch: notebook_params(project_root() / "nbs" / "experiments" / f"{ch}.ipynb") for ch in PARAMS}
    for k in shared:
        vals = {ch: ast.literal_eval(p[k]) for ch, p in defaults.items() if k in p}
        assert len(vals) >= 6, (k, sorted(vals))
        first = next(iter(vals.values()))
        assert all(v == first for v in vals.values()), f"{k} differs: {[ch for ch, v in vals.items() if v != first]}"
