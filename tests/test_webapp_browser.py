"""End to end in headless Chromium, as a user: the first page (examples, datasets, the models compared),
upload a face, analyse a small real split, click a coloured confusion-matrix cell, open a gallery face in
Explain (it runs, on the analysed pixels, with its true label), box-select a region of the embedding (the
gallery and the CSV hold exactly the faces inside it), and on a phone-width page a tapped cell brings the
gallery into view. Screenshots go to runs/screenshots/ (look at them)."""

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS, REPO, face_zip, faces_of
from ferx.checkpoint import read_card
from ferx.memory_format import SMALL_MODEL
from ferx.data import load_fer2013, load_split, pack_split
from ferx.text import plural
from webapp_server import running_app

SHOTS = REPO / "runs" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium); "
                                                           ".ci/run installs it")


def webcam_video(data_root, path):
    """A webcam for the Live tab: one second of 640x480 video (Y4M, what Chromium's fake camera plays in a
    loop) showing a real happy FER-2013 test face at 300 px."""
    import cv2

    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    canvas = Image.new("RGB", (640, 480), (110, 118, 125))
    face = packed.images[int(np.flatnonzero(packed.targets == 3)[0])]
    canvas.paste(Image.fromarray(face).convert("RGB").resize((300, 300), Image.Resampling.BICUBIC), (170, 90))
    frame = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2YUV_I420).tobytes()
    path.write_bytes(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n" + b"".join(b"FRAME\n" + frame for _ in range(10)))
    return path


@pytest.fixture(scope="module")
def page(data_root, tmp_path_factory):
    from playwright.sync_api import sync_playwright  # a dev dependency: missing it is an error, not a skip
    SHOTS.mkdir(parents=True, exist_ok=True)
    video = webcam_video(data_root, tmp_path_factory.mktemp("webcam") / "face.y4m")
    with running_app(data_root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={video}"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(60_000)
        start = time.perf_counter()
        page.goto(url)
        page.get_by_role("button", name="Compare models").wait_for()
        print(f"first page ready in {time.perf_counter() - start:.2f} s")
        yield page
        browser.close()


TRAINED = sorted(p for p in CHECKPOINTS.iterdir() if (p / "card.json").is_file() and read_card(p).get("metrics"))


def diagonal_cell(page, label: str):
    """The diagonal cell of ``label`` in the Dataset tab's confusion matrix, which opens on the first
    trained checkpoint: one row per class of its label set (in the canonical order), after a column of row labels."""
    from ferx.data.labels import in_canonical_order

    labels = in_canonical_order(read_card(TRAINED[0])["labels"])
    row, width = labels.index(label), len(labels) + 1
    return page.locator("#confusion-matrix [role=gridcell]").nth(row * width + row + 1)


def test_first_page_has_examples_datasets_and_says_which_models_are_compared(page):
    page.get_by_text("true label: happy").first.wait_for()  # captions carry the true label
    page.get_by_text("Grace Hopper").first.wait_for()
    trained = TRAINED
    assert page.locator(".compare-probs").count() == len(trained) >= 4  # every trained checkpoint side by side
    architectures = {read_card(p)["model"] for p in trained}
    untrained = page.locator("#compare-untrained")
    if architectures >= {"lanmsff", "convcut", "mini_xception"}:
        assert untrained.count() == 0  # every architecture has weights: no "without weights" line
    else:
        assert all(m in untrained.inner_text() for m in {"lanmsff", "convcut"} - architectures)
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_label("Dataset (configured)").click()
    assert page.get_by_role("option", name="ferplus").count() == 1  # the quick start's data is there
    page.keyboard.press("Escape")
    page.get_by_role("tab", name="Compare").click()


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two CSS colours as the browser computes them ('rgb(r, g, b)')."""
    def luminance(css):
        rgb = np.array([float(v) for v in re.findall(r"[\d.]+", css)[:3]]) / 255
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_primary_buttons_text_is_legible(page):
    """White on gradio's orange-500 'Compare models' button was 2.8:1 (3.6:1 on hover), below WCAG AA's 4.5:1."""
    button = page.get_by_role("button", name="Compare models")
    colours = "e => [getComputedStyle(e).color, getComputedStyle(e).backgroundColor]"
    assert contrast(*button.evaluate(colours)) >= 4.5
    button.hover()
    page.wait_for_timeout(300)  # the hover colour's transition
    assert contrast(*button.evaluate(colours)) >= 4.5
    page.mouse.move(0, 0)


def test_every_tab_names_its_examples_and_one_is_chosen_with_the_keyboard(page):
    """A screen reader names each example of every tab, as Compare's (Explain, Sanity check, Stability and the
    Occlusion brush offered six thumbnails read out as "button", without a name), and the keyboard picks one."""
    try:
        for tab, photo in (("Explain", "#explain-photo"), ("Sanity check", "#sanity-photo"),
                           ("Stability", "#stability-photo"), ("Occlusion brush", "#occlusion-editor")):
            page.get_by_role("tab", name=tab).click()
            panel = page.get_by_role("tabpanel")
            assert panel.get_by_role("row", name=re.compile(r"true label: happy$")).count() == 1, tab
            assert panel.get_by_role("row", name=re.compile("Grace Hopper")).count() == 1, tab
            # the photo input's own label was the header: the brush's long one squeezed the captions to 5 lines
            headers = [h.strip() for h in panel.get_by_role("columnheader").all_inner_texts()]
            assert headers[:2] == ["Photo", "What it is"], tab
        page.get_by_role("tab", name="Explain").click()
        page.get_by_role("tabpanel").get_by_role("gridcell").first.focus()
        page.keyboard.press("Enter")
        page.locator("#explain-photo img").first.wait_for()
        assert "fer2013_test" in page.locator("#explain-photo img").first.get_attribute("src")
    finally:
        page.get_by_role("tab", name="Compare").click()


def test_explain_shows_each_maps_caption_whole_on_a_projector(page):
    """At 1,024 px a map's caption (its name, 'nearly flat', its faithfulness) wraps to two or three lines in a
    square tile that clipped them: the last line of every caption was cut by 5 px, "no better" lost from one."""
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        page.get_by_role("tab", name="Explain").click()
        page.get_by_role("tabpanel").get_by_role("row", name=re.compile(r"true label: happy$")).click()
        page.wait_for_function("() => document.querySelector('#explain-photo img')?.src.includes('happy')")
        page.get_by_role("button", name="Explain", exact=True).click()
        page.locator("#explain-results").get_by_text("explaining face 0").wait_for(timeout=300_000)
        captions = page.locator("#explain-gallery .caption-label")
        captions.first.wait_for()
        cut = captions.evaluate_all("cs => cs.filter(c => c.scrollHeight > c.clientHeight + 1 || "
                                    "c.getBoundingClientRect().bottom > c.closest('.thumbnail-item')"
                                    ".getBoundingClientRect().bottom + 1).map(c => c.innerText)")
        assert captions.count() >= 2 and not cut, cut
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})
        page.get_by_role("tab", name="Compare").click()


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
    page.mouse.wheel(0, 4000)  # the browser loads images far below the window only when scrolled to them
    page.wait_for_function("() => [...document.querySelectorAll('img')].filter(i => i.src.includes('/file=') "
                           "&& i.getClientRects().length).every(i => i.complete && i.naturalWidth > 0)")
    page.mouse.wheel(0, -8000)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)  # every model's maps drawn


def test_a_screen_reader_is_told_what_each_image_of_a_comparison_shows(page):
    """Every image Compare draws (the faces found, the crops, each model's maps) has alt text that says what it is,
    naming its model: gradio's is empty, so a screen reader said "image" sixteen times, or nothing."""
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("gridcell", name=re.compile(r"true label: surprise$")).click()
    page.wait_for_function("() => document.querySelector('#compare-photo img')?.src.includes('surprise')")
    page.get_by_role("button", name="Compare models").click()
    page.locator("#compare-status").get_by_text("scoring face 0").wait_for()
    page.locator(".compare-probs").first.get_by_text("surprise").first.wait_for()
    alts = page.evaluate("() => [...document.querySelectorAll('img[src*=\"/file=\"]')].filter(i => "
                         "i.getClientRects().length && !i.closest('#compare-photo, [role=grid]')).map(i => i.alt)")
    maps = [alt for alt in alts if "colour bar" in alt]
    assert len(alts) >= 2 + len(TRAINED) and all(alts), alts  # the faces found, the crops and every model's maps
    assert all(any(alt.startswith(f"{p.name}: Grad-CAM") for alt in maps) for p in TRAINED)


def test_on_a_projector_the_models_sit_side_by_side_with_their_maps_titled_above_them(page):
    """At 1,024 px the fourth model's column wrapped onto a full-width row of its own (its maps twice the others'
    size), and each map's title ("Native attention", "Grad-CAM") was drawn over the top left of the face."""
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        page.get_by_role("tab", name="Compare").click()
        page.get_by_role("gridcell", name=re.compile(r"true label: sad$")).click()
        page.wait_for_function("() => document.querySelector('#compare-photo img')?.src.includes('sad')")
        shown = page.locator("#compare-boxes img")
        before = shown.first.get_attribute("src") if shown.count() else ""  # an earlier test's comparison
        page.get_by_role("button", name="Compare models").click()
        page.wait_for_function("b => (document.querySelector('#compare-boxes img')?.src || b) !== b", arg=before)
        page.locator("img[alt*=': Grad-CAM']").nth(len(TRAINED) - 1).wait_for(state="attached")
        for image in page.locator("img[alt*='colour bar']").all():  # drawn only once scrolled to (lazy)
            image.scroll_into_view_if_needed()
            page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
        columns = [p.locator("xpath=ancestor::div[contains(@class, 'column')][1]")
                   for p in page.locator(".compare-probs").all()]  # each model's
        boxes = [c.bounding_box() for c in columns]
        assert len(boxes) == len(TRAINED) >= 4
        assert len({round(b["y"]) for b in boxes}) == 1, boxes  # one row
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= 1024 for b in boxes), boxes
        assert max(b["width"] for b in boxes) - min(b["width"] for b in boxes) <= 1, boxes  # maps of one size
        for column in columns:
            for title, alt in (("Native attention", ": its own attention"),
                               ("Grad-CAM (predicted class)", ": Grad-CAM")):
                image = column.locator(f"img[alt*='{alt}']")
                if not image.count():
                    continue  # an architecture without attention of its own has no native map
                texts = column.get_by_text(title, exact=True).all() + column.get_by_text(title.split(" (")[0],
                                                                                          exact=True).all()
                shown = [t.bounding_box() for t in texts if t.is_visible()]
                assert shown, title
                i = image.bounding_box()
                for t in shown:  # the title clear of the map, above it
                    assert t["y"] + t["height"] <= i["y"] + 1, (title, t, i)
        page.screenshot(path=str(SHOTS / "compare_1024.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})


def test_on_a_projector_the_sanity_table_shows_every_map_and_the_figure_the_tabs_width(page):
    """At 1,024 px the ρ table (662 px in a 566-px panel) hid its Grad-CAM and Saliency columns behind a sideways
    scroll. The figure fills the tab's width there (958 px: tests/test_sanity.py reads its text at that width)."""
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        page.get_by_role("tab", name="Sanity check").click()
        page.get_by_role("tabpanel").get_by_role("row", name=re.compile(r"true label: happy$")).click()
        page.wait_for_function("() => document.querySelector('#sanity-photo img')?.src.includes('happy')")
        page.get_by_role("button", name="Run the sanity check").click()
        page.locator("#sanity-verdicts").get_by_text("mean ρ").first.wait_for(timeout=300_000)
        table = page.locator("#sanity-table")
        table.get_by_role("columnheader", name="Saliency").first.wait_for()
        panel = table.bounding_box()
        headers = [h.bounding_box() for h in table.locator("th").all() if h.is_visible()]
        assert len(headers) == 4  # the steps, the native attention, Grad-CAM, Saliency
        assert all(h["x"] >= panel["x"] and h["x"] + h["width"] <= panel["x"] + panel["width"] + 1 for h in headers)
        wide = table.locator(".table-wrap").evaluate_all("ws => ws.filter(w => w.scrollWidth > w.clientWidth + 1)"
                                                         ".map(w => [w.scrollWidth, w.clientWidth])")
        assert not wide, wide
        figure = page.locator("#sanity-figure img").first
        figure.scroll_into_view_if_needed()
        assert figure.bounding_box()["width"] >= 950
        page.screenshot(path=str(SHOTS / "sanity_1024.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})
        page.get_by_role("tab", name="Compare").click()


def test_a_file_that_is_not_an_image_is_one_message_not_an_error_on_every_panel(page, tmp_path):
    """Compare models on it put gradio's red "Error" badge on each of the 16 panels, one over the message."""
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not a picture")
    page.locator("#compare-photo input[type=file]").set_input_files(str(fake))
    status = page.locator("#compare-status")
    status.get_by_text("holiday.jpg: ").wait_for()
    page.get_by_role("button", name="Compare models").click()
    page.wait_for_timeout(3000)  # the answer: the same message, panels cleared
    assert status.inner_text().startswith("holiday.jpg: ")
    assert page.locator("#compare-results").get_by_text("Error", exact=True).count() == 0
    for close in page.locator(".toast-close").all():
        close.click()  # out of the later tests' way


# how far a gallery's first caption sits below its image (px; negative: it covers the image, as gradio's overlay did)
CAPTION_BELOW = """g => { const i = g.querySelector('.thumbnail-item img'), c = g.querySelector('.caption-label');
  return c.getBoundingClientRect().top - i.getBoundingClientRect().bottom; }"""


def test_the_stability_versions_are_captioned_whole_under_their_faces(page):
    """At 1,024 px the last version's caption read "crop shifte…" over the face's corner: gradio cuts a caption to
    one line and draws it over the image."""
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        page.get_by_role("tab", name="Stability").click()
        page.get_by_role("tabpanel").get_by_role("row", name=re.compile(r"true label: happy$")).click()
        page.locator("#stability-photo img").first.wait_for()
        page.get_by_role("button", name="Probe stability").click()
        page.locator("#stability-summary").get_by_text("mean").first.wait_for(timeout=180_000)
        gallery = page.locator("#stability-gallery")
        gallery.locator(".caption-label").first.wait_for()
        cut = gallery.locator(".caption-label").evaluate_all(
            "cs => cs.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.innerText)")
        assert not cut and "crop shifted 6 %" in gallery.inner_text()
        assert gallery.evaluate(CAPTION_BELOW) >= -0.5
        page.screenshot(path=str(SHOTS / "stability_1024.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})
        page.get_by_role("tab", name="Compare").click()


def test_dataset_analysis_renders_and_a_cell_click_fills_the_gallery(page):
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_label("Dataset (configured)").click()
    page.get_by_role("option", name="ckplus").click()
    page.get_by_role("button", name="Run analysis").click()
    page.get_by_text("144 faces").wait_for(timeout=300_000)  # cold in a fresh clone: three models, 144 faces
    happy = diagonal_cell(page, "happy")  # every model gets some of the happy test faces right
    happy.wait_for()
    expected = int(happy.inner_text())
    assert expected > 0
    happy.click()
    page.get_by_text(f"{plural(expected, 'face')} of true class happy").wait_for()
    assert page.locator("#dataset-gallery img").count() == min(expected, 60)
    assert page.locator("#dataset-gallery").evaluate(CAPTION_BELOW) >= -0.5  # a face's caption does not cover it
    style = happy.evaluate("c => getComputedStyle(c.closest('td') || c).backgroundColor")
    assert style not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")  # the clickable matrix is the coloured one
    # the clicked cell keeps its number legible: behind the text is the cell's own colour (gradio painted the
    # selected cell's text on white, and a dark cell's number is near-white: a 781 vanished)
    behind = happy.evaluate("""c => { const r = c.getBoundingClientRect();
        let e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        while (e && getComputedStyle(e).backgroundColor === 'rgba(0, 0, 0, 0)') e = e.parentElement;
        return getComputedStyle(e).backgroundColor; }""")
    assert behind == style
    page.screenshot(path=str(SHOTS / "dataset.png"), full_page=True)


def test_a_gallery_face_opens_in_explain_and_runs_with_its_true_label(page):
    page.locator("#dataset-gallery img").first.click()
    status = page.locator("#explain-results")
    status.get_by_text("true label").wait_for(timeout=180_000)  # the explanation ran by itself
    assert "ckplus/test face #" in status.inner_text() and "its exact pixels" in status.inner_text()
    # explained by the models analysed (every trained one here), not by Explain's own two default ticks
    assert page.locator("#explain-models input:checked").count() == len(TRAINED)
    tiles = page.locator("#explain-gallery img")
    tiles.first.wait_for()
    assert tiles.count() >= 2
    fit = tiles.first.evaluate("i => getComputedStyle(i).objectFit")
    assert fit == "contain"  # tiles shown whole: face, colour bar and its numbers
    assert "deletion" in page.locator("#explain-gallery .caption-label").first.inner_text()  # faithfulness beside it
    assert page.locator("#explain-gallery").evaluate(CAPTION_BELOW) >= -0.5  # under the map, not over its mouth
    page.screenshot(path=str(SHOTS / "explain_from_dataset.png"), full_page=True)


PLOT_READY = ("() => { const el = document.querySelector('#dataset-embedding .ferx-plot');"
              " return el && el.dataset.ready; }")
# sample ids of the drawn points whose screen position lies inside [x0, x1] x [y0, y1], and how close the
# nearest point comes to the box's edge (in px): computed from what plotly drew, not from the server's data
POINTS_IN_BOX = """([x0, y0, x1, y1]) => {
  const el = document.querySelector('#dataset-embedding .ferx-plot');
  const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis, r = el.getBoundingClientRect();
  const ids = new Set(); let edge = 1e9;
  el._fullData.forEach(t => Array.from(t.x).forEach((x, i) => {
    const px = r.left + xa._offset + xa.c2p(x), py = r.top + ya._offset + ya.c2p(t.y[i]);
    edge = Math.min(edge, Math.abs(px - x0), Math.abs(px - x1), Math.abs(py - y0), Math.abs(py - y1));
    if (px >= x0 && px <= x1 && py >= y0 && py <= y1) ids.add(Number(t.customdata[i][0]));
  }));
  return {ids: [...ids].sort((a, b) => a - b), edge};
}"""


def test_a_box_selection_in_the_embedding_shows_exactly_the_faces_inside_it(page):
    page.get_by_role("tab", name="Dataset").click()
    page.wait_for_function(PLOT_READY)
    page.locator("#dataset-embedding .ferx-plot").scroll_into_view_if_needed()
    page.locator('#dataset-embedding [data-title="Box Select"]').click()
    area = page.locator("#dataset-embedding .nsewdrag").first.bounding_box()
    corners = [(fx / 20, fy / 20) for fy in range(2, 13) for fx in range(2, 13)]
    for fx, fy in corners:  # the first box, scanning the plot, with some faces and none of them on its edge
        box = [area["x"] + area["width"] * fx, area["y"] + area["height"] * fy,
               area["x"] + area["width"] * (fx + 0.3), area["y"] + area["height"] * (fy + 0.3)]
        inside = page.evaluate(POINTS_IN_BOX, box)
        if 0 < len(inside["ids"]) <= 60 and inside["edge"] > 1.5:
            break
    expected = inside["ids"]
    assert 0 < len(expected) <= 60
    page.mouse.move(box[0], box[1])
    page.mouse.down()
    page.mouse.move((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, steps=6)
    page.mouse.move(box[2], box[3], steps=6)
    page.mouse.up()
    page.get_by_text(f"{plural(len(expected), 'face')} selected in the PCA").wait_for()
    captions = page.locator("#dataset-gallery .caption-label")
    shown = sorted(int(c.split()[0].lstrip("#")) for c in captions.all_inner_texts())
    assert shown == expected
    assert page.locator("#dataset-selection-summary").inner_text().startswith(plural(len(expected), "face"))
    page.get_by_role("button", name="Selection as CSV").click()
    link = page.locator("#dataset-selection-csv a").first
    link.wait_for()
    rows = page.request.get(link.get_attribute("href")).text().strip().splitlines()
    assert rows[0].startswith("sample,path,true,pred") and sorted(int(r.split(",")[0]) for r in rows[1:]) == expected
    page.screenshot(path=str(SHOTS / "dataset_box_selection.png"), full_page=True)


def test_the_embedding_keeps_its_height_when_the_window_changes_size(page):
    """A window resized (a projector's 1024 x 768, a phone turned, a browser zoomed) left the embedding 80 px high,
    its points gone, until the next analysis: plotly's responsive resize took the height of the plot's box."""
    page.get_by_role("tab", name="Dataset").click()
    if not page.evaluate(PLOT_READY):  # run alone: analyse the small split
        page.get_by_label("Dataset (configured)").click()
        page.get_by_role("option", name="ckplus").click()
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function(PLOT_READY, timeout=300_000)
    plot = page.locator("#dataset-embedding .ferx-plot")
    drawn = plot.bounding_box()["height"]
    assert drawn >= 500
    try:
        for width, height in ((1024, 768), (390, 844), (1400, 1800)):
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(1000)  # plotly redraws on the window's resize event
            assert plot.bounding_box()["height"] == drawn, f"{width} x {height}"
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})


def test_an_uploaded_face_lands_on_itself_among_the_analysed_faces(page, data_root, tmp_path):
    faces = pack_split(load_split("ckplus", "test", data_root), progress=False)
    sample = 100
    photo = tmp_path / "ck_face.png"
    Image.fromarray(faces.images[sample]).save(photo)
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_text("Where does my photo land?").click()
    page.locator("#place-photo input[type=file]").set_input_files(str(photo))
    page.locator("#place-whole input").check()
    k = page.locator("#place-k input")
    k.fill("999")  # above the box's maximum: it shows the value used once the user leaves it
    k.press("Tab")
    page.wait_for_function("() => document.querySelector('#place-k input').value === '50'")
    k.fill("3")
    page.get_by_role("button", name="Place it among the analysed faces").click()
    first = page.locator("#place-neighbours .caption-label").first
    first.wait_for()
    assert first.inner_text().startswith(f"#{sample} {faces.classes[faces.targets[sample]]} · d 0.0")
    assert page.locator("#place-neighbours .caption-label").count() == 4  # the face itself, then its 3 nearest
    assert page.locator("#place-table").get_by_text("distance percentile").count() >= 1
    page.locator("#place-table").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "dataset_placement.png"), full_page=True)


def test_the_disagreement_explorer_tile_opens_its_face_and_a_new_analysis_clears_it(page):
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_text("Disagreement explorer: model A vs model B, with their maps").click()
    page.get_by_label("Faces (both surest first)").fill("4")
    page.get_by_label("Faces per class (table)").fill("1")
    start = time.perf_counter()
    page.get_by_role("button", name="Compare the maps where they disagree").click()
    caption = page.locator("#disagree-gallery .caption-label").first
    caption.wait_for(timeout=300_000)
    print(f"disagreement explorer, 4 faces: {time.perf_counter() - start:.2f} s")
    assert 1 <= page.locator("#disagree-gallery img").count() <= 4
    sample = re.match(r"#(\d+) ", caption.inner_text()).group(1)
    page.locator("#disagree-gallery").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "dataset_disagreement.png"), full_page=True)
    page.locator("#disagree-gallery img").first.click()
    status = page.locator("#explain-results")
    status.get_by_text(re.compile(rf"ckplus/test face #{sample} \(its exact pixels\)")).wait_for(timeout=180_000)
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("button", name="Run analysis").click()  # the same split again (cached): the explorer is cleared
    page.wait_for_function("() => !document.querySelector('#disagree-gallery img')", timeout=120_000)


def test_the_card_and_its_link_restore_the_explain_view(page):
    """Right after the explorer's face was explained: a card is of an explanation at most 2 minutes old (the app
    drops a photo's maps then), and the tests between them took longer than that on a loaded machine."""
    page.get_by_role("tab", name="Explain").click()
    status = page.locator("#explain-results")
    face = status.inner_text()  # the dataset face opened from the gallery (an earlier test), explained
    assert "ckplus/test face #" in face
    start = time.perf_counter()
    page.get_by_role("button", name="Explanation card (PNG, PDF) and link").click()
    url = page.locator("#explain-card-url textarea, #explain-card-url input").first
    page.wait_for_function("() => document.querySelector('#explain-card-url textarea, #explain-card-url input')"
                           "?.value.includes('view=explain')", timeout=120_000)
    link = url.input_value()
    print(f"card (PNG, PDF, JSON) and link: {time.perf_counter() - start:.2f} s")
    assert "dataset=ckplus" in link and "split=test" in link and "sample=" in link
    page.locator("#explain-card-png img").wait_for()
    assert page.locator("#explain-card-files").get_by_text(".pdf").count() >= 1
    page.screenshot(path=str(SHOTS / "explain_card.png"), full_page=True)
    assert "colormap_name=%22auto%22" in link
    link = link.replace("colormap_name=%22auto%22", "colormap_name=%22viridis%22")  # a setting of its own
    visitor = page.context.browser.new_context(viewport={"width": 1400, "height": 1800})
    other = visitor.new_page()  # a new visitor (a new session) opens the link
    other.set_default_timeout(60_000)
    try:
        start = time.perf_counter()
        other.goto(link)
        restored = other.locator("#explain-results")
        restored.get_by_text("true label").wait_for(timeout=180_000)  # it opened in Explain and ran by itself
        other.locator("#explain-gallery img").first.wait_for()
        print(f"link to the restored view, explained: {time.perf_counter() - start:.2f} s")
        assert restored.inner_text() == face  # the same dataset face, sample number and true label
        assert other.get_by_label("Colormap (auto: inferno, RdBu_r for signed)").input_value() == "viridis"
        other.screenshot(path=str(SHOTS / "explain_from_link.png"), full_page=True)
    finally:
        visitor.close()


def test_on_a_phone_a_tapped_cell_brings_its_faces_into_view(page):
    page.get_by_role("tab", name="Dataset").click()  # at 390 px Gradio folds tabs into a menu: choose it first
    page.locator("#confusion-matrix").wait_for()
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        surprise = diagonal_cell(page, "surprise")  # every model gets some surprised faces right
        surprise.scroll_into_view_if_needed()
        assert int(surprise.inner_text()) > 0
        surprise.click()
        page.get_by_text("of true class surprise").wait_for()
        gallery = page.locator("#dataset-gallery")
        page.wait_for_function("() => { const r = document.getElementById('dataset-gallery').getBoundingClientRect();"
                               " return r.top >= -5 && r.top < window.innerHeight / 2; }", timeout=10_000)
        page.screenshot(path=str(SHOTS / "dataset_phone.png"))
        assert gallery.is_visible()
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})


