"""Photos per second: ferx's photo path next to the `fer` package (PyPI), alternating on the same photos.

    python bench/bench_photos.py --install-peer          # once: the peer's own environment
    python bench/bench_photos.py [--photos 100] [--rounds 5] [--one-process] [--detectors mtcnn haar]

The photos: ``--photos`` faces of the CK+48 test split (posed), each upscaled to 160 px (bicubic) and
padded to a 256-px portrait by edge replication, saved as JPEG (q92) in a temporary folder. Both
tools read the same files.

After one unmeasured pass of each over as many other photos (CK+48 training faces, made the same way:
ferx's MTCNN makes a net the first time it meets a pyramid size or an O-net crop count, 2-4 ms each,
then keeps it; the measured photos are not seen before), each round runs the peer over every photo,
then ferx once per detector, so load from other processes hits both alike; the figures printed are
photos/s per round and, at the end, the median of each and the ratio ferx / peer per round (median,
min-max). Predict only: decode, face detection,
crop, the classifier's probabilities for every face found, no maps.

* ferx, photo by photo (the app's path for one photo: its latency): :func:`ferx.faces.load_photo`,
  :func:`ferx.faces.find_faces` (``mtcnn``, its default, and ``haar``), :func:`ferx.inference.predict_faces`
  with the ported mini-Xception (``checkpoints/mini_xception_fer2013``), its one-face twin made first
  as the app's start-up makes it (:func:`ferx.memory_format.prepare_fast_forward`), torch and OpenCV at
  their default thread counts.
* ferx folder (``--no-folder`` leaves it out): the path of ``ferx evaluate FOLDER --faces detect`` and of
  the app's zip upload: :func:`ferx.data.pack_split` with ``faces="detect"`` (into a fresh cache each
  round; photos searched :data:`ferx.data.packed.PHOTO_WORKERS` at a time), then
  :func:`ferx.inference.predict_probs` over the faces in batches.
* peer: ``fer`` 25.10.3 (its Haar cascade, min face 50 px, and the same mini-Xception quantized to int8
  and run by TFLite), ``FER().detect_emotions(cv2.imread(path))``, in its own virtual environment
  (``--peer-env``, default ``../peer-env``) and its own process. fer's wheel asks for TensorFlow,
  opencv-contrib, moviepy, facenet-pytorch ...; ``--install-peer`` installs it with ``--no-deps`` and
  only what its photo path imports. Workarounds, here only: its model runs through
  ``ai-edge-litert`` (the TFLite runtime, a stand-in ``tensorflow`` module exposes its Interpreter as
  ``tf.lite.Interpreter``); ``FER`` is imported from ``fer.fer`` (the README's ``from fer import
  FER`` fails: ``fer/__init__.py`` does not export it); the cascade is fer's own copy
  (``cv2.data.haarcascades`` is empty or missing in some OpenCV wheels); OpenCV < 5 (5.x has no
  ``CascadeClassifier``).

Each tool runs in a process of its own, so neither pays for the other's threads or memory, and both
processes are started anew every round (each warming up on the other photos first): the same code on
this 2-core VM ran at 88-119 photos/s from one process to the next (fer 95-102), so one pair of
processes is one draw; fresh ones spread the draws over the rounds. ``--one-process`` keeps each tool
in one process for the whole run.

``--ferx-root DIR`` imports ferx from another checkout (an older commit, for a before/after); one
without :func:`ferx.inference.predict_faces` scores each face with ``fast_logits`` as its
``explain_face`` did.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER_PACKAGES = ["ai-edge-litert", "opencv-python-headless<5", "numpy", "pillow", "requests", "setuptools<81"]
PEER_WORKER = r'''
import json, os, sys, time, types
proto = os.fdopen(os.dup(1), "w", buffering=1)  # the answers; anything else on stdout (OpenCV's log) to stderr
os.dup2(2, 1)
sys.stdout = sys.stderr
from pathlib import Path
import ai_edge_litert.interpreter as litert
tf = types.ModuleType("tensorflow")
tf.lite = types.SimpleNamespace(Interpreter=litert.Interpreter)
models = types.ModuleType("tensorflow.keras.models")
models.load_model = None  # only its Keras (non-TFLite) model would need it
sys.modules.update({"tensorflow": tf, "tensorflow.keras": types.ModuleType("tensorflow.keras"),
                    "tensorflow.keras.models": models})
import cv2, fer
from fer.fer import FER
detector = FER(cascade_file=str(Path(fer.__file__).parent / "data" / "haarcascade_frontalface_default.xml"))
given = json.loads(sys.stdin.readline())
paths = given["paths"]
for p in given["warm"]:  # warm-up: one pass over other photos, as ferx gets
    detector.detect_emotions(cv2.imread(p))
print(json.dumps({"ready": fer.__version__}), file=proto)
for line in sys.stdin:
    start = time.perf_counter()
    found = [detector.detect_emotions(cv2.imread(p)) for p in paths]
    seconds = time.perf_counter() - start
    top = [max(f[0]["emotions"], key=f[0]["emotions"].get) if f else None for f in found]
    print(json.dumps({"seconds": seconds, "faces": sum(len(f) for f in found), "top": top}), file=proto)
'''


def install_peer(env: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", "fer==25.10.3"], check=True)
    subprocess.run(pip + PEER_PACKAGES, check=True)
    print(f"peer environment ready: {env}")


def make_photos(n: int, folder: Path, data_root: str | None, split: str = "test") -> list[str]:
    from ferx.data import load_split, pack_split
    from ferx.data.photos import write_photo_folder

    packed = pack_split(load_split("ckplus", split, data_root), progress=False)
    return [str(p) for p in write_photo_folder(packed, folder, n)]


class Worker:
    """A tool in a process of its own: given the photos and the warm-up photos, it warms up, says it is ready,
    then answers each ``go`` with one timed pass over the photos (JSON)."""

    def __init__(self, command: list[str], paths: list[str], warm: list[str], name: str, env: dict | None = None):
        self.name = name
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self._send(json.dumps({"paths": paths, "warm": warm}))
        self.version = json.loads(self._line())["ready"]

    def _stopped(self) -> SystemExit:
        return SystemExit(f"the {self.name} stopped (exit code {self.proc.wait()})")

    def _send(self, line: str) -> None:
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._stopped() from None

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise self._stopped()
        return line

    def run(self) -> dict:
        self._send("go")
        return json.loads(self._line())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def peer_worker(env: Path, paths: list[str], warm: list[str]) -> Worker:
    python = env / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no peer environment at {env}: run with --install-peer first")
    return Worker([str(python), "-c", PEER_WORKER], paths, warm, "peer", {"TF_CPP_MIN_LOG_LEVEL": "3"})


def ferx_worker(args, paths: list[str], warm: list[str]) -> Worker:
    command = [sys.executable, __file__, "--worker", "--checkpoint", args.checkpoint, "--detectors", *args.detectors]
    command += ["--no-folder"] if args.no_folder else []
    command += ["--ferx-root", args.ferx_root] if args.ferx_root else []
    return Worker(command, paths, warm, "ferx worker")


def serve_ferx(args) -> None:
    """The ferx worker (``--worker``): the runners of ``args``, warmed up on the warm-up photos, then a pass of
    each over the photos for every ``go`` on stdin."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # the answers; anything else written to stdout (OpenCV's log
    os.dup2(2, 1)  # goes to std::cout) goes to stderr
    sys.stdout = sys.stderr
    import ferx

    given = json.loads(sys.stdin.readline())
    runners = {f"ferx {d}": ferx_runner(args.checkpoint, d) for d in args.detectors}
    if not args.no_folder:
        runners["ferx folder"] = ferx_folder_runner(args.checkpoint)
    for run in runners.values():
        run(given["warm"])  # warm-up: one pass over other photos (ferx's detector keeps a net per input shape it met)
    print(json.dumps({"ready": str(Path(ferx.__file__).parent.parent)}), file=proto)
    for _ in sys.stdin:
        print(json.dumps({name: run(given["paths"]) for name, run in runners.items()}), file=proto)


