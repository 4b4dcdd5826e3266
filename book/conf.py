"""Sphinx configuration of the course's site: ``make book`` builds it into build/book/.

The source directory is the repository's root, so the notebooks and docs/ are read where they
live (no copies to drift); ``include_patterns`` picks the course out of it. The notebooks are
rendered with the outputs stored in them: nothing is executed (``nb_execution_mode = "off"``).
The landing page is book/index.md; build/book/index.html sends a browser on to it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sphinx import addnodes
from sphinx.transforms.post_transforms import SphinxPostTransform

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lessons  # noqa: E402  (book/lessons.py, beside this file)

ROOT = Path(__file__).resolve().parent.parent
LANDING = "book/index"

project = "slotlab"
author = "the slotlab authors"
copyright = "the slotlab authors"
root_doc = LANDING
html_title = "slotlab: Redis Cluster hash slots, hands on"

extensions = ["myst_nb"]
nb_execution_mode = "off"
# Everything a learner reads; nothing else of the repository is even listed.
include_patterns = [
    "book/index.md",
    f"notebooks/{lessons.LESSON_GLOB}",
    "notebooks/exercises/*.ipynb",
    "docs/*.md",
]
# Not walked at all (the virtualenvs are large).
exclude_patterns = [
    ".*",
    "build",
    "_build",
    "src",
    "tests",
    "benchmarks",
    "**/.ipynb_checkpoints",
]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": True,
    "home_page_in_toc": True,
}
# Unset, the theme's script logs "Got invalid theme mode" as a console error on every page.
html_context = {"default_mode": "auto"}
html_static_path: list[str] = []
# No "last updated" or search-engine extras: the site is read from files, offline.
html_copy_source = False

# The guides that are not lessons, in reading order; a guide not written yet is left out.
GUIDES = [
    ("For instructors", ["docs/instructors", "docs/cheatsheet"]),
    ("How slotlab works", ["docs/emulated", "docs/proxy"]),
]


def _toctree(caption: str, entries: list[str]) -> str:
    body = "\n".join(entries)
    return f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n{body}\n```\n"


def landing_sections() -> dict[str, str]:
    """The landing page's generated parts: the lessons table and the site's tables of contents."""
    course = lessons.lessons(ROOT)
    total = lessons.total_time(course)
    table = lessons.landing_table(course, link_prefix="../notebooks/")
    if total:
        table += f"\n\nThe whole course: about {total}."
    trees = [_toctree("Lessons", [f"/notebooks/{x.stem}" for x in course])]
    # An exercise notebook has its lesson's title: the table of contents says which is which.
    exercises = [
        f"{x.stem[:2]} · {x.title}: exercises </notebooks/exercises/{x.exercise.stem}>"
        for x in course
        if x.exercise
    ]
    if exercises:
        trees.append(_toctree("Exercises", exercises))
    for caption, docs in GUIDES:
        present = [f"/{doc}" for doc in docs if (ROOT / f"{doc}.md").is_file()]
        if present:
            trees.append(_toctree(caption, present))
    return {"{lessons-table}": table, "{toctrees}": "\n".join(trees)}


# Links written for a code host can name repository places that have no page here: they lead
# to the page that stands for them (the README's role is the landing page's; a folder of
# notebooks is the landing page's lessons table). Any other link that leads nowhere still fails.
STAND_INS: dict[str, tuple[str, str | None]] = {
    "README": (LANDING, None),
    "notebooks": (LANDING, "the-lessons"),
    "notebooks/exercises": (LANDING, "the-lessons"),
}


def _repository_place(env: Any, node: addnodes.pending_xref) -> str | None:
    """The repository file (as a docname) or folder a MyST link names, if it has no page."""
    if node.get("refdomain") == "doc":
        docname: str = node["reftarget"]
        return None if docname in env.all_docs else docname
    target = str(node["reftarget"]).split("#", 1)[0]
    if not target:
        return None
    _, path = env.relfn2path(target, node.get("refdoc", env.docname))
    if not Path(path).is_dir():
        return None
    return Path(path).resolve().relative_to(ROOT).as_posix()


class StandIns(SphinxPostTransform):
    """Point links to the README or to a folder of notebooks at the page standing for it."""

    default_priority = 8  # before MyST resolves (and checks) its links, at 9

    def run(self, **kwargs: Any) -> None:
        for node in self.document.findall(addnodes.pending_xref):
            if node.get("reftype") == "myst":
                place = _repository_place(self.env, node)
                if place in STAND_INS:
                    node["refdomain"] = "doc"
                    node["reftarget"], node["reftargetid"] = STAND_INS[place]


def _fill_landing(app: Any, docname: str, source: list[str]) -> None:
    if docname == LANDING:
        for marker, text in landing_sections().items():
            source[0] = source[0].replace(marker, text)


def _always_reread_landing(app: Any, env: Any, added: Any, changed: Any, removed: Any) -> list[str]:
    # Its table and toctrees come from other files (the notebooks' metadata, docs/).
    return [LANDING]


def _redirect_to_landing(app: Any, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html":
        target = f"{LANDING}.html"
        Path(app.outdir, "index.html").write_text(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html_title}</title>"
            f"<meta http-equiv=\"refresh\" content=\"0; url={target}\"></head>"
            f"<body><a href=\"{target}\">The slotlab course</a></body></html>\n",
            encoding="utf-8",
        )


def setup(app: Any) -> dict[str, bool]:
    app.add_post_transform(StandIns)
    app.connect("source-read", _fill_landing)
    app.connect("env-get-outdated", _always_reread_landing)
    app.connect("build-finished", _redirect_to_landing)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
