"""A link that restores an Explain view: which face, and every setting, as URL parameters.

URL parameters survive a server restart by themselves (``gr.BrowserState`` would need a fixed secret).
The face can only be one the server can find again without storing anything: a face of a configured
dataset or of the precomputed bundle a Space shows (dataset, split and sample number) or one of the bundled
examples (by file name). Uploads are
not stored, so their links carry the settings only. Every value read from a link is checked: a
dataset must be a registered one (never a path), a choice one the component offers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
from PIL import Image

from ferx.data.datasets import DATASETS, SPLITS, load_split
from ferx.analysis.bundle import bundled_splits
from ferx.data.packed import PackedSplit, pack_split
from ferx.paths import cache_root
from webapp.errors import user_errors
from webapp.uploads import user_temp_dir

log = logging.getLogger(__name__)
VIEW = "explain"
# explain()'s parameters that a link does not carry
NOT_SETTINGS = ("bank", "path", "source", "examples", "request", "progress")


def linked_settings(fn) -> tuple[str, ...]:
    """The settings a link carries: the explain handler's own parameters, less the photo and the context."""
    import inspect

    return tuple(p for p in inspect.signature(fn).parameters if p not in NOT_SETTINGS)


def _digest(path) -> str:
    """The file's sha256, read once per version of the file (is_origin_of and face_of ask for the same photo, and
    face_of for every example, on each explanation)."""
    stat = os.stat(path)
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_origin_of(source: dict | None, path: str | None) -> bool:
    """Whether ``source`` (a dataset or zip face's origin, :func:`dataset_face_file`) describes the file at ``path``:
    an origin left from a face opened earlier does not describe the photo shown since (an example, a link's)."""
    return bool(source and path and Path(path).is_file() and _digest(path) == source.get("png_sha256"))


def face_of(path: str | None, source: dict | None, examples) -> dict | None:
    """How a link names the face at ``path``: a dataset face by its origin, an example by its file
    name (each only when the bytes are its own: an origin left from an earlier photo, or an upload named
    like a dataset face, is not it); None for an upload."""
    if source and source.get("dataset") in DATASETS and is_origin_of(source, path):
        return {"dataset": source["dataset"], "split": source["split"], "sample": int(source["sample"])}
    for example, _ in examples or ():
        if path and Path(path).name == Path(example).name and _digest(path) == _digest(example):
            return {"example": Path(example).name}
    return None


def view_link(base: str, face: dict | None, settings: dict) -> str:
    """``base`` (the page's address) with the view, the face and each setting (as JSON) as parameters."""
    query = {"view": VIEW, **(face or {}), **{k: json.dumps(v, separators=(",", ":")) for k, v in settings.items()}}
    return f"{base.split('?')[0]}?{urlencode(query)}"


@functools.lru_cache(maxsize=2)
def _packed(dataset: str, split: str, data_root: str, bundle: str):
    """The split's faces from the data root, else from the precomputed bundle in ``bundle`` (a Space has no data:
    its Dataset tab shows the bundle's faces, and a link made there names them as the dataset's)."""
    try:
        return pack_split(load_split(dataset, split, data_root), progress=False)
    except (ValueError, OSError):
        bundled = bundled_splits(bundle).get(f"{dataset}/{split}")
        if bundled is None:
            raise
        return PackedSplit.load(bundled)


def restore_face(params: dict, data_root: Path, examples, swept: set) -> tuple[str, dict | None]:
    """The photo file a link names, and the origin shown with a dataset face (None for an example)."""
    if "example" in params:
        found = [p for p, _ in examples or () if Path(p).name == params["example"]]
        if not found:
            raise ValueError(f"this link's example {params['example']!r} is not one of this server's examples")
        return found[0], None
    dataset, split = params.get("dataset"), params.get("split")
    if dataset not in DATASETS or split not in SPLITS:
        raise ValueError("this link names no face this server can open (a dataset face or an example)")
    try:
        packed = _packed(dataset, split, str(data_root), str(cache_root()))
    except (ValueError, OSError):
        raise ValueError(f"this link's face comes from {dataset}/{split}, which this server does not have") from None
    raw = str(params.get("sample", ""))
    if not raw.isdigit() or int(raw) >= len(packed.images):
        raise ValueError(f"{dataset}/{split} has no face #{raw[:20]}")
    return dataset_face_file(packed, int(raw), swept)


