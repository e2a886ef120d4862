"""Start-up time: seconds from process start to the first line of output and to exit of ``ferx --help``
and ``ferx explain``, and to the first page and the first prediction of ``ferx app``.

    python bench/bench_startup.py [--runs 3] [--cases help explain app] [--roots DIR ...]

Each run is a new process, ``python -m ferx.cli ...`` with ``PYTHONPATH`` set to the checkout
measured (``--roots``: this one by default; give an older copy too, e.g. ``git archive COMMIT |
tar -x -C /tmp/before``, for a before/after: the roots take turns, run by run, so both see the same
load). Output is unbuffered (``PYTHONUNBUFFERED=1``), as on a terminal, so a line counts when it
is printed; stderr counts as output too.

* ``help``: ``ferx --help``.
* ``explain``: ``ferx explain PHOTO --model checkpoints/mini_xception_fer2013`` (its defaults:
  native and Grad-CAM, with deletion/insertion), PHOTO the astronaut portrait that ships with
  scikit-image (one face), written as a JPEG to a temporary folder.
* ``app``: ``ferx app --device cpu`` on a free port with the root's checkpoints and ``--data-root``;
  the first page is the first HTTP 200 of ``/`` (polled every 50 ms); then one ``/predict`` of the
  same photo through gradio_client (every offered model, as the Compare tab), sent ``--pause``
  seconds after the page came (default 0: at once) and timed from when it is sent: the first
  prediction, which pays for whatever start-up deferred and has not finished by then.

One unrecorded warm-up run per case and root comes first (disk cache, ``__pycache__``, numba's
cache). Prints every run with the load average (``/proc/loadavg``, 1 min) at its start, then the
median per case and root.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}


def command(root: Path, work: Path, *args: str) -> dict:
    """Seconds to the first line of output and to exit of ``python -m ferx.cli ARGS``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ferx.cli", *args], cwd=work, env=environment(root),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first_line = proc.stdout.readline()
    first = time.perf_counter() - start
    rest = proc.stdout.read()
    if proc.wait() != 0:
        raise SystemExit(f"ferx {' '.join(args)} failed ({proc.returncode}):\n{first_line}{rest}")
    return {"first line": first, "exit": time.perf_counter() - start, "line": first_line.strip()}


def app(root: Path, work: Path, photo: Path, data_root: str, pause: float) -> dict:
    """Seconds to the first page of ``ferx app``, and from ``pause`` seconds after it to the answer of the first
    ``/predict``."""
    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "ferx.cli", "app", "--device", "cpu", "--port", str(port),
                             "--checkpoints", str(root / "checkpoints"), "--data-root", data_root],
                            cwd=work, env=environment(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    if page.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit(f"ferx app exited ({proc.returncode}):\n{proc.stderr.read().decode()}")
                time.sleep(0.05)
        first_page = time.perf_counter() - start
        time.sleep(pause)
        asked = time.perf_counter()
        client = Client(url, verbose=False)  # reads the API description: part of what a first user waits for
        status = client.predict(path=handle_file(str(photo)), whole_image=False, index=0, api_name="/predict")[0]
        if "scoring face 0" not in status:
            raise SystemExit(f"unexpected /predict status: {status}")
        return {"first page": first_page, "first predict": time.perf_counter() - asked}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cases", nargs="+", choices=["help", "explain", "app"], default=["help", "explain", "app"])
    p.add_argument("--roots", nargs="+", default=[str(REPO)], help="checkouts to measure, in turns")
    p.add_argument("--data-root", default=None, help="for the app (default: each root's datasets/)")
    p.add_argument("--model", default="checkpoints/mini_xception_fer2013", help="for explain, relative to the root")
    p.add_argument("--pause", type=float, default=0.0, help="app: seconds between the first page and the /predict")
    args = p.parse_args()

    from skimage import data
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    photo = work / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=92)
    roots = [Path(r).resolve() for r in args.roots]
    cases = {
        "help": lambda root: command(root, work, "--help"),
        "explain": lambda root: command(root, work, "explain", str(photo), "--model", str(root / args.model),
                                        "--out", str(work / "explain.png")),
        "app": lambda root: app(root, work, photo, args.data_root or str(root / "datasets"), args.pause),
    }
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}; {len(roots)} root(s), {args.runs} runs each"
          + (f"; /predict {args.pause:g} s after the first page" if "app" in args.cases else ""))
    for case in args.cases:
        results: dict[Path, list[dict]] = {root: [] for root in roots}
        for run in range(args.runs + 1):
            for root in roots:
                load = load_average()
                result = cases[case](root)
                times = "  ".join(f"{k} {v:6.2f} s" for k, v in result.items() if isinstance(v, float))
                label = "warm-up" if run == 0 else f"run {run}"
                print(f"{case:8s} {label:8s} {root}: {times}  (load {load:.2f})", flush=True)
                if run:
                    results[root].append({**result, "load": load})
        for root, runs in results.items():
            medians = "  ".join(f"{k} {statistics.median(r[k] for r in runs):6.2f} s" for k in runs[0]
                                if isinstance(runs[0][k], float) and k != "load")
            load = statistics.median(r["load"] for r in runs)
            print(f"{case:8s} MEDIAN   {root}: {medians}  (load {load:.2f})", flush=True)
        if case != "app":
            print(f"{case:8s} first line: {results[roots[-1]][-1]['line']!r}")


if __name__ == "__main__":
    main()
