"""The real book, built with the ``smoke`` profile on the CPU, then read in headless Chromium.

One build per test session (a copy of the book's sources in a temporary folder, so the checkout's
own ``_build`` and ``book/_generated`` are left alone); the browser is Debian's ``chromium``
driven by Playwright (no browser download), started with the flags this machine needs.
"""
from __future__ import annotations

import ast
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from lrpkit import book, provenance

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LRPKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Console messages of type "error" that are known and harmless: none so far. (Chromium's own
# request for /favicon.ico on the redirect page is not a page error: the book has a favicon.)
KNOWN_CONSOLE_ERRORS: tuple[str, ...] = ()
# The first test here builds the whole book (the smoke profile) in its module fixture, and
# pytest-timeout counts fixture set-up in the test: it gets longer than the suite's 900 s per test.
pytestmark = pytest.mark.timeout(3000)


def copy_book(root: Path) -> Path:
    """The book's sources (no build outputs) copied to ``root``."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    shutil.copytree(REPO / "book", root / "book",
                    ignore=shutil.ignore_patterns("_generated", ".ipynb_checkpoints"))
    shutil.copytree(REPO / "experiments", root / "experiments",     # the configs experiments: names
                    ignore=shutil.ignore_patterns("*-results"))
    return root


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    """The book's sources copied to a temporary root and built: (root, first build summary)."""
    root = copy_book(tmp_path_factory.mktemp("book"))
    summary = book.build(root, profile="smoke", device="cpu", weights="auto", progress=False)
    return root, summary


def machine_paths(root: Path) -> list[str]:
    """Folders of the machine that built the book, which no page may show."""
    paths = {str(root), str(REPO), sys.prefix, os.path.realpath(sys.prefix),
             str(Path.home()) + "/"}
    return sorted(p for p in paths if len(p) > 1)


#: An absolute path in a page's text: a slash after a space, quote or bracket, then a folder.
ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(\[=])(/(?:home|root|tmp|work|usr|opt|var|mnt|srv|Users)/\S*)", re.M)


def toc_docnames(root: Path) -> list[str]:
    """Docnames of every page of _toc.yml (globs expanded), read independently of lrpkit."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entry):
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key) or []:
                if "file" in child:
                    names.append(child["file"])
                if "glob" in child:
                    names.extend(str(p.relative_to(root).with_suffix(""))
                                 for p in sorted(root.glob(child["glob"]))
                                 if p.suffix in (".md", ".ipynb"))
                walk(child)

    walk(toc)
    return names


def _glued_text(plain: str) -> str:
    """The text a ``{glue:text}`` shows of a glued string: its ``text/plain`` is the repr."""
    try:
        value = ast.literal_eval(plain)
    except (ValueError, SyntaxError):
        return plain
    return value if isinstance(value, str) else plain


def test_smoke_build_executes_every_figure(smoke_book):
    root, summary = smoke_book
    registry = yaml.safe_load((root / "notebooks" / "figures.yml").read_text())["figures"]
    assert sorted(summary["executed"]) == sorted(registry)
    assert summary["profile"] == "smoke" and summary["device"] == "cpu"
    assert (root / "_build" / "html" / "index.html").is_file()
    for fid, entry in registry.items():
        chapter = Path(entry["chapter"]).name
        assert (root / "book" / "_generated" / chapter / f"{fid}.ipynb").is_file()
        assert (root / "_build" / "logs" / f"{fid}.log").is_file()
        assert (root / "_build" / "html" / "book" / "_generated" / chapter
                / f"{fid}.html").is_file()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass                     # the browser closing a connection early is not a failure


@pytest.fixture(scope="module")
def site(smoke_book):
    root, _ = smoke_book
    html = root / "_build" / "html"
    server = _Server(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, html, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _ids(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8")))


def test_site_in_headless_chromium(site):
    root, html, base = site
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run scripts/setup-system.sh "
                    "(Debian) or set LRPKIT_CHROMIUM")
    from playwright.sync_api import sync_playwright

    docnames = toc_docnames(root)
    assert "book/what-lrp-sees" in docnames
    screenshots = root / "_build" / "screenshots"
    screenshots.mkdir(exist_ok=True)
    problems: list[str] = []
    external: list[str] = []
    links: dict[str, set[str]] = {}   # internal link target path -> fragments wanted
    figure_pages = 0
    this_machine = provenance.machine()
    footers: dict[str, str] = {}      # docname -> the text of its footer
    built_by: set[tuple[str, str]] = set()   # (lrpkit version, git commit) of the provenance records

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        current = {"url": ""}

        def on_console(msg):
            if msg.type == "error" and not any(k in msg.text for k in KNOWN_CONSOLE_ERRORS):
                problems.append(f"{current['url']}: console error: {msg.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: problems.append(f"{current['url']}: page error: {exc}"))
        page.on("response", lambda r: r.status >= 400 and problems.append(
            f"{current['url']}: HTTP {r.status} for {r.url}"))
        page.on("requestfailed", lambda r: r.url.startswith(base) and problems.append(
            f"{current['url']}: request failed: {r.url}"))

        def offline(route):
            if route.request.url.startswith(base) or route.request.url.startswith("data:"):
                route.continue_()
            else:                        # the site must work offline: nothing from elsewhere
                external.append(route.request.url)
                route.abort()

        page.route("**/*", offline)

        for docname in ["index", *docnames]:
            current["url"] = f"{base}/{docname}.html"
            response = page.goto(current["url"], wait_until="load")
            assert response is not None and response.ok, f"{docname}: {response}"
            page.wait_for_load_state("networkidle")
            if docname == "index":                       # the redirect to the root page
                assert page.url.endswith(f"/{docnames[0]}.html"), page.url
                continue
            assert page.title(), docname

            # Math: MathJax (served locally) typesets every math element, without errors.
            n_math = page.locator(".math").count()
            if n_math:
                page.wait_for_function("() => window.MathJax && MathJax.startup && "
                                       "MathJax.startup.promise", timeout=20000)
                page.evaluate("() => MathJax.startup.promise")
                typeset = page.locator(".math mjx-container").count()
                if typeset < n_math:
                    problems.append(f"{docname}: {typeset} of {n_math} math elements typeset")
                if page.locator("mjx-merror").count():
                    problems.append(f"{docname}: MathJax error in math")
                src = page.locator("script[src*='mathjax']").first.get_attribute("src") or ""
                if "://" in src:
                    problems.append(f"{docname}: MathJax loaded from {src}")

            # Nothing widens the page: a wide table scrolls in its own box (lrpkit.tables.html_table).
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > page.viewport_size["width"]:
                problems.append(f"{docname}: the page is {width} px wide in a {page.viewport_size['width']} px window")

            # Images: every one decoded with a non-zero natural size, and alt text that says what it
            # shows (its caption: book/_ext/lrpkit_alt.py), not its file name.
            sizes = page.eval_on_selector_all(
                "article img", "els => els.map(e => [e.currentSrc || e.src, e.complete, "
                "e.naturalWidth, e.naturalHeight, e.alt])")
            for src, complete, width, height, alt in sizes:
                if not (complete and width > 0 and height > 0):
                    problems.append(f"{docname}: image {src} has natural size {width}x{height}")
                if len(alt.split()) < 3 or alt.lower().endswith((".png", ".svg", ".jpg")):
                    problems.append(f"{docname}: image {src} has alt text {alt!r}")

            # Figure pages: provenance record, and the random-weights banner when it applies.
            records = [json.loads(t) for t in page.eval_on_selector_all(
                "script.lrpkit-provenance-record", "els => els.map(e => e.textContent)")]
            if sizes and "_generated" not in docname and docname != docnames[0]:
                if not records:
                    problems.append(f"{docname}: shows figures but no provenance")
            for record in records:
                figure_pages += 1
                built_by.add((record.get("lrpkit_version"), record.get("git_commit")))
                for key in ("weights", "device", "parameters", "lrpkit_version", "git_commit",
                            "date", "machine"):
                    if key not in record:
                        problems.append(f"{docname}: provenance lacks {key}")
                if record.get("machine", {}).get("onednn_isa") != this_machine["onednn_isa"]:
                    problems.append(f"{docname}: provenance machine {record.get('machine')}")
                if not record.get("computation"):
                    problems.append(f"{docname}: a figure does not say which computation made it")
            if records:   # the computation is on the folded box's visible line
                tags = page.locator("details.lrpkit-provenance > summary .lrpkit-computation")
                if tags.count() != len(records) or not all(tags.nth(i).is_visible() for i in range(tags.count())):
                    problems.append(f"{docname}: {tags.count()} visible computation tags for {len(records)} figures")
                if record["parameters"].get("profile") != "smoke":
                    problems.append(f"{docname}: provenance profile {record['parameters']}")
                if record["random_weights"]:
                    banner = page.locator(".lrpkit-random-weights").first
                    if not banner.count() or not banner.is_visible():
                        problems.append(f"{docname}: random weights but no visible banner")
                    first = page.evaluate(FIRST_AFTER_TITLE)
                    if first != "banner":
                        problems.append(f"{docname}: random weights, but the first thing after "
                                        f"the title is not the banner: {first!r}")

            # The footer names the lrpkit and the commit that built the site (book/_ext/lrpkit_footer.py).
            footers[docname] = " ".join(page.eval_on_selector_all(
                ".extra_footer", "els => els.map(e => e.textContent.replace(/\\s+/g, ' ').trim())"))

            # No page shows a folder of the build machine (e.g. in a warning from stderr).
            text = page.inner_text("body")
            for found in ABSOLUTE_PATH.findall(text):
                problems.append(f"{docname}: the page shows the path {found}")
            source = page.content()
            for path in machine_paths(root):
                if path in source:
                    problems.append(f"{docname}: the page's HTML holds {path}")

            # Colab buttons of chapter pages open the source notebooks of the repository.
            colab = page.eval_on_selector_all(
                "a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
            for url in colab:
                path = url.split("/blob/", 1)[1].split("/", 1)[1]
                if not (root / path).is_file():
                    problems.append(f"{docname}: Colab link to missing {path}")
            if docname == "book/what-lrp-sees" and not colab:
                problems.append(f"{docname}: no Colab launch button")

            # Internal links: collected here, checked against the files below.
            for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                if href.startswith(base):
                    parsed = urllib.parse.urlsplit(href)
                    links.setdefault(urllib.parse.unquote(parsed.path), set()).add(
                        urllib.parse.unquote(parsed.fragment))

            page.screenshot(path=str(screenshots / f"{docname.replace('/', '_')}.png"),
                            full_page=True)
        browser.close()

    for path, fragments in sorted(links.items()):
        target = html / path.lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken internal link: {path}")
            continue
        if target.suffix == ".html":
            missing = sorted(f for f in fragments if f and f not in _ids(target))
            if missing:
                problems.append(f"broken anchors in links to {path}: {missing}")

    assert figure_pages >= 1, "no page carried a provenance record"
    # Every page's footer: the same lrpkit version and commit, those the figures' provenance records.
    assert len(set(footers.values())) == 1, footers
    footer = next(iter(footers.values()))
    assert built_by and "Text and figures CC BY 4.0, code MIT" in footer, footer
    for version, commit in built_by:
        short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
        assert f"lrpkit {version}, commit {short} (built " in footer, (footer, version, commit)
    assert not external, f"the site requested outside resources: {sorted(set(external))}"
    assert not problems, "\n".join(problems)


#: The first element after a page's title that shows something: "banner" if it is (or holds)
#: the random-weights notice, else the start of its text.
FIRST_AFTER_TITLE = """() => {
    const title = document.querySelector("article h1");
    if (!title) return "no title";
    let el = title.nextElementSibling;
    while (el && !el.innerText.trim() && !el.querySelector("img")) el = el.nextElementSibling;
    if (!el) return "nothing";
    if (el.matches(".lrpkit-random-weights") || el.querySelector(".lrpkit-random-weights"))
        return "banner";
    return el.innerText.trim().slice(0, 80);
}"""


def test_site_files_hold_no_build_machine_paths(site):
    """The pages and the files served beside them (e.g. an executed notebook's download)."""
    root, html, _ = site
    paths = machine_paths(root)
    leaks = [f"{f.relative_to(html)}: {p}" for f in html.rglob("*")
             if f.suffix in (".html", ".ipynb", ".txt", ".md", ".json") and f.is_file()
             for p in paths if p in f.read_text(encoding="utf-8", errors="replace")]
    assert not leaks, "\n".join(leaks)


def test_second_build_reexecutes_nothing(smoke_book):
    root, first = smoke_book
    generated = sorted((root / "book" / "_generated").rglob("*.ipynb"))
    before = {p: p.stat().st_mtime_ns for p in generated}
    summary = book.build(root, profile="smoke", device="cpu", weights="auto", progress=False)
    assert summary["executed"] == []
    assert {e["status"] for e in summary["experiments"]} == {"reused"}      # no experiment reran
    assert sorted(summary["cached"]) == sorted(first["executed"])
    assert summary["html_full_rebuild"] is False
    assert {p: p.stat().st_mtime_ns for p in generated} == before
    print(f"first build {first['total_seconds']} s, second {summary['total_seconds']} s")


def test_tables_follow_the_parameters_of_their_figure(tmp_path):
    """Change fig-2-2's γ in the registry (as a reader would): every table glued on its page
    must print the new γ, as the figure's provenance does. (The tables used to come from a
    notebook of their own, with its own γ.) Only the notebooks that glue the page's tables and
    Figure 2.2 are run, in the smoke profile with random weights, without the HTML."""
    root = copy_book(tmp_path)
    registry_file = root / "notebooks" / "figures.yml"
    registry = yaml.safe_load(registry_file.read_text())
    assert registry["figures"]["fig-2-2"]["parameters"]["all"]["gamma"] != 0.5
    registry["figures"]["fig-2-2"]["parameters"]["all"]["gamma"] = 0.5
    registry_file.write_text(yaml.safe_dump(registry, allow_unicode=True))

    page = root / "book" / "what-lrp-sees.md"
    tables = {(doc, key) for _, doc, key in book.glue_references(page) if key.startswith("table-")}
    assert {key for _, key in tables} >= {"table-2-2", "table-2-4"}
    wanted = {(page.parent / doc).resolve() for doc, _ in tables}
    figures = [f for f in book.load_registry(root)
               if f.id == "fig-2-2" or (root / f.output).resolve() in wanted]
    book.run_figures(root, figures, "smoke", {"device": "cpu", "weights": "random", "seed": 0},
                     progress=False)

    fig = book.glue_keys(root / "book" / "_generated" / "what-lrp-sees" / "fig-2-2.ipynb")
    assert book.provenance_record(fig["provenance"])["parameters"]["gamma"] == 0.5
    for doc, key in sorted(tables):
        table = book.glue_keys(page.parent / doc)[key]["data"]["text/html"]
        table = "".join(table) if isinstance(table, list) else table
        assert "γ = 0.5" in table and "γ = 0.25" not in table, (key, doc)


def test_exercise_solutions_are_folded_behind_a_toggle(site):
    """The chapter 'Implement LRP yourself': every solution is folded ("Show the solution"), its
    code hidden until the toggle is clicked, and every check on the page has passed."""
    root, html, base = site
    from playwright.sync_api import sync_playwright

    registry = yaml.safe_load((root / "notebooks" / "figures.yml").read_text())["figures"]
    parts = {fid: entry for fid, entry in registry.items() if entry["chapter"] == "book/implement-lrp"}
    assert len(parts) == 4
    screenshots = root / "_build" / "screenshots"
    screenshots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for fid, entry in sorted(parts.items()):
            cells = json.loads((root / "notebooks" / entry["notebook"]).read_text())["cells"]
            n_solutions = sum("".join(c["source"]).startswith("%%solution") for c in cells)
            n_checks = sum("teaching.check_" in "".join(c["source"]) for c in cells)
            page.goto(f"{base}/book/_generated/implement-lrp/{fid}.html", wait_until="load")
            toggles = page.locator("details:has(summary:has-text('Show the solution'))")
            assert toggles.count() == n_solutions >= 1, fid
            for i in range(toggles.count()):
                code = toggles.nth(i).locator("pre").first
                assert toggles.nth(i).get_attribute("open") is None and not code.is_visible(), (fid, i)
                assert "%%solution" in code.text_content()   # hidden: not in inner_text
            passed = page.locator(".lrpkit-check-passed")
            assert passed.count() == n_checks and page.locator(".lrpkit-check-not-yet").count() == 0, fid
            page.screenshot(path=str(screenshots / f"{fid}-folded.png"), full_page=True)
            first = toggles.first
            first.locator("summary").click()
            first.locator("pre").first.wait_for(state="visible")
            assert "Hide the solution" in first.locator("summary").inner_text()
            page.screenshot(path=str(screenshots / f"{fid}-unfolded.png"), full_page=True)
        browser.close()


def test_when_lrp_breaks_shows_its_figures_verdicts_and_numbers(site):
    """The chapter 'When LRP breaks': its five figures and its tables rendered, the random-weights
    banner first, no error output, every glued number filled in, and the detector's verdicts both
    in the prose and under the heatmaps (the figures hold them as pixels: here their text)."""
    root, html, base = site
    from playwright.sync_api import sync_playwright

    page_file = html / "book" / "when-lrp-breaks.html"
    assert page_file.is_file()
    text = page_file.read_text(encoding="utf-8")
    assert "fig-2-5: glued" not in text                     # the MyST comment stays out of the page
    generated = root / "book" / "_generated" / "when-lrp-breaks"
    for fid in ("fig-2-3", "fig-2-4", "breaks-mechanism", "breaks-heuristics"):
        keys = book.glue_keys(generated / f"{fid}.ipynb")
        assert {"provenance", "banner"} <= set(keys), fid
    verdict = book.glue_keys(generated / "fig-2-4.ipynb")["verdict"]["data"]["text/plain"]
    verdict = "".join(verdict) if isinstance(verdict, list) else verdict
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/book/when-lrp-breaks.html", wait_until="load")
        assert page.evaluate(FIRST_AFTER_TITLE) == "banner"
        body = page.inner_text("article")
        assert page.locator("article img").count() >= 5      # Figs 2.3, 2.4, culprits, conservation, heuristics
        assert page.locator("article table").count() >= 6    # composite, culprits, settings, thresholds, detector, 2.5
        for heading in ("Figure 2.3", "Figure 2.4", "Figure 2.5", "Why the patches appear",
                        "A detector for broken heatmaps", "Table 2.5"):
            assert heading in body, heading
        assert "Traceback" not in body and "Error" not in body
        assert "random" in body.lower() and "Montavon et al." in body
        assert ast.literal_eval(verdict) in body              # the detector's verdict, glued as text (its repr)
        assert "upper (next to the output)" in body           # Table 2.5 says which layers are meant
        machine = provenance.machine_text(provenance.machine())
        assert f"This build ran on {machine}" in " ".join(body.split())   # which images break depends on it
        boxes = page.locator("details.lrpkit-provenance").first.text_content()    # folded: read its text
        assert "Machine" in boxes and provenance.machine()["onednn_convolution"] in boxes
        assert "thesis code (constant ε, winner-takes-all pooling, z + 1e-6 shift)" in body   # Fig. 2.3's visible tag
        page.screenshot(path=str(root / "_build" / "screenshots" / "when-lrp-breaks.png"), full_page=True)
        browser.close()


def test_pixel_flipping_page_shows_its_figures_and_numbers(site):
    """The chapter 'Grading a heatmap: Pixel-Flipping': every glued figure is an image on the page,
    the random-weights banner comes first, every glued number is printed as the notebook computed
    it, and no cell error or traceback reached the page."""
    root, html, base = site
    from playwright.sync_api import sync_playwright

    page_md = root / "book" / "pixel-flipping.md"
    refs = book.glue_references(page_md)
    figures = {key for _, _, key in refs if key.startswith("fig-")}
    assert figures >= {"fig-2-7", "fig-2-8", "fig-3-4", "fig-3-5a", "fig-3-5b", "fig-3-6a", "fig-3-6b",
                       "fig-3-7a", "fig-3-7", "fig-3-8", "fig-3-9", "fig-defects", "fig-grays"}
    schedule = book.glue_keys(root / "book" / "_generated" / "pixel-flipping" / "fig-2-7.ipynb")
    total = "".join(schedule["total-flips"]["data"]["text/plain"])
    castle = book.glue_keys(root / "book" / "_generated" / "pixel-flipping" / "fig-3-5.ipynb")
    auc_morf = float("".join(castle["auc-morf"]["data"]["text/plain"]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/book/pixel-flipping.html", wait_until="load")
        page.wait_for_load_state("networkidle")
        assert page.locator("article h1").first.inner_text().startswith("Grading a heatmap: Pixel-Flipping")
        assert page.evaluate(FIRST_AFTER_TITLE) == "banner"
        images = page.eval_on_selector_all("article img", "els => els.map(e => e.naturalWidth)")
        assert len(images) >= len(figures) and all(w > 0 for w in images)
        text = page.inner_text("article")
        assert total == "1568" and "1568 flips in all" in text.replace("\n", " ")
        assert f"{auc_morf:.3g}" in text                       # the glued AUC, as the page formats it
        assert "defect" in text and page.locator("article table").count() >= 2
        for bad in ("Traceback", "Error:", "could not find", "glue"):
            assert bad not in text, bad
        browser.close()

#: The grid pages (lrpkit.sweeps): page -> (figure id, glued grid figures, sentences built from glued numbers).
GRID_PAGES = {
    "book/looking-at-the-grid": ("fig-3-3", 6, ["{breaks-sentence}", "{gamma-sentence}"]),
    "book/appendix-castle2-grid": ("fig-b-1", 12, [
        "the detector flags {flagged-shift} of the {tiles} heatmaps",
        "under the zennit stabilizer it flags {flagged-zennit}"]),
    "book/when-lrp-breaks": ("fig-2-5", 1, []),       # its other figures: test_when_lrp_breaks_shows_its_figures_verdicts_and_numbers
}


def test_grid_pages_show_every_sweep_with_verdicts(site):
    """The grid chapters: every glued grid is an image on the page, with the verdict legend, the
    random-weights banner and the numbers the prose states (taken from the executed notebook's glue)."""
    root, html, base = site
    from playwright.sync_api import sync_playwright

    registry = yaml.safe_load((root / "notebooks" / "figures.yml").read_text())["figures"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for docname, (fid, n_figures, sentences) in GRID_PAGES.items():
            assert registry[fid]["chapter"] == docname
            chapter = docname.split("/")[1]
            glued = book.glue_keys(root / "book" / "_generated" / chapter / f"{fid}.ipynb")
            grids = [k for k in glued if (k == fid or k.startswith(f"{fid}-"))
                     and any(mime.endswith("image/png") for mime in glued[k]["data"])]
            assert len(grids) == n_figures, (fid, sorted(glued))
            page.goto(f"{base}/{docname}.html", wait_until="load")
            images = page.eval_on_selector_all("article img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            assert len(images) >= n_figures and all(w > 300 and h > 100 for w, h in images), (docname, images)
            text = " ".join(page.inner_text("article").split())
            assert "random weights" in text.lower(), docname
            assert page.locator(".lrpkit-random-weights").count() >= 1, docname
            assert "Traceback" not in text and "Error" not in text, docname
            values = {k: _glued_text("".join(v["data"]["text/plain"])) for k, v in glued.items()
                      if "text/plain" in v["data"]}
            for sentence in sentences:
                assert sentence.format(**values) in text, (docname, sentence.format(**values))
        browser.close()


def test_grid_chapter_and_appendix_show_their_figures_and_numbers(smoke_book):
    """Chapter 4 (searching-the-grid) and appendix B.2: the experiments ran in the first build, every
    figure and table is on its page, the glued numbers are there, and the provenance says smoke."""
    root, summary = smoke_book
    registry = yaml.safe_load((root / "notebooks" / "figures.yml").read_text())
    assert sorted(e["experiment"] for e in summary["experiments"]) == sorted(registry["experiments"])
    assert {e["status"] for e in summary["experiments"]} == {"ran"}
    for eid in registry["experiments"]:
        results = root / "book" / "_generated" / "_experiments" / eid / "smoke"
        assert (results / "results.parquet").is_file() and (results / "book-inputs.json").is_file()
    html = root / "_build" / "html" / "book"
    page = (html / "searching-the-grid.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", page)
    assert page.count("<img") >= 6                                   # Figures 4.1-4.6 and 3.2
    assert text.count("Table 4.") >= 3 and "lrpkit-random-weights" in page
    assert page.count("lrpkit-provenance-record") == 3     # fig-4-1, fig-4-3, fig-4-graders
    assert "2 × 2" in text                                           # the smoke grid, glued
    # no verdict against the thesis's optimum (another axis, denominators and network), and it says
    # that Pixel-Flipping runs without the thesis code's defects
    assert not re.search(r"\b(inside|outside)\b\s+the thesis", text) and "thesis_compat" in text
    # the one error the page may show is the one it quotes: Quantus's ROAD metric on a colour image
    assert "Traceback" not in text and "Error" not in re.sub(r"stops with \w+Error", "", text)
    appendix = (html / "appendix-more-classes.html").read_text(encoding="utf-8")
    assert appendix.count("<img") >= 2 and "lrpkit-provenance-record" in appendix
    assert "dalmatian" in appendix and "Traceback" not in appendix


def _sweep_number(folder: Path, i: int) -> tuple[str, float]:
    """fig-3-3's downloadable verdicts: Σ R / logit of the first sweep (zennit stabilizer) at its i-th value."""
    import pandas as pd

    table = pd.read_csv(folder / "verdicts-zennit.csv")
    first = table[table["sweep"] == table["sweep"].iloc[0]]
    return "Σ R / logit", float(first["Σ R / logit"].iloc[i])


def _grid_number(folder: Path, i: int) -> tuple[str, float]:
    """fig-4-explorer's downloadable arrays: LRP-Tutorial's mean MoRF AUC at (γ_i, ε_0)."""
    import numpy as np

    with np.load(folder / "grid-tutorial.npz") as arrays:
        return "AUC (MoRF)", float(arrays["auc_morf"][i, 0])


#: The pages with a grid explorer: its figure, and the number its first grid shows at the i-th value
#: of the first slider, read from the figure's downloadable data.
EXPLORERS = {
    "book/looking-at-the-grid": ("fig-3-3", _sweep_number),
    "book/searching-the-grid": ("fig-4-explorer", _grid_number),
}
#: The most a page may weigh with everything it loads.
PAGE_BUDGET = 15 * 2**20


def test_grid_explorers_follow_their_sliders_offline(site):
    """An explorer runs in the page, with no kernel and no network: a mouse click on a slider's rail
    shows the precomputed heatmap and numbers of that setting (the numbers of the figure's download);
    the menu swaps in another grid's sliders; the page with all it loads stays under 15 MB."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    root, html, base = site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((base, "data:"))
                   else route.abort())
        loaded: set[str] = set()
        page.on("response", lambda r: r.ok and r.url.startswith(base) and loaded.add(r.url))
        for docname, (fid, number_at) in EXPLORERS.items():
            loaded.clear()
            page.goto(f"{base}/{docname}.html", wait_until="load")
            page.wait_for_load_state("networkidle")
            plot = page.locator(".lrpkit-explorer .js-plotly-plot")
            assert plot.count() == 1, docname
            assert plot.get_attribute("data-frame") == "0/0/0"
            frames = json.loads(page.eval_on_selector(".lrpkit-explorer script[id$='-frames']", "e => e.textContent"))
            grids = frames["grids"]
            last = len(grids[0]["frames"]) - 1
            assert last >= 1, docname

            rail = page.locator(".lrpkit-explorer .slider-rail-rect").first
            rail.scroll_into_view_if_needed()
            rail = rail.bounding_box()
            page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)
            page.wait_for_function("() => document.querySelector('.lrpkit-explorer .js-plotly-plot').dataset.frame"
                                   f" === '0/{last}/0'", timeout=10000)
            shown = page.evaluate("() => document.querySelector('.lrpkit-explorer .js-plotly-plot').data[0].source")
            wanted = grids[0]["frames"][last][0]
            assert shown == wanted["src"] != grids[0]["frames"][0][0]["src"], docname
            assert " ".join(page.eval_on_selector(".lrpkit-explorer .gtitle", "e => e.textContent").split()) == " ".join(wanted["title"].split())
            label, value = number_at(html / "figure-data" / fid, last)
            assert np.isclose(wanted["numbers"][label], value, rtol=1e-6), (docname, wanted["numbers"], value)
            assert f"{label} = {value:.4g}" in wanted["title"]

            page.click(".lrpkit-explorer .updatemenu-header")
            page.locator(".lrpkit-explorer .updatemenu-dropdown-button").last.click()
            other = len(grids) - 1
            page.wait_for_function("() => document.querySelector('.lrpkit-explorer .js-plotly-plot').dataset.frame"
                                   f" === '{other}/0/0'", timeout=10000)
            steps = page.evaluate("() => document.querySelector('.lrpkit-explorer .js-plotly-plot')"
                                  ".layout.sliders.map(s => s.steps.length)")
            assert steps == [len(s["steps"]) for s in grids[other]["sliders"]], docname
            shown = page.evaluate("() => document.querySelector('.lrpkit-explorer .js-plotly-plot').data[0].source")
            assert shown == grids[other]["frames"][0][0]["src"], docname

            files = {html / urllib.parse.unquote(urllib.parse.urlparse(url).path).lstrip("/") for url in loaded}
            weight = sum(f.stat().st_size for f in files if f.is_file())
            print(f"{docname}: {weight / 2**20:.1f} MB with everything it loads ({len(loaded)} files)")
            assert weight < PAGE_BUDGET, (docname, weight)
        assert not errors, errors
        browser.close()
