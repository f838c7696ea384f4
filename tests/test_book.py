"""The book: built from a fixture run folder, every glued headline number in the HTML equals metrics.json, and
the built pages render in headless chromium (screenshots go to artifacts/)."""
import html, json, re, time

import pytest

from r1lit.book import build_book, glued
from r1lit.core import read_json
from conftest import ARTIFACTS
from browser import PAGE_CHECK
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


def page_check(browser, path, shot=None) -> dict:
    "Open a built page in chromium and measure it (see browser.PAGE_CHECK); optionally save a screenshot."
    browser.open(path.as_uri())
    res = browser.evaluate(PAGE_CHECK)
    if shot: browser.screenshot(shot)
    return res


def test_book_renders_in_chromium(built_book, chromium):
    project, d, index = built_book
    from browser import Browser
    b = Browser()
    try:
        res = page_check(b, index.parent / "book" / "_generated" / "vsr.html")
        assert res["images"] >= 1 and res["loaded"] == res["images"], res      # the chapter's figure loads
        assert not res["bad"] and not res["wide"] and not res["page_wider"], res
        dom = b.evaluate("document.documentElement.outerHTML")
        assert "{glue" not in dom and "glue_ref" not in dom and "??" not in dom and "pasted-text" in dom
    finally:
        b.close()


def test_committed_book_in_chromium(chromium, tmp_path):
    """The book of this checkout's committed runs, in a real browser: the front page shows the findings table and its
    figure; every chapter with a run shows at least one figure that loads; no prose shows None, nan or an absolute
    path; nothing is wider than the content column. Screenshots of the front page and two chapters go to artifacts/."""
    from browser import Browser
    from r1lit.book import build_book, load_manifest
    from r1lit.core import project_root
    root = project_root()
    index = build_book(out=tmp_path, root=root)
    gen = index.parent / "book" / "_generated"
    chapters = [ch for ch in load_manifest(root=root)["chapters"] if (gen / f"{ch}.html").exists()
                and "Not yet run" not in (gen / f"{ch}.html").read_text()]
    assert chapters, "no chapter has a committed run"
    ARTIFACTS.mkdir(exist_ok=True)
    b = Browser()
    try:
        front = page_check(b, gen / "index.html", ARTIFACTS / "book-front.png")
        table = b.evaluate("[...document.querySelectorAll('article table th')].map(e => e.innerText).join('|')")
        assert "reported by the original study" in table and "r1lit" in table, table
        assert front["loaded"] >= 1 and not front["bad"] and not front["wide"], front
        for i, ch in enumerate(chapters):
            res = page_check(b, gen / f"{ch}.html", ARTIFACTS / f"book-{ch}.png" if i < 2 else None)
            assert res["images"] >= 1 and res["loaded"] == res["images"], (ch, res)
            assert not res["bad"] and not res["wide"] and not res["page_wider"], (ch, res)
        for m in sorted((gen / "methods").glob("*.html"))[:5]:              # module pages render too
            res = page_check(b, m)
            assert not res["wide"] and not res["page_wider"], (m.name, res)
    finally:
        b.close()


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
