"""The course's site (``make book``) as a reader meets it, in headless Chromium, from files.

Every page loads with no console error and nothing fetched from the network; every lesson
shows its figures (each image loaded, as many as the notebook stores); the "next" links walk
through every lesson in order. Screenshots of the landing page and of lesson 4 go to
build/artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browsing import BOOK, ROOT, PageLog, new_page, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LANDING = BOOK / "book" / "index.html"
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
# The footer's "next" link (pydata-sphinx-theme's prev/next navigation).
NEXT = "a.right-next"


def lesson_notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def notebooks_with_pages() -> list[Path]:
    return lesson_notebooks() + sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb"))


def page_of(source: Path) -> Path:
    """The HTML page Sphinx writes for a notebook or a doc of the repository."""
    return (BOOK / source.relative_to(ROOT)).with_suffix(".html")


def figures_in(notebook: Path) -> int:
    """How many images the notebook's stored outputs hold."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(
        1
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
        if any(kind in output.get("data", {}) for kind in IMAGE_TYPES)
    )


@pytest.fixture(scope="module")
def site() -> Path:
    if not LANDING.is_file():
        unavailable(f"the site is not built ({LANDING.relative_to(ROOT)} missing): run make book")
    return BOOK


@pytest.fixture(scope="module")
def reader(browser: Browser, site: Path) -> Iterator[tuple[Page, PageLog]]:
    page, log = new_page(browser, local=(site.as_uri(),))
    yield page, log
    page.context.close()


def test_every_notebook_and_doc_has_a_page(site: Path) -> None:
    sources = notebooks_with_pages() + sorted((ROOT / "docs").glob("*.md"))
    missing = [str(s.relative_to(ROOT)) for s in sources if not page_of(s).is_file()]
    assert not missing, f"the site has no page for {missing}: run make book"


def test_every_page_loads_cleanly(reader: tuple[Page, PageLog], site: Path) -> None:
    page, log = reader
    pages = sorted(
        p
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_") and p != site / "index.html"
    )
    assert len(pages) >= len(notebooks_with_pages()) + 2, pages
    problems = {}
    for html in pages:
        page.goto(html.as_uri(), wait_until="load")
        seen = log.take()
        if seen:
            problems[str(html.relative_to(site))] = seen
    assert not problems, f"pages with problems: {json.dumps(problems, indent=1)}"


def test_the_site_opens_on_the_landing_page(reader: tuple[Page, PageLog], site: Path) -> None:
    page, log = reader
    page.goto((site / "index.html").as_uri())
    page.wait_for_url(LANDING.as_uri())
    assert "hash slots" in page.title()
    table = page.locator("article table").first.inner_text()
    for notebook in lesson_notebooks():
        number = notebook.stem.split("_", 1)[0]
        assert f"{number} · " in table, f"the landing page's table lacks lesson {number}"
    assert "make lab" in page.locator("article").inner_text()
    assert not log.take()


@pytest.mark.parametrize(
    "notebook", notebooks_with_pages(), ids=lambda p: str(p.relative_to(ROOT / "notebooks"))
)
def test_every_lesson_shows_its_figures(
    reader: tuple[Page, PageLog], site: Path, notebook: Path
) -> None:
    page, log = reader
    page.goto(page_of(notebook).as_uri(), wait_until="load")
    # After "load" every image that is not lazy has loaded or failed: naturalWidth says which.
    images = page.locator("article img").evaluate_all(
        "imgs => imgs.map(i => ({src: i.getAttribute('src'), loading: i.loading,"
        " complete: i.complete, width: i.naturalWidth}))"
    )
    expected = figures_in(notebook)
    assert len(images) >= expected, f"{expected} figures stored, {len(images)} on the page"
    broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    exercise = ROOT / "notebooks" / "exercises" / notebook.name
    if notebook.parent.name == "notebooks" and exercise.is_file():
        links = page.locator("article a").evaluate_all("links => links.map(a => a.href)")
        assert page_of(exercise).as_uri() in {h.split("#")[0] for h in links}, (
            f"{notebook.name} does not link to its exercises"
        )
    assert not log.take()


def test_next_links_walk_through_every_lesson(reader: tuple[Page, PageLog], site: Path) -> None:
    page, log = reader
    page.goto(LANDING.as_uri())
    lessons = [page_of(n).as_uri() for n in lesson_notebooks()]
    visited = [page.url]
    while page.url != lessons[-1] and page.locator(NEXT).count() and len(visited) < 100:
        page.locator(NEXT).first.click()
        page.wait_for_load_state("load")
        visited.append(page.url)
    assert [u for u in visited if u in lessons] == lessons, visited
    # ... and the sidebar reaches each of them from the landing page.
    page.goto(LANDING.as_uri())
    sidebar = page.locator("nav.bd-docs-nav a").evaluate_all("links => links.map(a => a.href)")
    assert set(lessons) <= {href.split("#")[0] for href in sidebar}, sidebar
    assert not log.take()


def test_screenshots(reader: tuple[Page, PageLog], artifacts: Path) -> None:
    page, log = reader
    page.goto(LANDING.as_uri(), wait_until="load")
    page.screenshot(path=artifacts / "landing.png")
    lesson4 = next(n for n in lesson_notebooks() if n.name.startswith("04_"))
    page.goto(page_of(lesson4).as_uri(), wait_until="load")
    page.screenshot(path=artifacts / "lesson04.png")
    figure = page.locator("article img").first
    figure.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -120)")  # the cell that drew it, above the figure
    page.screenshot(path=artifacts / "lesson04_figure.png")
    for name in ("landing.png", "lesson04.png", "lesson04_figure.png"):
        assert (artifacts / name).stat().st_size > 10_000, name
    assert not log.take()