SIDEWAYS = """v => [...v.querySelectorAll('*')].filter(e => getComputedStyle(e).overflowX !== 'visible')
  .map(e => e.scrollWidth - e.clientWidth).reduce((a, b) => Math.max(a, b), 0)"""


def test_on_a_projector_the_matrices_show_every_column_and_a_click_brings_the_faces(page):
    """In a 1,024 x 768 window the matrices, beside the gallery, were 564 px wide for a 691-px table: neutral and
    contempt (the largest column of mistakes) were behind a sideways scroll. Now the gallery goes below them, and a
    clicked cell scrolls to its faces."""
    page.wait_for_timeout(500)  # a tab clicked as the tab bar unfolds from a phone's menu can land on its neighbour
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("tab", name="Dataset", selected=True).wait_for()
    if not page.evaluate(PLOT_READY):  # run alone: analyse the small split
        page.get_by_label("Dataset (configured)").click()
        page.get_by_role("option", name="ckplus").click()
        page.get_by_role("button", name="Run analysis").click()
        page.wait_for_function(PLOT_READY, timeout=300_000)
    page.set_viewport_size({"width": 1024, "height": 768})
    try:
        page.wait_for_timeout(1000)
        for view in ("#confusion-matrix", "#cross-matrix"):
            page.locator(view).get_by_role("gridcell").first.wait_for()  # shown, so its widths are measured
            assert page.locator(view).evaluate(SIDEWAYS) <= 1, view
        page.locator("#confusion-matrix").wait_for()
        page.locator("#confusion-matrix").scroll_into_view_if_needed()
        happy = diagonal_cell(page, "happy")
        happy.click()
        page.get_by_text("of true class happy").wait_for()
        page.wait_for_function("() => { const r = document.getElementById('dataset-gallery').getBoundingClientRect();"
                               " return r.top >= -5 && r.top < window.innerHeight / 2; }", timeout=10_000)
        page.screenshot(path=str(SHOTS / "dataset_1024.png"), full_page=True)
    finally:
        page.set_viewport_size({"width": 1400, "height": 1800})


