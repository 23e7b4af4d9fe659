"""The web page in headless Chromium (Selenium): upload a query, check the top-k grid, keep a screenshot.

The screenshot goes to ``$PAIRSIM_TEST_ARTIFACTS`` (default ``test-artifacts/``) as ``search-page.png``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.service.helpers import Server

from pairsim.index import Searcher

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("PAIRSIM_TEST_ARTIFACTS", "test-artifacts"))


@pytest.fixture
def browser() -> Iterator[Any]:
    # `make test` installs both Debian packages, so a missing browser is a broken setup, not a skip.
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("needs Debian packages chromium and chromium-driver (run `make install`)")
    from selenium import webdriver

    profile = tempfile.mkdtemp(prefix="pairsim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += ["--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1200,900"]
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_upload_shows_the_query_and_the_top_k_grid(server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    query = server.images / "c1" / "2.png"
    expected = Searcher(server.directory).search_bytes(query.read_bytes(), 6)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "k").clear()
    browser.find_element(By.ID, "k").send_keys("6")
    browser.find_element(By.ID, "label").send_keys("c1")
    browser.find_element(By.ID, "file").send_keys(str(query.resolve()))
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card")) == 6)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert [int(c.get_attribute("data-id")) for c in cards] == [h.item.id for h in expected]
    labels = [c.find_element(By.CSS_SELECTOR, ".label").text for c in cards]
    assert labels == [h.item.label for h in expected]
    scores = [float(c.find_element(By.CSS_SELECTOR, ".score").text) for c in cards]
    assert scores == pytest.approx([h.score for h in expected], abs=1e-3)
    assert ["match" in (c.get_attribute("class") or "") for c in cards] == [label == "c1" for label in labels]
    assert browser.find_element(By.ID, "query-preview").get_attribute("src").startswith("blob:")
    # every result image loaded from /items/{id}/image
    wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))
    assert "6 results" in browser.find_element(By.ID, "status").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "search-page.png"))


def test_a_bad_upload_shows_the_error(server: Server, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 30).until(lambda d: "not a decodable image" in d.find_element(By.ID, "status").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#results .card") == []
