"""A key planted in the environment never reaches a run folder or the built book, even when a notebook prints it."""
import pytest

from r1lit.book import build_book
from r1lit.experiments import run

pytestmark = pytest.mark.timeout(400)

FAKE = "sk-r1lit-fake-4e1c2a9b7d0f3e6a5c8b"


def test_planted_key_is_redacted_everywhere(project, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE)
    d = run("glued", {"n": 16}, echo=False)
    (project / "book" / "manifest.yml").write_text("chapters:\n  vsr: {experiment: glued, run: latest, title: Toy}\n")
    index = build_book(root=project)
    nb = (d / "notebook.ipynb").read_text()
    assert "a careless cell prints the key: [REDACTED]" in nb          # the cell ran and printed it
    scanned = 0
    for root in (d, index.parent):
        for f in root.rglob("*"):
            if f.is_file():
                scanned += 1
                assert FAKE.encode() not in f.read_bytes(), f"secret found in {f}"
    assert scanned > 20