def test_a_face_uploaded_while_another_user_analyses_a_zip_is_answered_first(page, data_root, tmp_path):
    """Item 2 of the walkthrough: one user's dataset analysis must not freeze another user's Compare.
    The zip (1,200 real faces, never cached) takes far longer to analyse than one face takes to score;
    the second user's answer must arrive while the analysis is still running."""

    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    archive = face_zip(tmp_path / "class_faces.zip", faces_of(packed, range(1200)))
    face = tmp_path / "another_face.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[1])]).resize((240, 240)).save(face)

    page.get_by_role("tab", name="Dataset").click()
    page.locator("#dataset-zip input[type=file]").set_input_files(str(archive))
    page.get_by_role("button", name="Run analysis").click()
    page.locator("#dataset-status .progress-text, #dataset-status .eta-bar, #dataset-status .progress-bar").first.wait_for()

    other = page.context.browser.new_page(viewport={"width": 1400, "height": 1800})  # another user, another session
    try:
        other.set_default_timeout(120_000)
        other.goto(page.url)
        other.get_by_label("Score the whole image as a face (skip face detection)").first.check()
        start = time.perf_counter()
        other.locator("#compare-photo input[type=file]").set_input_files(str(face))
        other.locator(".compare-probs").first.get_by_text("happy").first.wait_for()
        print(f"upload to probabilities while another user's zip is analysed: {time.perf_counter() - start:.2f} s")
        assert page.get_by_text("1,200 faces").count() + page.get_by_text("1200 faces").count() == 0  # still analysing
    finally:
        other.close()
        page.get_by_role("button", name="Stop").click()


