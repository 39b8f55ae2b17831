"""The report in a real headless browser (Chromium from the system packages; `.ci/run` installs it).

For a report of every plan kind: the page loads, every figure (inline SVG) has a non-zero rendered size,
the browser logs no console error, and a screenshot is not a single colour. Skipped only when
``chromium`` / ``chromedriver`` are not installed (`apt-get install chromium chromium-driver`).
"""

import io
import shutil

import pytest

import report_plans
from planner.report import write_report

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1200,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # the system driver: no download
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _colours(png: bytes) -> int:
    from PIL import Image  # pillow comes with matplotlib (dev extra)

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return len(img.getcolors(maxcolors=1 << 20) or range(1 << 20))


@pytest.mark.parametrize("kind", report_plans.KINDS)
def test_report_renders_in_chromium(browser, kind, tmp_path):
    doc, inputs = report_plans.make(kind, tmp_path)
    page = tmp_path / f"{kind}.html"
    result = write_report(doc, page, inputs)
    browser.get_log("browser")  # drop anything logged before this page
    browser.get(page.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.title == result.parts[0][0].title
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg, img')).map(e => {"
        "const r = e.getBoundingClientRect(); return [e.tagName, r.width, r.height]; })")
    assert len(sizes) == result.figures >= 1
    assert all(w > 0 and h > 0 for _, w, h in sizes), sizes
    sections = browser.execute_script("return document.querySelectorAll('section h2').length")
    assert sections == sum(len(p.sections) for p, _ in result.parts)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    png = browser.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and _colours(png) > 16
