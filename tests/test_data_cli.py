"""The `r1lit data` loader and bias commands, run as a user runs them, on the dataset fixtures of `nbs/fixtures/`.

`r1lit data vsr SRC_DIR --images IMG_DIR OUT_DIR` must build a dataset folder in the common schema, reproducibly from
its seed; a missing image or a malformed row must stop it with an error that names the file and the row; the Rel3D,
SpatialSense and DrivingVQA commands build theirs; and the bias commands write new folders whose validation and test
splits are bit-identical to the source's."""
import json, shutil, subprocess, sys
from pathlib import Path

import pytest

from r1lit.data import FEATURES, dataset_info, load_dataset_dir

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "nbs" / "fixtures"
VSR = FIX / "vsr"

pytestmark = pytest.mark.timeout(300)


def r1lit(*args, cwd):
    "Run `python -m r1lit.cli ARGS`; returns the CompletedProcess."
    return subprocess.run([sys.executable, "-m", "r1lit.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=240, cwd=cwd)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"
    return r


def sizes(dd):
    return {k: len(v) for k, v in dd.items()}


def test_data_vsr_builds_seeded_dataset(tmp_path):
    out = tmp_path / "vsr"
    r = ok(r1lit("data", "vsr", VSR, "--images", VSR / "images", out, "--n-train", 20, "--seed", 1, cwd=tmp_path))
    assert "train=20, validation=8, test=8" in r.stdout
    dd = load_dataset_dir(out)
    assert sizes(dd) == {"train": 20, "validation": 8, "test": 8}
    assert dd["train"].features == FEATURES
    row = dd["validation"][0]
    src = json.loads((VSR / "dev.jsonl").read_text().splitlines()[0])
    assert (row["text"], row["answer"], row["relation"]) == (src["caption"], str(bool(src["label"])), src["relation"])
    assert row["image"].size == (48, 48)
    info = dataset_info(out)
    assert info["generator"] == "r1lit.loaders.load_vsr" and info["report"]["seed"] == 1
    assert info["report"]["rows_read"] == {"train": 30, "validation": 8, "test": 8}
    # the same seed draws the same rows, another seed other rows; 'all' keeps the whole split
    ok(r1lit("data", "vsr", VSR, "--images", VSR / "images", tmp_path / "same", "--n-train", 20, "--seed", 1, cwd=tmp_path))
    ok(r1lit("data", "vsr", VSR, "--images", VSR / "images", tmp_path / "other", "--n-train", 20, "--seed", 2, cwd=tmp_path))
    assert load_dataset_dir(tmp_path / "same")["train"]["id"] == dd["train"]["id"]
    assert load_dataset_dir(tmp_path / "other")["train"]["id"] != dd["train"]["id"]
    ok(r1lit("data", "vsr", VSR, "--images", VSR / "images", tmp_path / "all", "--n-train", "all", cwd=tmp_path))
    assert len(load_dataset_dir(tmp_path / "all")["train"]) == 30


def test_data_vsr_missing_image_and_bad_row(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(VSR, src)
    gone = json.loads((src / "test.jsonl").read_text().splitlines()[1])["image"]
    (src / "images" / gone).unlink()
    r = r1lit("data", "vsr", src, "--images", src / "images", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "1 of 46 rows have a missing image file" in r.stderr and gone in r.stderr and "test.jsonl, row 2" in r.stderr
    assert "--allow-missing" in r.stderr
    assert not (tmp_path / "out").exists()
    r = ok(r1lit("data", "vsr", src, "--images", src / "images", tmp_path / "out", "--allow-missing", cwd=tmp_path))
    assert "dropped 1 rows with a missing image" in r.stdout
    assert dataset_info(tmp_path / "out")["report"]["missing_images"] == {"train": 0, "validation": 0, "test": 1}
    assert len(load_dataset_dir(tmp_path / "out")["test"]) == 7

    lines = (src / "train.jsonl").read_text().splitlines()
    rec = json.loads(lines[1]); del rec["caption"]; lines[1] = json.dumps(rec)
    (src / "train.jsonl").write_text("\n".join(lines) + "\n")
    r = r1lit("data", "vsr", src, "--images", src / "images", tmp_path / "bad", "--allow-missing", cwd=tmp_path)
    assert r.returncode == 2 and "train.jsonl, row 2: missing field 'caption'" in r.stderr, r.stderr


def test_data_rel3d_spatialsense_drivingvqa(tmp_path):
    ok(r1lit("data", "rel3d", FIX / "rel3d" / "data" / "c_0.9_c_0.1.json", tmp_path / "rel3d", "--crop", cwd=tmp_path))
    dd = load_dataset_dir(tmp_path / "rel3d")
    assert sizes(dd) == {"train": 12, "validation": 4, "test": 4}
    assert json.loads(dd["test"][0]["meta"])["crop"] is not None
    ok(r1lit("data", "spatialsense", FIX / "spatialsense", tmp_path / "ss", "--split-by", "file", "--n-train", "all", cwd=tmp_path))
    assert sizes(load_dataset_dir(tmp_path / "ss")) == {"train": 24, "validation": 9, "test": 9}
    ok(r1lit("data", "drivingvqa", FIX / "drivingvqa", tmp_path / "dv", "--max-pixels", 10000, cwd=tmp_path))
    dv = load_dataset_dir(tmp_path / "dv")
    assert sizes(dv) == {"train": 5, "test": 3}
    assert dataset_info(tmp_path / "dv")["report"]["too_large"] == {"train": 0, "test": 1}
    assert all(r["options"] and r["reasoning"] for r in dv["train"])


def test_data_bias_commands(tmp_path):
    ok(r1lit("data", "vsr", VSR, "--images", VSR / "images", tmp_path / "vsr", "--n-train", "all", cwd=tmp_path))
    r = ok(r1lit("data", "text-bias", tmp_path / "vsr", tmp_path / "text", "--keep-ratio", 0, "--seed", 1, cwd=tmp_path))
    assert "level" in r.stdout and "-> 1.000" in r.stdout
    ok(r1lit("data", "vision-bias", tmp_path / "vsr", tmp_path / "vision", "--strength", 1, cwd=tmp_path))
    src = load_dataset_dir(tmp_path / "vsr")
    for name in ("text", "vision"):
        new = load_dataset_dir(tmp_path / name)
        for split in ("validation", "test"):
            assert new[split].data.table.equals(src[split].data.table), (name, split)
    assert len(load_dataset_dir(tmp_path / "text")["train"]) < len(src["train"])
    r = r1lit("data", "vision-bias", tmp_path / "vsr", tmp_path / "vsr", "--strength", 1, cwd=tmp_path)
    assert r.returncode == 2 and "new folder" in r.stderr, r.stderr
