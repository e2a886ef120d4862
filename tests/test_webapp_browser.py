"""End to end in headless Chromium, as a user: upload a face, then analyse a small real split and
click a confusion-matrix cell. Screenshots go to runs/screenshots/ (look at them)."""

import shutil
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from ferx.data import load_fer2013, pack_split
from ferx.text import plural
from webapp_server import running_app

SHOTS = REPO / "runs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium); "
                                                           ".ci/run installs it")


@pytest.fixture(scope="module")
def page(data_root):
    from playwright.sync_api import sync_playwright  # a dev dependency: missing it is an error, not a skip
    SHOTS.mkdir(parents=True, exist_ok=True)
    with running_app(data_root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(60_000)
        start = time.perf_counter()
        page.goto(url)
        page.get_by_role("button", name="Compare models").wait_for()
        print(f"first page ready in {time.perf_counter() - start:.2f} s")
        yield page
        browser.close()


def test_upload_a_face_shows_probabilities_and_maps(page, data_root, tmp_path):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = tmp_path / "face.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).resize((240, 240)).save(face)
    page.get_by_label("Score the whole image as a face (skip face detection)").first.check()
    start = time.perf_counter()
    page.locator("#compare-photo input[type=file]").set_input_files(str(face))
    page.get_by_text("scoring face 0").wait_for()
    page.locator(".compare-probs").first.get_by_text("happy").first.wait_for()
    print(f"upload to probabilities and maps on screen: {time.perf_counter() - start:.2f} s")
    images = page.locator("img[src*='/file=']")
    assert images.count() >= 3  # photo with box, crop, Grad-CAM
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_dataset_analysis_renders_and_a_cell_click_fills_the_gallery(page):
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_label("Dataset (configured)").click()
    page.get_by_role("option", name="ckplus").click()
    page.get_by_role("button", name="Run analysis").click()
    page.get_by_text("144 faces").wait_for()
    cells = page.locator("#confusion-matrix [role=gridcell]")
    cells.nth(8 * 4 + 5).wait_for()  # row 4 (sad), column 5 = sad: a diagonal cell (label column + 7 classes)
    expected = int(cells.nth(8 * 4 + 5).inner_text())
    assert expected > 0
    cells.nth(8 * 4 + 5).click()
    page.get_by_text(f"{plural(expected, 'face')} of true class").wait_for()
    assert page.locator("#dataset-gallery img").count() == min(expected, 60)
    page.screenshot(path=str(SHOTS / "dataset.png"), full_page=True)