def test_the_occlusion_brush_on_a_happy_face_costs_happy(page, data_root, tmp_path):
    """Three strokes across the mouth of a 48-px FER face (as the examples are) cost happy at least 10 points
    and leave the eyes unpainted: gradio's default brush (radius 25 in the photo's pixels) painted 85 % of the
    face with one dab."""
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = tmp_path / "smile.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).save(face)
    page.get_by_role("tab", name="Occlusion brush").click()
    page.locator("#occlusion-whole input").check()  # a FER face: already a crop
    editor = page.locator("#occlusion-editor")
    editor.locator("input[type=file]").set_input_files(str(face))
    status = page.locator("#occlusion-status")
    status.get_by_text("nothing painted yet").wait_for()  # the upload alone is scored, unpainted
    zoom = float(editor.get_by_text(re.compile(r"^\d+%$")).inner_text().rstrip("%")) / 100
    box = editor.locator("canvas").first.bounding_box()
    side = 48 * zoom  # the photo is shown centred in the canvas at this zoom
    x0, y0 = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    page.get_by_role("button", name="Brush", exact=True).click()
    start = time.perf_counter()
    for fy in (0.68, 0.76, 0.84):  # three strokes over the mouth
        page.mouse.move(x0 + 0.25 * side, y0 + fy * side)
        page.mouse.down()
        page.mouse.move(x0 + 0.75 * side, y0 + fy * side, steps=12)
        page.mouse.up()
    mini = page.locator(".occlusion-change").nth(-1)  # mini-Xception's column is the last
    mini.get_by_text(re.compile(r"happy \d+% → \d+% \(▼ [1-9]\d\.\d points\)")).wait_for()  # lost ≥ 10 points
    status.get_by_text("of the face crop painted over").wait_for()
    page.wait_for_function("() => !document.querySelector('#occlusion-status .wrap:not(.hide)') && "
                           "parseInt(document.getElementById('occlusion-status').innerText) >= 15")  # all strokes
    print(f"three strokes to every model's probabilities and maps: {time.perf_counter() - start:.2f} s; last: "
          f"{status.inner_text()}")
    assert page.locator(".occlusion-probs").count() == len(TRAINED)  # every model, chosen by default
    painted = int(status.inner_text().split("%")[0])
    assert painted <= 60, f"{painted} % of the face painted by three strokes over the mouth"  # the eyes stay
    title, crops = page.locator("#occlusion-strip-title").bounding_box(), page.locator("#occlusion-strip img").bounding_box()
    assert title["y"] + title["height"] <= crops["y"]  # the strip's title above its faces: gradio's label hid their top
    assert not page.locator("#occlusion-strip [data-testid=block-label]").first.is_visible()
    page.screenshot(path=str(SHOTS / "occlusion.png"), full_page=True)


