"""Load check: N concurrent prediction requests from gradio_client on loopback.

    python bench/load_check.py [--requests 20] [--url http://127.0.0.1:7860/]
    python bench/load_check.py --during-analysis ferplus/test [--probes 8]

Without --url it starts the app itself (committed checkpoints, ./datasets). Prints each request's
latency, their median / p95 / max, the time from launch to the first page, and whether the server
still answers afterwards.

``--during-analysis DATASET/SPLIT`` measures what a teacher's class sees while one user analyses a
dataset: ``/predict`` latency one request at a time on an idle server, then again while a
first-time ``/analyze`` of that split with every offered model runs (the app started by the script
gets an empty cache folder, so the analysis really computes), and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import ferx  # noqa: E402,F401
from ferx.data import load_fer2013, pack_split  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--url", default=None)
    p.add_argument("--data-root", default=str(REPO / "datasets"))
    p.add_argument("--during-analysis", metavar="DATASET/SPLIT", default=None)
    p.add_argument("--probes", type=int, default=8, help="sequential /predict requests per phase")
    p.add_argument("--spacing", type=float, default=8.0, help="seconds between the starts of probes during the "
                   "analysis (spreads them over its phases: reading faces, then each model's batches)")
    args = p.parse_args()
    from gradio_client import Client, handle_file

    packed = pack_split(load_fer2013(args.data_root, "test"), progress=False)
    folder = Path(tempfile.mkdtemp())
    faces = []
    for i in range(args.requests):
        path = folder / f"face{i}.png"
        Image.fromarray(packed.images[i]).resize((240, 240)).save(path)
        faces.append(str(path))

    def run(url: str) -> None:
        client = Client(url, verbose=False)

        def one(path):
            start = time.perf_counter()
            status = client.predict(handle_file(path), True, 0, api_name="/predict")[0]
            return time.perf_counter() - start, status

        start = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            results = list(pool.map(one, faces))
        wall = time.perf_counter() - start
        latencies = sorted(r[0] for r in results)
        answered = sum("scoring face 0" in r[1] for r in results)
        print(f"{answered}/{args.requests} answered in {wall:.2f} s wall")
        print("latencies (s): " + ", ".join(f"{t:.2f}" for t in latencies))
        print(f"median {statistics.median(latencies):.2f} s, p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f} s, "
              f"max {latencies[-1]:.2f} s")
        healthy = urllib.request.urlopen(url, timeout=10).status == 200 and "scoring face 0" in one(faces[0])[1]
        print(f"server healthy afterwards: {healthy}")

    def during_analysis(url: str) -> None:
        import threading

        dataset, split = args.during_analysis.split("/")
        client = Client(url, verbose=False)
        models = client.view_api(return_format="dict", print_info=False)
        chosen = _offered_models(models)

        def probe():
            start = time.perf_counter()
            status = client.predict(path=handle_file(faces[0]), whole_image=True, index=0, api_name="/predict")[0]
            assert "scoring face 0" in status, status
            return time.perf_counter() - start

        probe()  # warm-up: first-call costs are not the server's steady state
        idle = [probe() for _ in range(args.probes)]
        done, analysis = threading.Event(), {}

        def analyse():
            start = time.perf_counter()
            out = Client(url, verbose=False).predict(name=dataset, split_name=split, zip_file=None, chosen=chosen,
                                                      calib=False, api_name="/analyze")
            analysis["wall"], analysis["status"] = time.perf_counter() - start, out[0]
            done.set()

        began = time.perf_counter()
        threading.Thread(target=analyse, daemon=True).start()
        time.sleep(3)  # the analysis is under way (packing, then the models' batches)
        busy, offsets = [], []
        while not done.is_set() and len(busy) < args.probes:
            offsets.append(time.perf_counter() - began)
            busy.append(probe())
            time.sleep(max(0.0, args.spacing - busy[-1]))
        done.wait()
        print(f"analysis of {args.during_analysis} with {', '.join(chosen)}: {analysis['wall']:.1f} s "
              f"({analysis['status']})")
        print("/predict idle (s): " + ", ".join(f"{t:.2f}" for t in idle))
        print("/predict during the analysis (s, at second): " + ", ".join(f"{t:.2f} (@{o:.0f})"
                                                                         for t, o in zip(busy, offsets)))
        ratio = statistics.median(busy) / statistics.median(idle)
        print(f"median idle {statistics.median(idle):.2f} s, during {statistics.median(busy):.2f} s "
              f"(max {max(busy):.2f} s): {ratio:.2f}x idle (target <= 2x)")

    check = during_analysis if args.during_analysis else run
    if args.url:
        check(args.url)
        return
    from webapp_server import running_app

    if args.during_analysis:  # a first-time analysis: nothing of this split may come from a cache
        os.environ["FERX_CACHE_DIR"] = tempfile.mkdtemp(prefix="ferx-load-cache-")
    start = time.perf_counter()
    with running_app(Path(args.data_root)) as url:
        urllib.request.urlopen(url, timeout=30).read()
        print(f"launch to first page: {time.perf_counter() - start:.2f} s")
        check(url)


def _offered_models(api: dict) -> list[str]:
    """The models the running app offers (the choices of /analyze's ``chosen`` parameter)."""
    for param in api["named_endpoints"]["/analyze"]["parameters"]:
        if param["parameter_name"] == "chosen":
            return list(param["python_type"]["type"].split("Literal[")[1].split("]")[0].replace("'", "").split(", "))
    raise SystemExit("the app's /analyze endpoint has no 'chosen' parameter")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