def ferx_runner(checkpoint: str, detector: str):
    import torch

    from ferx.checkpoint import load_checkpoint
    from ferx.faces import find_faces, load_photo

    loaded = load_checkpoint(checkpoint, torch.device("cpu"))
    try:  # as the app's start-up does (webapp.model_bank.ModelBank.build): the one-face twin
        from ferx.memory_format import prepare_fast_forward

        spec = loaded.input_spec
        prepare_fast_forward(loaded.model, torch.zeros(1, spec.channels, spec.size, spec.size))
    except ImportError:  # an older checkout
        pass
    try:
        from ferx.inference import predict_faces
    except ImportError:  # an older checkout: one call per face, as its explain_face did
        from ferx.explain._common import fast_logits

        def predict_faces(model, spec, faces):
            return [torch.softmax(fast_logits(model, f.model_input(spec)), 1)[0].numpy() for f in faces]

    def run(paths: list[str]) -> dict:
        start = time.perf_counter()
        faces, top = 0, []
        for p in paths:
            search = find_faces(load_photo(p), detector=detector)
            probs = predict_faces(loaded.model, loaded.input_spec, search.faces)
            faces += len(search.faces)
            top.append(loaded.classes[int(probs[0].argmax())] if len(search.faces) else None)
        return {"seconds": time.perf_counter() - start, "faces": faces, "top": top}

    return run