def test_the_occlusion_brush_says_what_each_of_its_maps_means(page):
    """Compare explains every map under it; the Occlusion brush drew the same maps (native attention, Grad-CAM)
    before and after the paint and only named them."""
    from ferx.explain.methods import reading
    from ferx.models import get_model_info

    page.get_by_role("tab", name="Occlusion brush").click()
    try:
        readings = page.locator(".occlusion-readings").filter(has_not=page.locator(".occlusion-readings"))  # innermost
        readings.first.wait_for()
        texts = readings.all_inner_texts()
        assert len(texts) == len(TRAINED) and all(reading("gradcam") in t for t in texts)
        for checkpoint, text in zip(sorted(TRAINED), texts):
            for native in get_model_info(read_card(checkpoint)["model"]).native_maps:
                assert native.reading in text, checkpoint.name
    finally:
        page.get_by_role("tab", name="Compare").click()


def test_an_upload_the_server_deleted_is_refused_by_name_in_explain(page, data_root, tmp_path):
    """The sweep deletes uploads within two minutes while the browser still shows them. Explain's photo
    input is rebuilt for each session when the page loads (the link restorer updates it), and that copy
    once fell back to gradio's own decoder: its message quoted the server path."""
    import uuid

    from gradio.utils import get_upload_folder

    name = f"expiring_{uuid.uuid4().hex[:8]}.png"
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    Image.fromarray(packed.images[0]).resize((160, 160)).save(tmp_path / name)
    page.get_by_role("tab", name="Explain").click()
    page.locator("#explain-photo input[type=file]").set_input_files(str(tmp_path / name))
    page.locator("#explain-photo img").wait_for()
    copies = []
    for _ in range(50):  # the upload reaches the server's folder a moment after the preview
        copies = list(Path(get_upload_folder()).rglob(name))
        if copies:
            break
        time.sleep(0.1)
    assert copies, "the upload never reached the server"
    for copy in copies:
        copy.unlink()  # what webapp/uploads.py's sweep does after 60-90 s
    page.get_by_role("button", name="Explain", exact=True).click()
    toast = page.locator(".toast-body").filter(has_text=name)
    toast.wait_for()
    message = toast.inner_text()
    assert "upload it again" in message
    assert "/tmp" not in message and "gradio" not in message.lower() and "preprocess" not in message
    page.locator(".toast-close").first.click()  # out of the later tests' way


