"""Load check: N concurrent prediction requests from gradio_client on loopback.

    python bench/load_check.py [--requests 20] [--url http://127.0.0.1:7860/]

Without --url it starts the app itself (committed checkpoints, ./datasets). Prints each request's
latency, their median / p95 / max, the time from launch to the first page, and whether the server
still answers afterwards.
"""

from __future__ import annotations

import argparse
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

    if args.url:
        run(args.url)
        return
    from webapp_server import running_app

    start = time.perf_counter()
    with running_app(Path(args.data_root)) as url:
        urllib.request.urlopen(url, timeout=30).read()
        print(f"launch to first page: {time.perf_counter() - start:.2f} s")
        run(url)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