def dataset_face_file(packed, sample: int, swept: set) -> tuple[str, dict]:
    """Face ``sample`` of a packed split as the photo Explain opens: a lossless PNG of the exact pixels
    scored (listed in ``swept``, deleted with the uploads: webapp/uploads.py), and its origin shown
    beside it: dataset, split, sample, true label and, for FERPlus, the annotators' votes."""
    true = packed.classes[packed.targets[sample]]
    name = f"{packed.dataset}_{packed.split}_{sample}_{true}.png".replace("/", "_").replace(":", "_")
    # a configured dataset's face has the same pixels for everyone: concurrent opens may share the file; two users'
    # zips of the same name do not, so a zip's face gets a folder of its own (emptied folders go with the sweep)
    folder = user_temp_dir("faces")
    path = (folder if packed.dataset in DATASETS else Path(tempfile.mkdtemp(dir=folder))) / name
    Image.fromarray(packed.images[sample]).save(path)
    swept.add(str(path))
    source = {"dataset": packed.dataset, "split": packed.split, "sample": sample, "true": true,
              "png_sha256": _digest(path)}  # which file it is the origin of (face_of)
    if packed.soft_targets is not None:  # FERPlus: the annotators' votes, shown beside the models' probabilities
        source["votes"] = {c: round(float(v), 3) for c, v in zip(packed.classes, packed.soft_targets[sample]) if v > 0}
    return str(path), source


def out_of_place(component, value) -> str | None:
    """Why ``value`` cannot go in a number, slider or checkbox ``component`` (None: it can)."""
    if isinstance(component, gr.Checkbox):
        return None if isinstance(value, bool) else "is not true or false"
    if not isinstance(component, (gr.Slider, gr.Number)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    lo, hi = getattr(component, "minimum", None), getattr(component, "maximum", None)
    if lo is not None and value < lo:
        return f"is below {lo:g}" if hi is None else f"is outside {lo:g}-{hi:g}"
    if hi is not None and value > hi:
        return f"is above {hi:g}" if lo is None else f"is outside {lo:g}-{hi:g}"
    return None


def restore_settings(params: dict, components: dict) -> dict:
    """Each setting of the link, checked against its component: a value a choice component does not
    offer, or a number, slider or checkbox cannot hold, is dropped (with a warning naming the setting),
    the rest of the view still restored."""
    out = {}
    for name, component in components.items():
        if name not in params:
            continue
        try:
            value = json.loads(params[name])
        except ValueError:
            gr.Warning(f"this link's {name} {params[name]!r} cannot be read; left out")
            continue
        why = out_of_place(component, value)
        if why:
            gr.Warning(f"this link's {name} {value!r} {why}; left out")
            continue
        offered = [c[1] if isinstance(c, (tuple, list)) else c for c in getattr(component, "choices", None) or []]
        if offered:
            kept = [v for v in value if v in offered] if isinstance(value, list) else value if value in offered else None
            if kept != value:
                gr.Warning(f"this link's {name} {value!r} is not offered here; left out")
            if kept is None:
                continue
            value = kept
        out[name] = value
    return out


def wire_restore(app: gr.Blocks, ctx) -> None:
    """On page load, a link's view (``?view=explain&...``) opens in the Explain tab and runs."""
    ex = ctx.shared["explain_photo"]
    settings = {k: c for k, c in ex.run.inputs_kwargs.items() if k in linked_settings(ex.run.fn)}
    restored = gr.State(0)  # bumped when a link was restored: its change runs the explanation

    @user_errors
    def restore_view(request: gr.Request):
        params = dict(request.query_params)
        if params.get("view") != VIEW:
            return [gr.skip()] * (4 + len(settings))
        try:
            path, source = restore_face(params, ctx.cfg.data_root, ctx.shared.get("examples"), ex.image.temp_files)
        except ValueError as err:
            log.info("link refused: %s", err)
            gr.Warning(str(err))
            return [gr.skip()] * (4 + len(settings))
        values = restore_settings(params, settings)
        return [path, source, gr.Tabs(selected=VIEW), 1] + [values.get(k, gr.skip()) for k in settings]

    app.load(restore_view, None, [ex.image, ex.source, ctx.tabs, restored, *settings.values()],
             api_visibility="private")
    restored.change(ex.run.fn, inputs_kwargs=ex.run.inputs_kwargs, outputs=ex.run.outputs,
                    show_progress_on=ex.run.show_progress_on, api_visibility="private")
