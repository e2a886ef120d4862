"""Screenshots of the app as a user meets it, to look at before calling a UI change done.

    python bench/screenshots.py [--out runs/screenshots] [--dataset ferplus] [--width 1440]

Starts the real app on a free loopback port with the committed checkpoints, then in headless
Chromium: Compare with a real FER-2013 test face (every model side by side), Explain with the
models' native attention and Grad-CAM, and the Dataset tab after analysing the chosen test split
with every model (confusion matrix, the model A x model B matrix and the disagreement gallery);
the Sanity check and Stability tabs on the same face. Prints how long each view took to appear.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import ferx  # noqa: E402,F401  (before timm)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from ferx.data import load_fer2013, pack_split  # noqa: E402
from ferx.paths import default_checkpoints, default_data_root  # noqa: E402


def timed(label: str, start: float) -> None:
    print(f"{label}: {time.perf_counter() - start:.2f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "runs" / "screenshots"))
    p.add_argument("--dataset", default="ferplus")
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--height", type=int, default=1000)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs chromium (apt install chromium)")

    from playwright.sync_api import sync_playwright

    from webapp.app import build_app, launch_options
    from webapp.config import AppConfig
    from webapp_server import free_port

    data_root = default_data_root()
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = Path(tempfile.mkdtemp()) / "happy_face.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).resize((240, 240)).save(face)

    port = free_port()
    cfg = AppConfig(data_root=data_root, checkpoints=default_checkpoints(), device="cpu", host="127.0.0.1", port=port)
    app = build_app(cfg)
    app.launch(**launch_options(cfg), prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            # the first analysis of a split is computed, not cached: on a 2-core CPU without native bf16 the
            # FERPlus test split took 6 min with every model (Conv-cut 4 min of it, in fp32), so wait up to 15
            page.set_default_timeout(900_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("button", name="Compare models").wait_for()

            start = time.perf_counter()
            page.get_by_label("Score the whole image as a face (skip face detection)").first.check()
            page.locator("#compare-photo input[type=file]").set_input_files(str(face))
            page.get_by_text("scoring face 0").wait_for()
            page.wait_for_timeout(1500)
            timed("Compare: upload to results", start)
            page.mouse.wheel(0, 4000)  # the browser loads images far below the window only when scrolled to them
            page.wait_for_function("() => [...document.querySelectorAll('img')].filter(i => i.src.includes('/file=') "
                                   "&& i.getClientRects().length).every(i => i.complete && i.naturalWidth > 0)")
            page.mouse.wheel(0, -8000)
            page.screenshot(path=str(out / "compare.png"), full_page=True)  # every model's maps drawn

            page.get_by_role("tab", name="Explain").click()
            page.locator("#explain-photo input[type=file]").set_input_files(str(face))
            page.get_by_label("Score the whole image as a face (skip face detection)").nth(1).check()
            start = time.perf_counter()
            page.get_by_role("button", name="Explain", exact=True).click()
            page.get_by_text("explaining face 0").wait_for()
            page.wait_for_timeout(1500)
            timed("Explain: click to maps", start)
            page.screenshot(path=str(out / "explain.png"), full_page=True)

            for tab, n, button, done, shot in (("Sanity check", 2, "Run the sanity check", "#sanity-verdicts", "sanity"),
                                               ("Stability", 3, "Probe stability", "#stability-summary", "stability")):
                page.get_by_role("tab", name=tab).click()
                page.locator(f"#{shot}-photo input[type=file]").set_input_files(str(face))
                page.get_by_label("Score the whole image as a face (skip face detection)").nth(n).check()
                start = time.perf_counter()
                page.get_by_role("button", name=button).click()
                page.locator(done).get_by_text("mean").first.wait_for()
                page.wait_for_timeout(1500)
                timed(f"{tab}: click to results", start)
                page.screenshot(path=str(out / f"{shot}.png"), full_page=True)

            page.get_by_role("tab", name="Dataset").click()
            page.get_by_label("Dataset (configured)").click()
            page.get_by_role("option", name=args.dataset).click()
            start = time.perf_counter()
            page.get_by_role("button", name="Run analysis").click()
            page.locator("#cross-matrix [role=gridcell]").first.wait_for()
            page.wait_for_timeout(2000)
            timed(f"Dataset: {args.dataset} test analysis to matrices", start)
            page.get_by_label("Failure gallery").click()
            page.get_by_role("option", name="Model A vs B disagreement").click()
            page.get_by_role("button", name="Show failures").click()
            page.locator("#dataset-gallery img").first.wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "dataset.png"), full_page=True)
            browser.close()
    finally:
        app.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