def test_live_mode_streams_the_webcam_face_and_draws_maps_on_demand(page):
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-webcam").get_by_text("Click to Access Webcam").click()
    page.get_by_role("button", name="capture photo").click()  # "Record": the stream starts
    status = page.locator("#live-status")
    start = time.perf_counter()
    status.get_by_text("scoring the largest").wait_for()
    print(f"record to the first answer: {time.perf_counter() - start:.2f} s")
    status.get_by_text("frames/s held").wait_for()
    time.sleep(8)  # a classroom's few seconds
    page.locator("#live-webcam").get_by_text("Stop", exact=True).click()  # the answers stay on screen
    page.wait_for_function("() => !document.querySelector('#live-status .wrap:not(.hide), .live-probs .wrap:not(.hide)')")
    held = float(re.search(r"([\d.]+) frames/s held", status.inner_text()).group(1))  # no frame in flight now
    print(f"live: {status.inner_text()}")
    # the stream kept going: frames were scored all along, not one and then a stall. How fast is bench_live.py's to
    # measure: one frame every FRAME_INTERVAL_S (0.5 s) asked, 1.2-2.0 frames/s held alone, 0.6 seen in a full CI run
    assert held >= 0.25
    probs = page.locator(".live-probs")
    tops = [[line for line in probs.nth(i).inner_text().split("\n") if not re.fullmatch(r"[\d.]+s", line)][:2]
            for i in range(probs.count())]  # the model's name, its top class (a timer's "0.4s" left out)
    streamed = [top for top in tops if len(top) == 2]  # the models chosen by default: those under SMALL_MODEL
    small = [p for p in TRAINED if read_card(p)["parameters"] < SMALL_MODEL]
    assert len(streamed) == len(small) >= 3 and all(top == "happy" for _, top in streamed), tops
    start = time.perf_counter()
    page.get_by_role("button", name="Maps of this moment (Grad-CAM)").click()
    page.locator("#live-maps img").nth(2).wait_for()
    print(f"maps of this moment (3 models): {time.perf_counter() - start:.2f} s")
    page.screenshot(path=str(SHOTS / "live.png"), full_page=True)
    # each map whole, its caption (the model, its verdict) under it and inside the gallery's box: at a fixed 320 px
    # the tiles' lower parts were cut off and every caption was below the fold, three maps nobody could tell apart
    shown = page.evaluate("""() => { const g = document.querySelector('#live-maps').getBoundingClientRect();
        const inside = e => { const r = e.getBoundingClientRect(); return r.height > 0 && r.bottom <= g.bottom + 1; };
        return [...document.querySelectorAll('#live-maps .thumbnail-item')].map(t => [
            t.querySelector('.caption-label') ? t.querySelector('.caption-label').innerText : '',
            inside(t.querySelector('img')), !!t.querySelector('.caption-label') && inside(t.querySelector('.caption-label'))]);
    }""")
    assert len(shown) == len(streamed) and all(image and caption for _, image, caption in shown), shown
    assert [text.split(" · ")[0] for text, _, _ in shown] == [p.name for p in small], shown
