"""Every relative link in the README, the docs and the notebooks points at a file that exists.

A learner who clicks "next lesson" on a code host and lands on a 404 stops trusting the course;
this test is what keeps the links true as lessons are added, renamed or split.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# [text](target) and ![alt](target), the target up to the first space or ')'; <img src="...">.
_MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", re.IGNORECASE)
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def _documents() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    docs += sorted((ROOT / "notebooks").rglob("*.ipynb"))
    return [d for d in docs if d.is_file() and ".ipynb_checkpoints" not in d.parts]


def _markdown_of(path: Path) -> str:
    if path.suffix != ".ipynb":
        return path.read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join(
        "".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"
    )


def relative_links(text: str) -> list[str]:
    """The link targets in ``text`` that name a file of this repository (not a URL or anchor)."""
    targets = _MARKDOWN_LINK.findall(text) + _HTML_SRC.findall(text)
    return [t for t in targets if not _EXTERNAL.match(t)]


def test_the_link_finder_sees_what_a_reader_clicks() -> None:
    text = (
        "See [lesson 1](01_hash_slots.ipynb), ![a plot](img/p.png \"title\"), "
        '<img src="docs/shot.png">, [the spec](https://redis.io/x), [up](#top), '
        "[mail](mailto:a@b)."
    )
    assert relative_links(text) == ["01_hash_slots.ipynb", "img/p.png", "docs/shot.png"]


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in relative_links(_markdown_of(doc)):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to files that do not exist: {broken}"