def ferx_folder_runner(checkpoint: str):
    import torch

    from ferx.checkpoint import load_checkpoint
    from ferx.data import load_split, pack_split
    from ferx.data.packed import pack_options
    from ferx.inference import predict_probs

    loaded = load_checkpoint(checkpoint, torch.device("cpu"))
    options = pack_options([loaded.input_spec], "detect", "best")

    def run(paths: list[str]) -> dict:  # the whole folder the photos are in (make_photos: FOLDER/<class>/<i>.jpg)
        folder = Path(paths[0]).parents[1]
        split = load_split(str(folder), "all")
        with tempfile.TemporaryDirectory(prefix="ferx-bench-cache-") as cache:
            start = time.perf_counter()
            packed = pack_split(split, progress=False, cache_dir=cache, **options)
            probs = predict_probs(loaded.model, loaded.input_spec, packed.images)
            seconds = time.perf_counter() - start
        by_path = {str(folder / rel): loaded.classes[int(p.argmax())] for rel, p in zip(packed.paths, probs)}
        return {"seconds": seconds, "faces": len(packed), "top": [by_path.get(p) for p in paths]}

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--install-peer", action="store_true", help="create the peer's environment, then measure")
    p.add_argument("--peer-env", default=str(REPO.parent / "peer-env"))
    p.add_argument("--photos", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--one-process", action="store_true",
                   help="keep each tool in one process for the whole run (default: new processes every round)")
    p.add_argument("--detectors", nargs="+", default=["mtcnn", "haar"])
    p.add_argument("--no-folder", action="store_true", help="leave out the folder path (ferx evaluate --faces detect)")
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "mini_xception_fer2013"))
    p.add_argument("--data-root", default=str(REPO / "datasets"))
    p.add_argument("--ferx-root", default=None, help="import ferx from this checkout instead of this one")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # the ferx process (serve_ferx)
    args = p.parse_args()
    sys.path.insert(0, args.ferx_root or str(REPO))
    if args.worker:
        return serve_ferx(args)

    env = Path(args.peer_env)
    if args.install_peer:
        install_peer(env)
    with tempfile.TemporaryDirectory(prefix="ferx-photos-") as tmp, \
            tempfile.TemporaryDirectory(prefix="ferx-warm-up-") as warm_tmp:
        paths = make_photos(args.photos, Path(tmp), args.data_root)
        warm = make_photos(args.photos, Path(warm_tmp), args.data_root, split="train")
        peer, ours = peer_worker(env, paths, warm), ferx_worker(args, paths, warm)
        print(f"{len(paths)} photos (256 px, CK+48 test faces); ferx from {ours.version}; peer fer {peer.version}; "
              f"{'one process each' if args.one_process else 'fresh processes every round'}; "
              f"load average {os.getloadavg()[0]:.2f}")
        rates: dict[str, list[float]] = {"fer": []}
        last = {}
        for r in range(args.rounds):
            if r and not args.one_process:
                peer.close()
                peer = peer_worker(env, paths, warm)
            last["fer"] = peer.run()
            rates["fer"].append(len(paths) / last["fer"]["seconds"])
            if r and not args.one_process:
                ours.close()
                ours = ferx_worker(args, paths, warm)
            for name, result in ours.run().items():
                last[name] = result
                rates.setdefault(name, []).append(len(paths) / result["seconds"])
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items())
                  + f" photos/s  (load {os.getloadavg()[0]:.2f})", flush=True)
        peer.close()
        ours.close()
    print(f"\n{'':12s} {'photos/s (median)':>18s} {'faces found':>12s} {'ratio to fer: median (min-max)':>32s}")
    for k, v in rates.items():
        ratios = [a / b for a, b in zip(v, rates["fer"])]
        same = sum(a == b for a, b in zip(last[k]["top"], last["fer"]["top"]) if a and b)
        ratio = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                 if k != "fer" else "")
        print(f"{k:12s} {statistics.median(v):18.1f} {last[k]['faces']:12d} {ratio:>32s}"
              + (f"  same top label as fer: {same}/{len(paths)}" if k != "fer" else ""))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
