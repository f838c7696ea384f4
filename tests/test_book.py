"""The book: built from a fixture run folder, every glued headline number in the HTML equals metrics.json, and
the built pages render in headless chromium (screenshots go to artifacts/)."""
import html, json, re, time

import pytest

from r1lit.book import build_book, glued
from r1lit.core import read_json
from conftest import ARTIFACTS
from r1lit.experiments import flatten, run

pytestmark = pytest.mark.timeout(400)

MANIFEST = ("chapters:\n  vsr: {experiment: glued, run: latest, title: Toy accuracy}\n"
            "  bias: {experiment: bias, run: latest, title: Text bias}\n")


@pytest.fixture
def built_book(project):
    t0 = time.time()
    d = run("glued", {"n": 40, "seed": 3}, echo=False)
    t1 = time.time()
    (project / "book" / "manifest.yml").write_text(MANIFEST)
    index = build_book(root=project)
    print(f"fixture run {t1 - t0:.1f}s, book build {time.time() - t1:.1f}s")
    return project, d, index


def test_glued_numbers_equal_metrics(built_book):
    project, d, index = built_book
    metrics = read_json(d / "metrics.json")
    page = (index.parent / "book" / "_generated" / "vsr.html").read_text()
    pasted = [html.unescape(t) for t in re.findall(r'<span class="pasted-text">(.*?)</span>', page)]
    # the prose says: "answered {n_correct} of {n} items correctly: accuracy {accuracy}"
    assert pasted == [str(metrics["n_correct"]), str(metrics["n"]), str(metrics["accuracy"])], pasted
    assert metrics["n"] == 40 and 0 < metrics["accuracy"] < 1
    assert glued(index.parent.parent.parent / "book" / "_generated" / "vsr.ipynb") == {k: str(v) for k, v in metrics.items()}
    assert "{glue" not in page and "reported by the original study" in page
    # chapters without a run say so, and never show a number
    bias = (index.parent / "book" / "_generated" / "bias.html").read_text()
    assert "Not yet run" in bias and "pasted-text" not in bias
    repro = (index.parent / "book" / "_generated" / "reproducibility.html").read_text()
    assert d.name in repro and read_json(d / "run.json")["commit"] is None or read_json(d / "run.json")["commit"][:10] in repro


def test_book_renders_in_chromium(built_book, chromium, tmp_path):
    project, d, index = built_book
    ARTIFACTS.mkdir(exist_ok=True)
    # index.html is a meta-refresh to the introduction; a screenshot of a redirect stub comes out empty
    target = re.search(r'url=([^"]+)"', index.read_text()).group(1)
    for name, path in [("index", index.parent / target), ("chapter", index.parent / "book" / "_generated" / "vsr.html")]:
        dom = chromium(path.as_uri(), "--dump-dom", "--virtual-time-budget=3000")
        assert "</html>" in dom and "r1lit" in dom
        assert "{glue" not in dom and "glue_ref" not in dom and "??" not in dom
        if name == "chapter":
            assert re.search(r'<img[^>]+src="[^"]+\.png"', dom), "the chapter's figure is missing"
            assert "pasted-text" in dom
        shot = ARTIFACTS / f"book-{name}.png"
        shot.unlink(missing_ok=True)
        chromium(path.as_uri(), f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars")
        assert shot.exists() and shot.stat().st_size > 10_000, shot


def test_vsr_chapter_glue_matches_its_run(project):
    """The real VSR notebook, run with a tiny model: every number pasted into the chapter's prose is the value of the
    glue key it names in metrics.json of that run (flattened as the chapter glues it)."""
    from test_chapters import TINY
    d = run("vsr", {**TINY, "mid_step": 2, "extra_steps": 2}, echo=False)
    index = build_book(root=project)
    metrics = read_json(d / "metrics.json")
    flat = flatten(metrics)
    nb = json.loads((d / "notebook.ipynb").read_text())
    prose = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    keys = re.findall(r"\{glue:text\}`([^`:]+)(?::[^`]*)?`", prose)
    assert len(keys) >= 6, keys
    page = (index.parent / "book" / "_generated" / "vsr.html").read_text()
    pasted = [html.unescape(t) for t in re.findall(r'<span class="pasted-text">(.*?)</span>', page)]
    assert len(pasted) == len(keys), (pasted, keys)
    for k, text in zip(keys, pasted):
        assert k in flat, k
        assert text == str(flat[k]), (k, text, flat[k])
    assert "{glue" not in page and "reported by the original study" in page
    assert re.search(r'<img[^>]+src="[^"]+\.png"', page), "the accuracy figure is missing"
