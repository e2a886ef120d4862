"""Load check: N concurrent prediction requests from gradio_client on loopback.

    python bench/load_check.py [--requests 20] [--url http://127.0.0.1:7860/]
    python bench/load_check.py --during-analysis ferplus/test [--probes 8]
    python bench/load_check.py --during-analysis zip:3000
    python bench/load_check.py --soak 200

Without --url it starts the app itself (committed checkpoints, ./datasets). Prints each request's
latency, their median / p95 / max, the time from launch to the first page, and whether the server
still answers afterwards.

``--during-analysis DATASET/SPLIT`` measures what a teacher's class sees while one user analyses a
dataset: ``/predict`` latency one request at a time on an idle server, then again while a
first-time ``/analyze`` of that split with every offered model runs (the app started by the script
gets an empty cache folder, so the analysis really computes), and the ratio of the medians.
``zip:N`` uploads a zip of N FER-2013 test faces instead (``test/<class>/<i>.png``).

``--soak N`` sends N explanations one after another, each from a new client (a new session, as
every API client is; ``--soak-clients one`` for a single session), every offered model with its native maps, Grad-CAM and saliency on a
different face, and prints the server's resident memory every N/10 requests: it must level off
(the script starts ``ferx app`` in a process of its own for this, so the clients' memory is not
counted; with ``--url`` it reads its own, which is only right when the server runs in it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
    p.add_argument("--soak", type=int, default=0, metavar="N")
    p.add_argument("--soak-clients", choices=("new", "one"), default="new",
                   help="a new client (session) per explanation, or one client for all (no per-session state grows)")
    p.add_argument("--probes", type=int, default=8, help="sequential /predict requests per phase")
    p.add_argument("--spacing", type=float, default=8.0, help="seconds between the starts of probes during the "
                   "analysis (spreads them over its phases: reading faces, then each model's batches)")
    args = p.parse_args()
    from gradio_client import Client, handle_file

    packed = pack_split(load_fer2013(args.data_root, "test"), progress=False)
    folder = Path(tempfile.mkdtemp())
    faces = []
    for i in range(max(args.requests, 50)):
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

        if args.during_analysis.startswith("zip:"):
            source = (None, "test", handle_file(str(_faces_zip(packed, int(args.during_analysis[4:]), folder))))
        else:
            source = (*args.during_analysis.split("/"), None)
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
            out = Client(url, verbose=False).predict(name=source[0], split_name=source[1], zip_file=source[2],
                                                      chosen=chosen, calib=False, api_name="/analyze")
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

    def soak(url: str, pid: int | str = "self") -> None:
        chosen = _offered_models(Client(url, verbose=False).view_api(return_format="dict", print_info=False))
        start, samples, one = time.perf_counter(), [], Client(url, verbose=False)
        for i in range(args.soak):
            client = one if args.soak_clients == "one" else Client(url, verbose=False)
            out = client.predict(
                path=handle_file(faces[i % len(faces)]), whole_image=True, index=0, chosen=chosen, use_native=True,
                cam_methods=["gradcam"], captum_methods=["saliency"], target_name="predicted", contrast_name="none",
                opacity=0.5, colormap_name="auto", clip_pct=99, shared_scale=True, faithfulness=False,
                baseline_kind="blur", api_name="/explain")
            assert out[1], f"explanation {i + 1} returned no maps"
            if (i + 1) % max(1, args.soak // 10) == 0:
                samples.append((i + 1, _rss_mib(pid)))
                print(f"after {i + 1} explanations ({time.perf_counter() - start:.0f} s): RSS {samples[-1][1]:.0f} MiB",
                      flush=True)
        half = samples[len(samples) // 2 - 1]
        print(f"{args.soak} explanations ({'a new client each' if args.soak_clients == 'new' else 'one client'}) of {', '.join(chosen)} in {time.perf_counter() - start:.0f} s; RSS "
              f"{samples[0][1]:.0f} MiB after {samples[0][0]}, {half[1]:.0f} after {half[0]}, {samples[-1][1]:.0f} after "
              f"{samples[-1][0]}: second half grew {samples[-1][1] - half[1]:+.0f} MiB")

    if args.soak and not args.url:  # the server's memory alone: it runs in a process of its own
        with _app_process(args.data_root) as (url, pid):
            soak(url, pid)
        return
    check = soak if args.soak else during_analysis if args.during_analysis else run
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


def _rss_mib(pid: int | str = "self") -> float:
    """A process's resident memory in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def _app_process(data_root: str):
    """``ferx app`` in a process of its own (so its memory is the server's alone, not the clients'):
    yields its URL and pid."""
    from webapp_server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ferx.cli", "app", "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu", "--data-root", data_root], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"ferx app did not start (exit code {proc.poll()})")
                time.sleep(1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _faces_zip(packed, n: int, folder: Path) -> Path:
    """A zip of ``n`` test faces in ``test/<class>/<i>.png`` folders, as a user would upload."""
    import io
    import zipfile

    path = folder / f"faces{n}.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            buf = io.BytesIO()
            Image.fromarray(packed.images[i % len(packed)]).save(buf, "PNG")
            z.writestr(f"test/{packed.classes[packed.targets[i % len(packed)]]}/{i}.png", buf.getvalue())
    return path


def _offered_models(api: dict) -> list[str]:
    """The models the running app offers (the choices of /analyze's ``chosen`` parameter)."""
    for param in api["named_endpoints"]["/analyze"]["parameters"]:
        if param["parameter_name"] == "chosen":
            return list(param["python_type"]["type"].split("Literal[")[1].split("]")[0].replace("'", "").split(", "))
    raise SystemExit("the app's /analyze endpoint has no 'chosen' parameter")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
