"""Dataset tab: run the analysis on a split or an uploaded zip, then browse it.

Every view resolves to faces: a confusion cell, a model-vs-model cell, a lasso or box in an
embedding or a failure ranking is a *selection* (model, sample ids, title, the view it came from);
the gallery shows it sorted and paged with a summary and a CSV, the embedding rings its faces, and a
gallery face opens in the Explain tab.
"""

from __future__ import annotations

import functools
import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from ferx.analysis import (agreement, analyze_packed, cell_samples, confusion_frame, cross_cell_samples,
                           cross_model_frame, disagreements, failures, per_class_table, summary_table)
from ferx.analysis.bundle import PREFIX as BUNDLE, bundle_precision, bundled_splits
from ferx.analysis.embeddings import METHODS, expected_seconds, project
from ferx.analysis.figures import COLOUR_BY, embedding_figure, reliability_figure, write_figure
from ferx.analysis.runs import ModelRun
from ferx.analysis.placement import UNLIKE_PERCENTILE, UNUSUAL_PERCENTILE, place
from ferx.analysis.selection import SORTS, caption, pair_frame, selection_frame, summary_text, write_csv
from ferx.analysis.tables import FAILURE_KINDS
from ferx.background import at_low_priority
from ferx.data.datasets import (FACE_CHOICES, FACES, SPLITS, available_datasets, from_user_zip, get_dataset_info,
                                list_datasets, load_split, split_title)
from ferx.data.packed import PackedSplit, faces_note, left_out, pack_options, pack_split
from ferx.paths import cache_root
from ferx.text import choices_text, number, plural
from webapp.app_context import AppContext
from webapp.config import AppConfig
from webapp.errors import at_least_one, user_errors
from webapp.tables import result_table
from webapp.inputs import count_box
from webapp.links import dataset_face_file
from webapp.model_bank import ModelBank
from webapp.narrow import WIDE_PAGE_PX, scroll_to_on_narrow
from webapp.plotly_select import selectable_plot
from webapp.stops import STOPS, stoppable
from webapp.uploads import user_temp_dir

log = logging.getLogger(__name__)

FAILURE_VIEWS = {**{kind.replace("_", " ").capitalize(): kind for kind in FAILURE_KINDS},
                 "Model A vs B disagreement": "disagreement"}
SPLIT_CHOICES = [s for s in reversed(SPLITS) if s != "all"]  # test, val, train: the split to analyse first
GALLERY_LIMIT = 60  # faces per gallery page
GALLERY_PROMPT = "Click a matrix cell, lasso embedding points or show failures: the faces appear here."  # until a selection
# the narrowest the matrices' column may be: an 8-class matrix's table is 691 px wide. Beside the gallery at a 1,024-px
# window (a projector) or at 200 % zoom it had 564 or 366 px and hid its last two or five columns (neutral, contempt)
# behind a sideways scroll. With the gallery's 320 px, the two share a row from a 1,280-px window up
# (webapp.narrow.WIDE_PAGE_PX); below it the gallery goes under the matrices and a click scrolls to it
MATRIX_COLUMN_PX = 700
# faces per model call in an analysis: the model lock is held one batch at a time, so /predict waits
# at most one batch (64 faces, ~0.5 s for LANMSFF on 2 cores) rather than 256
ANALYSIS_BATCH = 64
HELP = {
    "confusion": "Rows are the true class, columns the predicted one; the diagonal is correct. A cell's shade is its "
                 "share of the row (white 0 → dark blue 1). Click a cell to see its faces.",
    "cross": "Rows: model A's prediction, columns: model B's, both over the classes of either model (a class one "
             "lacks is a row or column of zeros). The diagonal is where they agree; off-diagonal cells are faces they "
             "disagree on: click one to see them.",
    "embedding": "Each point is a face placed by its embedding (similar faces land close). Drag a lasso (or choose "
                 "box select in the plot's toolbar) around points: exactly those faces fill the gallery. Faces chosen "
                 "in a matrix or a ranking are ringed in black here. Double-click clears the selection.",
    "reliability": "If the model is calibrated, faces predicted with 70 % confidence are right 70 % of the time: the "
                   "curve follows the diagonal. Below it means over-confident. Each marker is a bin of faces by confidence, "
                   "sized by how many it holds (a bin of three faces is noise); the legend gives each model's expected "
                   "calibration error (ECE: the gap from the diagonal, averaged over the faces).",
}


@dataclass
class Analysis:
    """Per-session result: the runs and the packed faces they refer to."""
    runs: list[ModelRun]
    packed: PackedSplit

    def run(self, name: str) -> ModelRun:
        for run in self.runs:
            if run.name == name:
                return run
        raise ValueError(f"{name} was not part of this analysis: tick it under Models and run the analysis again")


@contextmanager
def study_cache(analysis: Analysis):
    """Where a study of the analysed faces (maps, regions, attention) caches its per-face results: ferx's cache
    for a configured dataset (None: the default), a scratch folder deleted on return for a user's zip, whose
    faces and what is derived from them face by face are not kept."""
    if not from_user_zip(analysis.packed.dataset):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="ferx-study-") as scratch:
        yield scratch


def dataset_choices(data_root: Path) -> list[str]:
    """Registered datasets present under the data root, then precomputed bundles (``bundle:ferplus/test``)."""
    return available_datasets(data_root) + [f"{BUNDLE}{name}" for name in bundled_splits(cache_root())]


def read_faces(source: str, split: str, data_root: Path, zip_file: str | None, scratch: Path,
               max_zip_files: int, specs=(), faces: str = "given", face: str = "best",
               check=None) -> tuple[PackedSplit, int]:
    """The faces to analyse, and how many non-image files were left out (a zip's README, .DS_Store…).
    A user's zip is unpacked and packed in ``scratch`` (the caller deletes it), never in the shared
    cache: these are people's faces. Its ``split`` folder when it has ``<split>/<class>/`` folders,
    else all of it; its images taken as ``ferx analyze --faces --face`` takes them for models with
    input ``specs`` (:func:`ferx.data.packed.pack_options`: given, or each photo's faces detected);
    ``check()`` before each image (the session's Stop)."""
    if zip_file:
        photos = load_split(str(zip_file), split, data_root, cache_dir=scratch, max_files=max_zip_files)
        packed = pack_split(photos, cache_dir=scratch, check=check, **pack_options(specs, faces, face))
        return packed, photos.excluded.get("non_image_files", 0)
    if source.startswith(BUNDLE):
        return PackedSplit.load(bundled_splits(cache_root())[source.removeprefix(BUNDLE)]), 0
    return pack_split(load_split(source, split, data_root), check=check), 0


def face_thumbnail(image: np.ndarray, size: int = 112) -> np.ndarray:
    mode = "L" if image.ndim == 2 else "RGB"
    return np.asarray(Image.fromarray(image, mode).resize((size, size), Image.Resampling.BICUBIC).convert("RGB"))


def selection(model: str, ids, title: str, view: str, versus: str | None = None) -> dict:
    """What every view hands to the gallery: whose predictions to show (``model``, and ``versus``, a model B
    compared with it as A), which faces, a title, and the view it came from (the embedding rings a selection
    made elsewhere, not its own lasso)."""
    return {"model": model, "ids": [int(i) for i in ids], "title": title, "view": view, "versus": versus}


def gallery_page(analysis: Analysis, chosen: dict | None, sort: str, page) -> tuple:
    """One page of the selection, sorted: gallery items with short captions (``#12 sad → angry 0.81``; a selection
    of two models: ``#12 sad · A angry 0.81 · B sad 0.64``), the sample ids shown (a click maps back through them),
    the title, the summary (of both models) and the page number."""
    if analysis is None or not chosen:
        return [], [], GALLERY_PROMPT, "", 1
    votes = analysis.packed.soft_targets
    frame = selection_frame(analysis.run(chosen["model"]), chosen["ids"], sort, votes=votes)
    versus = chosen.get("versus")
    other = selection_frame(analysis.run(versus), frame.index, votes=votes) if versus else None  # B, in A's order
    pages = max(1, -(-len(frame) // GALLERY_LIMIT))
    page = min(max(1, int(page or 1)), pages)
    shown = frame.iloc[(page - 1) * GALLERY_LIMIT: page * GALLERY_LIMIT]
    items = [(face_thumbnail(analysis.packed.images[int(i)]),
              caption(int(i), row, None if other is None else other.loc[i])) for i, row in shown.iterrows()]
    where = f" · page {page} of {pages}" if pages > 1 else ""
    summary = summary_text(frame, chosen["model"], None if other is None else (versus, other))
    return items, shown.index.tolist(), f"{chosen['title']}{where}", summary, page


def rounded(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A table as shown: numbers to ``digits`` decimals (float32 columns widened first, or 0.921 would
    show as 0.9210000038146973)."""
    floats = frame.select_dtypes("floating").columns
    return frame.astype({c: "float64" for c in floats}).round(digits)


def matrix_table(frame: pd.DataFrame, counts: pd.DataFrame | None = None):
    """A matrix as a table you click (its first column holds the row labels, so a cell click maps back),
    each cell shaded by its share of the row (``counts``' when the table shows something else) —
    the coloured heat-map and the clickable matrix are one view."""
    counts = frame if counts is None else counts
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0).to_numpy(float)
    table = frame.copy()
    table.insert(0, f"{frame.index.name} \\ {frame.columns.name}", frame.index)
    table = table.reset_index(drop=True)
    cells = list(table.columns[1:])
    return table.style.apply(lambda shown: pd.DataFrame(shades(shares), index=shown.index, columns=shown.columns),
                             axis=None, subset=cells).format(precision=3)


def shades(shares: np.ndarray) -> np.ndarray:
    """Each cell's CSS: its share on the Blues scale (white 0 → dark blue 1) and black or white text, whichever
    contrasts more with it, at least 4.58:1 (WCAG AA asks 4.5): pandas' background_gradient wrote #f1f1f1 on
    the mid blues, 2.1:1."""
    import matplotlib

    rgb = matplotlib.colormaps["Blues"](np.clip(shares, 0.0, 1.0))[..., :3]
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ [0.2126, 0.7152, 0.0722]
    on_white = 1.05 / (luminance + 0.05) > (luminance + 0.05) / 0.05  # white text contrasts more than black
    hexes = np.apply_along_axis(matplotlib.colors.to_hex, -1, rgb)
    return np.char.add(np.char.add("background-color: ", hexes),
                       np.where(on_white, "; color: #ffffff", "; color: #000000"))


def embedding_coords(analysis: Analysis, model: str, method: str, progress=None) -> np.ndarray:
    run = analysis.run(model)
    estimate = expected_seconds(method, len(run))

    def waiting(seconds: float) -> None:  # t-SNE/UMAP report no progress of their own: time against an estimate
        if progress is not None:
            progress(min(seconds / estimate, 0.99), desc=f"{method.upper()} of {plural(len(run), 'face')}: "
                     f"{seconds:.0f} s of about {estimate:.0f} s (computed once, then cached)")

    return at_low_priority(project, run, method, while_waiting=waiting)  # t-SNE/UMAP: minutes the first time


def embedding_view(analysis: Analysis, model: str, method: str, colour_by: str, chosen: dict | None = None,
                   placed: dict | None = None, progress=None):
    """The embedding figure of ``model``; the faces of a selection made in another view are ringed, and a
    photo placed among the faces (``placed``: model -> method -> x, y) is a star."""
    coords = embedding_coords(analysis, model, method, progress)
    highlight = chosen["ids"] if chosen and chosen["view"] != "embedding" else None  # ids are split positions: any model's
    photo = (placed or {}).get(model, {}).get(method)
    return embedding_figure(coords, analysis.run(model), colour_by, method, others=analysis.runs, highlight=highlight,
                            photo=photo)


ANALYSIS = "analysis"  # the Stop button's task (webapp.stops)


@user_errors
def analysis_asked(request: gr.Request):
    STOPS.begin(request.session_hash, ANALYSIS)


@user_errors
def stop_analysis(request: gr.Request):
    # none under way: e.g. just after the results came (they stay, and so does their line)
    if not STOPS.stop(request.session_hash, ANALYSIS):
        gr.Info("Nothing to stop: no analysis is under way (the last one finished; its results are shown).")
        return gr.skip()
    return "Analysis stopped: nothing was kept."


@user_errors
def run_analysis(bank: ModelBank, cfg: AppConfig, name, split_name, zip_file, chosen, calib, request: gr.Request,
                 progress=gr.Progress(track_tqdm=True), faces: str = "given", face: str = "best"):
    """Run the ``chosen`` models over a configured dataset split (``name``, ``split_name``) or an
    uploaded zip (its faces and per-face results in a scratch folder deleted on return; a
    configured split's are cached); ``calib`` fits a temperature on the val split (refused when the
    split analysed holds its faces: :func:`ferx.analysis.analyze.refuse_calibrating_on_itself`); a zip's images
    are faces as given, or photos whose faces are found (``faces``, ``face``: :data:`FACES`,
    :data:`FACE_CHOICES`). Stop (this session's) ends it before its next image or batch."""
    with stoppable(request, ANALYSIS) as check:
        return _analyse(bank, cfg, name, split_name, zip_file, chosen, calib, check, progress, faces, face)


def _analyse(bank, cfg, name, split_name, zip_file, chosen, calib, check, progress, faces, face):
    at_least_one(chosen, "model")
    if not (zip_file or name):
        raise gr.Error(no_dataset_text(cfg.data_root))
    progress(0, desc="reading faces")
    with tempfile.TemporaryDirectory(prefix="ferx-upload-") as scratch:
        scratch = Path(scratch)
        # batch work runs below interactive requests' priority (ferx.background): Compare stays fast meanwhile
        packed, non_images = at_low_priority(read_faces, name, split_name, cfg.data_root, zip_file, scratch,
                                             cfg.max_zip_files, [bank.models[m].input_spec for m in chosen], faces, face,
                                             check)
        val = None
        if calib and not zip_file and name in list_datasets():
            val = at_low_priority(pack_split, load_split(name, "val", cfg.data_root))
        # each model is ours alone for one batch at a time: /predict and /explain wait for a batch, not a dataset
        def stoppable_hold(loaded):
            check()  # before every batch: Stop ends the work, not only the request
            return bank.batch_hold(loaded)

        runs = at_low_priority(analyze_packed, [bank.models[m] for m in chosen], packed, val,
                               batch_size=ANALYSIS_BATCH, cache_dir=scratch if zip_file else None, hold=stoppable_hold,
                               precision=bundle_precision(cache_root()) if name and name.startswith(BUNDLE) else "auto")
    cached = ", ".join(f"{r.name} ({'from cache' if r.from_cache else 'computed'})" for r in runs)
    first = runs[0].name
    second = runs[1].name if len(runs) > 1 else first
    # the unreadable files named by their paths in the dataset (a zip's: inside it), not only counted: their names
    # reached the server's log alone
    skipped = left_out(packed.skipped, non_images, packed.unreadable) + faces_note(packed.faces, packed.no_face)
    return (Analysis(runs, packed), f"**{split_title(packed.dataset, packed.split)}**: {len(packed)} faces{skipped} — {cached}",
            summary_table(runs).round(4).reset_index(), gr.update(choices=chosen, value=first),
            gr.update(choices=chosen, value=first), gr.update(choices=chosen, value=second),
            gr.update(choices=chosen, value=first))


@user_errors
def show_matrix(analysis, name, norm):
    if analysis is None or not name:
        return None, None, None
    run = analysis.run(name)
    counts = confusion_frame(run)
    shown = confusion_frame(run, normalize=True).round(3) if norm else counts
    return (matrix_table(shown, counts),  # the per-class table is the matrix's model's; the reliability plot, everyone's
            gr.Dataframe(per_class_table(run).round(4).reset_index(), label=f"Per class: {name}"),
            reliability_figure(analysis.runs))


ONE_MODEL = "tick a second model under Models and run the analysis again"


@user_errors
def show_cross(analysis, a, b):
    if analysis is None or not a or not b:
        return None, ""
    frame = cross_model_frame(analysis.run(a), analysis.run(b))
    frame.index.name, frame.columns.name = "A", "B"
    if a == b:
        more = "pick another model as B" if len(analysis.runs) > 1 else ONE_MODEL
        return matrix_table(frame), f"A and B are both **{a}**: {more} to see where two models part."
    rate = agreement(analysis.run(a), analysis.run(b))
    return matrix_table(frame), f"A = **{a}**, B = **{b}**: they agree on **{rate:.1%}** of the faces."


@user_errors
def show_embedding(analysis, name, how, colour_by, chosen, placed, progress=gr.Progress(track_tqdm=True)):
    if analysis is None or not name:
        return None
    progress(0, desc=f"{how.upper()} (computed once, then cached)")
    return embedding_view(analysis, name, how, colour_by, chosen, placed, progress).to_json()


@user_errors
def ring_selection(analysis, name, how, colour_by, chosen, placed):
    """After a selection made elsewhere: the embedding again, its faces ringed (skipped for its own lasso)."""
    if analysis is None or not name or not chosen or chosen["view"] == "embedding":
        return gr.skip()
    return show_embedding(analysis, name, how, colour_by, chosen, placed)


PLACE_HELP = ("Where does a photo land among the analysed faces? Each model embeds its face as it embedded the "
              "dataset's; its nearest dataset faces (with their true labels) are an explanation by example. "
              "**Typicality**: the share of those neighbours labelled as the model predicts, and how far the photo is "
              "from them compared with how far dataset faces are from theirs (percentile; from "
              f"{UNUSUAL_PERCENTILE:.0f}: *unusual*, from {UNLIKE_PERCENTILE:.0f}: *unlike anything in the data*). The star marks it in the embedding (PCA and "
              "UMAP: the projection's own transform; t-SNE has none, so the weighted mean of its neighbours' "
              "places). The photo is not stored.")


@user_errors
def place_photo(bank: ModelBank, analysis, path, whole, index, k, model, progress=gr.Progress()):
    """The photo's face placed among every analysed model's faces: a table of typicality, the neighbours
    of ``model`` as a gallery, and the positions (model -> method -> x, y) for the embedding's star."""
    from webapp.explaining import chosen_face

    if analysis is None:
        raise gr.Error("Run an analysis first: the photo is placed among its faces.")
    face = chosen_face(path, whole, index, to="place it")
    rows, placed, neighbours = [], {}, None
    for i, run in enumerate(analysis.runs):
        progress(i / len(analysis.runs), desc=f"placing the face among {run.name}'s faces")
        with bank.using(run.name) as loaded:
            where = place(loaded, run, face.crop, k=int(k or 8))
        placed[run.name] = where.coords
        rows.append({"model": run.name, "predicts": where.predicted, "confidence": where.confidence,
                     "neighbours agreeing": where.agreement, "distance percentile": where.percentile,
                     "verdict": where.verdict()})
        if run.name == model or neighbours is None:
            neighbours, shown_model, itself = where.neighbours, run.name, where.in_data
    items = [(face_thumbnail(analysis.packed.images[int(i)]), f"#{int(i)} {row['true']} · d {row['distance']:.1f}")
             for i, row in neighbours.iterrows()]
    table = rounded(pd.DataFrame(rows))
    first = f"; first, the photo itself: face #{itself} of the data" if itself is not None else ""
    return table, items, f"Nearest faces for **{shown_model}** (true label · distance){first}", placed


@user_errors
def confusion_click(analysis, name, evt: gr.SelectData):
    row, col = evt.index
    if analysis is None or col == 0:
        return gr.skip()
    run = analysis.run(name)
    frame = confusion_frame(run)  # the matrix as shown: its rows' and columns' names
    true, pred = frame.index[row], frame.columns[col - 1]
    ids = cell_samples(run, true, pred)
    return selection(name, ids, f"**{plural(len(ids), 'face')}** of true class *{true}* that {name} predicts as "
                                f"*{pred}*", "confusion")


@user_errors
def cross_click(analysis, a, b, evt: gr.SelectData):
    row, col = evt.index
    if analysis is None or col == 0:
        return gr.skip()
    run_a, run_b = analysis.run(a), analysis.run(b)
    frame = cross_model_frame(run_a, run_b)  # the matrix as shown: its rows' and columns' names
    pa, pb = frame.index[row], frame.columns[col - 1]
    ids = cross_cell_samples(run_a, run_b, pa, pb)
    return selection(a, ids, f"**{len(ids)}** faces: {a} (A) says *{pa}*, {b} (B) says *{pb}*", "cross",
                     versus=b if b != a else None)


@user_errors
def embedding_select(analysis, name, how, evt: gr.SelectData):
    """A lasso or box selection in the embedding: exactly the faces inside it (plotly's own point test)."""
    if analysis is None or not name:
        return gr.skip()
    ids = sorted({int(i) for i in (evt.index or [])}) if isinstance(evt.index, list) else []
    return selection(name, ids, f"**{plural(len(ids), 'face')}** selected in the {how.upper()} of {name}", "embedding")


@user_errors
def show_failures(analysis, kind, name, a, b):
    if analysis is None:
        raise gr.Error("Run an analysis first.")
    key = FAILURE_VIEWS[kind]
    if key == "disagreement":
        if a == b:
            raise gr.Error("Choose two different models (Model A and Model B) to see their disagreements.")
        every = disagreements(analysis.run(a), analysis.run(b), k=None)  # the A x B matrix's off-diagonal
        table = every.head(GALLERY_LIMIT)
        count = (f"**{plural(len(every), 'face')}**" if len(table) == len(every)
                 else f"**{len(table)} of {len(every):,} faces**")
        return selection(a, table.index, f"{count} where {a} (A) and {b} (B) disagree, both surest first",
                         "ranking", versus=b)
    table = failures(analysis.run(name), key, GALLERY_LIMIT)
    return selection(name, table.index, f"{kind} of {name}", "ranking")


@user_errors
def page_of(analysis, chosen, sort, page):
    return gallery_page(analysis, chosen, sort, page)


@user_errors
def first_page(analysis, chosen, sort):
    return gallery_page(analysis, chosen, sort, 1)


def export_folder() -> Path:
    """A fresh folder for one download (two at once never overwrite each other's files)."""
    return Path(tempfile.mkdtemp(dir=user_temp_dir("exports")))


def exports(swept: set, stem: str, *, table: pd.DataFrame | None = None, figure=None) -> list[str]:
    """A view's downloads: its table as CSV and its figure as self-contained HTML (the figure's toolbar
    saves a PNG), in a fresh folder; listed in ``swept`` (deleted with the uploads)."""
    folder = export_folder()
    paths = []
    if table is not None:
        paths.append(write_csv(table, folder / f"{stem}.csv"))
    if figure is not None:
        paths.append(write_figure(figure, folder / f"{stem}.html"))
    swept.update(str(p) for p in paths)
    return [str(p) for p in paths]


@user_errors
def selection_csv(analysis, chosen, sort, swept: set):
    """The whole selection (every page) as CSV, both models' columns for an A vs B selection; the file is deleted
    with the uploads."""
    if analysis is None or not chosen:
        raise gr.Error("Select some faces first.")
    votes, run = analysis.packed.soft_targets, analysis.run(chosen["model"])
    if chosen.get("versus"):  # A vs B: both models' columns
        frame = pair_frame(run, analysis.run(chosen["versus"]), chosen["ids"], sort, votes=votes)
    else:
        frame = selection_frame(run, chosen["ids"], sort, votes=votes)
    path = write_csv(frame, export_folder() / f"ferx_selection_{chosen['view']}.csv")
    swept.add(str(path))
    return str(path)


@user_errors
def embedding_html(analysis, name, how, colour_by, chosen, swept: set):
    """The embedding as a self-contained HTML file (plotly.js inside; the toolbar's camera saves a PNG)."""
    if analysis is None or not name:
        raise gr.Error("Run an analysis first.")
    fig = embedding_view(analysis, name, how, colour_by, chosen)
    path = write_figure(fig, export_folder() / f"ferx_{how}_{name}.html")
    swept.add(str(path))
    return str(path)


@user_errors
def open_in_explain(analysis, ids, index: int, swept: set, models: list[str] | None = None):
    """Gallery face ``index``, opened in Explain with the pixels the analysis scored (a lossless PNG of
    the packed face, scored whole: it is already a face crop), face 0, its origin and true label, and the
    models under study ticked: ``models``, else every analysed one (Explain's own defaults were others).
    The PNG goes in ``swept`` (a component's temporary files: deleted within two minutes)."""
    if analysis is None:  # the gallery outlived its analysis (a session keeps one for cfg.state_ttl_s)
        raise gr.Error("This analysis is no longer kept on the server: run it again to open its faces.")
    path, source = dataset_face_file(analysis.packed, int(ids[index]), swept)
    models = list(dict.fromkeys(models or [run.name for run in analysis.runs]))
    return path, True, 0, source, models, gr.Tabs(selected="explain")


@user_errors
def source_controls(name: str | None, zip_file, faces: str = "given"):
    """The split, temperature-scaling and face controls a source can honour: a bundle holds one split
    and no val split; a zip has no val split to fit a temperature on (and its split folders are
    optional); only a zip's images may be photos whose faces are found, and which face is kept only
    matters then."""
    face_controls = face_source_controls(zip_file, faces)
    if zip_file:
        return (gr.update(interactive=True, info="used when the zip has <split>/<class>/ folders"),
                gr.update(value=False, interactive=False, info="a zip has no val split to fit a temperature on"),
                *face_controls)
    if name and name.startswith(BUNDLE):
        split = name.rsplit("/", 1)[-1]
        return (gr.update(value=split, interactive=False, info=f"a bundle holds one split: {split}"),
                gr.update(value=False, interactive=False, info="a bundle has no val split to fit a temperature on"),
                *face_controls)
    return gr.update(interactive=True, info=None), gr.update(interactive=True, info=None), *face_controls


def face_source_controls(zip_file, faces: str) -> tuple[dict, dict]:
    """The zip's faces choice (:data:`FACES`) and which face of a photo (:data:`FACE_CHOICES`): live
    for an uploaded zip, which face only when its faces are detected; otherwise they say why not."""
    given_or_detect, which = choices_text(FACES), choices_text(FACE_CHOICES)
    detect = bool(zip_file) and faces == "detect"
    return (gr.update(interactive=bool(zip_file), info=given_or_detect if zip_file else
                      f"for an uploaded zip ({given_or_detect}); a configured dataset's images are faces"),
            gr.update(interactive=detect, info=which if detect else f"with detect ({which})"))


def no_dataset_text(data_root: Path) -> str:
    titles = [get_dataset_info(name).title for name in list_datasets()]
    return (f"No dataset is unpacked in the app's data root ({data_root.name}/). Run `ferx data prepare` (it unpacks {', '.join(titles[:-1])} "
            f"and {titles[-1]} from ../shared/datasets) and restart the app, or upload a zip of class folders "
            "(happy/, sad/, …) below.")


def _source_inputs(names: list[str], data_root: Path) -> SimpleNamespace:
    choices = dataset_choices(data_root)
    if not choices:
        gr.Markdown(f"**{no_dataset_text(data_root)}**", elem_id="dataset-empty")
    gr.Markdown("Run every chosen model over a dataset split (GPU when present; results are cached, so a "
                "repeated run appears at once), then follow any number back to the faces behind it.")
    with gr.Row():
        dataset = gr.Dropdown(choices, value=choices[0] if choices else None, label="Dataset (configured)")
        split = gr.Dropdown(SPLIT_CHOICES, value=SPLIT_CHOICES[0], label="Split (configured datasets; zips with "
                            "split folders)")
        upload = gr.File(label="…or upload a zip of class folders (happy/, sad/, …)", file_types=[".zip"],
                         elem_id="dataset-zip")
    with gr.Row():  # live once a zip is uploaded (source_controls); the CLI's --faces and --face
        faces = gr.Radio(list(FACES), value=next(iter(FACES)), label="Faces in the zip", interactive=False,
                         elem_id="dataset-faces")
        face = gr.Radio(list(FACE_CHOICES), value=next(iter(FACE_CHOICES)), label="Face of each photo (detect)",
                        interactive=False, elem_id="dataset-face")
    with gr.Row():
        models = gr.CheckboxGroup(names, value=names, label="Models (trained checkpoints only)")
        calibrate = gr.Checkbox(False, label="Temperature scaling (fitted on the val split)")
        run_button = gr.Button("Run analysis", variant="primary")
        stop_button = gr.Button("Stop", variant="stop")
    status = gr.Markdown(elem_id="dataset-status")
    summary = result_table("Metrics (scored faces; classes a model lacks are left out; macro-F1 averages the classes "
                           "that have faces)", "Run an analysis: one row per model")
    return SimpleNamespace(dataset=dataset, split=split, upload=upload, faces=faces, face=face, models=models,
                           calibrate=calibrate, run_button=run_button, stop_button=stop_button, status=status,
                           summary=summary)


def _matrix_views(names: list[str]) -> SimpleNamespace:
    with gr.Row():
        matrix_model = gr.Dropdown(names, label="Confusion matrix of")
        normalise = gr.Checkbox(False, label="Row-normalised")
    gr.Markdown(HELP["confusion"])
    confusion = result_table("Confusion matrix (click a cell)", "Run an analysis: true classes (rows) × predicted",
                             elem_id="confusion-matrix")
    with gr.Row():
        model_a = gr.Dropdown(names, label="Model A")
        model_b = gr.Dropdown(names, label="Model B")
    gr.Markdown(HELP["cross"])
    agreement_line = gr.Markdown()
    cross = result_table("Model A × model B predictions (click a cell)",
                         "Run an analysis of two models: A's predictions (rows) × B's", elem_id="cross-matrix")
    with gr.Row():
        method = gr.Radio(list(METHODS), value="pca", label="Embedding projection")
        colour = gr.Dropdown(list(COLOUR_BY), value="true", label="Colour by")
        emb_model = gr.Dropdown(names, label="Embedding of")
    gr.Markdown(HELP["embedding"])
    embedding = selectable_plot("dataset-embedding")
    with gr.Row():
        html_button = gr.Button("Embedding as HTML", size="sm")
        html_file = gr.File(label="Embedding (self-contained HTML)", interactive=False, height=60)
    return SimpleNamespace(matrix_model=matrix_model, normalise=normalise, confusion=confusion, model_a=model_a,
                           model_b=model_b, agreement_line=agreement_line, cross=cross, method=method, colour=colour,
                           emb_model=emb_model, embedding=embedding, html_button=html_button, html_file=html_file)


def _gallery_views() -> SimpleNamespace:
    with gr.Row():
        failure_kind = gr.Dropdown(list(FAILURE_VIEWS), value="Confident mistakes", label="Failure gallery")
        failure_button = gr.Button("Show failures")
    title = gr.Markdown(GALLERY_PROMPT, elem_id="dataset-gallery-title")
    summary = gr.Markdown(elem_id="dataset-selection-summary")
    with gr.Row():
        sort = gr.Dropdown(list(SORTS), value="as given", label="Sort by")
        page = count_box(1, minimum=1, label="Page", elem_id="dataset-gallery-page")
    gallery = gr.Gallery(label="Faces (click one to open it in Explain)", columns=2, height=640, object_fit="contain",
                         elem_id="dataset-gallery", allow_preview=False)
    with gr.Row():
        csv_button = gr.Button("Selection as CSV", size="sm")
        csv_file = gr.File(label="Selection (CSV: ids, paths, labels, predictions, scores)", interactive=False,
                           height=60, elem_id="dataset-selection-csv")
    return SimpleNamespace(failure_kind=failure_kind, failure_button=failure_button, title=title, summary=summary,
                           sort=sort, page=page, gallery=gallery, csv_button=csv_button, csv_file=csv_file)


def _detail_views() -> SimpleNamespace:
    with gr.Accordion("Per-class metrics and reliability", open=False):
        with gr.Row():  # the table beside the (square, 560-px) reliability diagram
            with gr.Column(scale=3):
                per_class = result_table("Per class (the model of the confusion matrix)",
                                         "Run an analysis: precision, recall and F1 per class",
                                         elem_id="dataset-per-class")
                gr.Markdown(HELP["reliability"])
            with gr.Column(scale=2, min_width=580):
                reliability_plot = gr.Plot(label="Reliability", elem_id="dataset-reliability")
    return SimpleNamespace(per_class=per_class, reliability_plot=reliability_plot)


REGIONS_HELP = ("Where do the maps fall on the face? For the analysed faces (up to the number below per true class), "
                "each model's Grad-CAM (predicted class) and its own attention maps are split into facial regions "
                "placed with the mean-face template (dataset faces have no landmarks): the cells are the mean share "
                "of each map's positive mass; the **(area)** row is what a map spread evenly would get. Red: more "
                "than the region's area; blue: less. Attention that follows the area explains nothing.")


@user_errors
def show_regions(bank: ModelBank, analysis, per_class, swept: set, progress=gr.Progress(track_tqdm=True)):
    """The facial-region table and heat-map of the session's analysis (ferx.analysis.regions)."""
    from ferx.analysis.regions import region_figure, region_shares, region_table

    if analysis is None:
        raise gr.Error("Run an analysis first: the region breakdown uses its faces and models.")
    tables = []
    for i, run in enumerate(analysis.runs):
        def report(f, i=i, what=f"{run.name}: Grad-CAM and attention maps"):
            progress((i + f) / len(analysis.runs), desc=what)

        report(0.0)
        with study_cache(analysis) as cache:
            shares = at_low_priority(region_shares, bank.models[run.name], analysis.packed, preds=run.preds,
                                     per_class=int(per_class or 50), batch_size=ANALYSIS_BATCH,
                                     hold=functools.partial(bank.batch_hold, bank.models[run.name]), progress=report,
                                     cache_dir=cache)
        tables.append(region_table(shares))
    table = pd.concat(tables)
    fig = region_figure(table)
    return rounded(table).reset_index(), fig, exports(swept, "ferx_regions", table=table, figure=fig)


def _placement_views() -> SimpleNamespace:
    from webapp.explaining import photo_inputs

    with gr.Accordion("Where does my photo land?", open=False):
        gr.Markdown(PLACE_HELP)
        with gr.Row():
            with gr.Column(scale=1):
                image, whole, index = photo_inputs("Photo (not stored)", "place-photo", 260)
                whole.elem_id = "place-whole"  # the tabs' other "whole image" boxes share its label
                k = count_box(8, minimum=1, maximum=50, label="Nearest faces (k)", elem_id="place-k")
                button = gr.Button("Place it among the analysed faces")
            with gr.Column(scale=2):
                table = result_table("Typicality per model", "Place a photo: one row per model", elem_id="place-table")
                title = gr.Markdown()
                gallery = gr.Gallery(label="Nearest dataset faces", columns=4, height=300, object_fit="contain",
                                     elem_id="place-neighbours", allow_preview=False)
    return SimpleNamespace(image=image, whole=whole, index=index, k=k, button=button, table=table, title=title,
                           gallery=gallery)


NOISE_HELP = ("FERPlus faces carry 10 annotator votes. **Against the votes**: *vote-weighted accuracy* is the chance "
              "that a random annotator agrees with the model (the annotators' own agreement is its ceiling for a model "
              "that always names the majority); *plausible accuracy*: some annotator chose the prediction. **Likely "
              "label errors**: the model is sure of a class that nearly tied the majority (confidence × its vote share "
              "/ the majority's). **Ambiguous faces**: the votes split over two classes (second share / top share). "
              "The ranked faces fill the gallery; click a row to see its votes beside every model's probabilities.")


@user_errors
def show_label_noise(analysis, kind, model, swept: set):
    """Vote metrics of every model, the ranking of ``model``'s faces (table, CSV) and the selection of them."""
    from ferx.analysis.labelnoise import ranking, vote_metrics

    if analysis is None:
        raise gr.Error("Run an analysis first.")
    soft = analysis.packed.soft_targets
    metrics = rounded(vote_metrics(analysis.runs, soft)).reset_index()
    table = ranking(analysis.run(model), soft, kind, GALLERY_LIMIT)
    path = write_csv(table, export_folder() / f"ferx_{kind.replace(' ', '_')}_{model}.csv")
    swept.add(str(path))
    shown = rounded(table.drop(columns=["path"])).reset_index()
    return (metrics, shown, str(path),
            selection(model, table.index, f"{kind.capitalize()} by {model}'s predictions against the votes", "ranking"))


@user_errors
def noise_row_click(analysis, table, evt: gr.SelectData):
    """A row of the ranking: that face's votes beside every model's probabilities."""
    from ferx.analysis.labelnoise import votes_figure

    if analysis is None or table is None or not len(table):
        return gr.skip()
    sample = int(table.iloc[evt.index[0]]["sample"])
    return votes_figure(sample, analysis.runs, analysis.packed.soft_targets)


def _noise_views(names: list[str]) -> SimpleNamespace:
    from ferx.analysis.labelnoise import RANKINGS

    with gr.Accordion("Label noise: FERPlus annotator votes", open=False):
        gr.Markdown(NOISE_HELP)
        with gr.Row():
            kind = gr.Dropdown(list(RANKINGS), value=list(RANKINGS)[0], label="Ranking")
            model = gr.Dropdown(names, value=names[0] if names else None, label="Model")
            button = gr.Button("Rank the faces")
        metrics = result_table("Accuracy against the majority and against the votes",
                               "Rank the faces (of a FERPlus analysis): one row per model", elem_id="noise-metrics")
        table = result_table("Ranked faces (click a row)", "Rank the faces: one row per face",
                             elem_id="noise-ranking", max_height=360)
        csv = gr.File(label="Ranking (CSV)", interactive=False, height=60)
        votes = gr.Plot(label="Votes and probabilities of one face")
    return SimpleNamespace(kind=kind, model=model, button=button, metrics=metrics, table=table, csv=csv, votes=votes)


DISAGREE_HELP = ("The faces model A and model B (chosen above) label differently, each with its Grad-CAM of its own "
                 "prediction: face, A's map, B's map, on one scale (each map's share of its own mass per pixel; dark: "
                 "least, bright yellow: most). **ρ**: Spearman rank correlation of the two maps' pixels; **IoU**: "
                 "overlap of their top 10 % pixels. The per-class table compares the maps on the first faces of every true class, whether or not "
                 "the labels agree. Grad-CAM is computed once per face, then cached.")
DISAGREE_TILES = 24  # faces drawn with both maps (the table and CSV hold them all)


def under_caption(tile: np.ndarray, px: int = 30) -> np.ndarray:
    """``tile`` with a white strip below for the gallery's caption, which gradio draws over the image's foot."""
    return np.pad(tile, ((0, px), (0, 0), (0, 0)), constant_values=255)


@user_errors
def show_disagreement(bank: ModelBank, analysis, a, b, sort, limit, per_class, swept: set,
                      progress=gr.Progress(track_tqdm=True)):
    """Both models' maps on the faces they disagree on (sorted), the per-class map agreement, a CSV, the
    faces as a selection (gallery, ringed in the embedding) and the sample ids of the tiles drawn."""
    from ferx.analysis.disagreement import class_agreement, disagreement_frame, pair_tile

    if analysis is None:
        raise gr.Error("Run an analysis with at least two models first.")
    if len(analysis.runs) < 2:
        raise gr.Error(f"This analysis has one model: {ONE_MODEL}.")
    if a == b:
        raise gr.Error("Choose two different models (Model A and Model B above).")
    loaded_a, loaded_b = bank.models[a], bank.models[b]
    run_a, run_b = analysis.run(a), analysis.run(b)

    def maps_of(fn, **kw):  # batch by batch at low priority, each model ours for one batch at a time
        with study_cache(analysis) as cache:
            return at_low_priority(fn, loaded_a, loaded_b, run_a, run_b, analysis.packed, batch_size=ANALYSIS_BATCH,
                                   hold=bank.batch_hold, cache_dir=cache, **kw)

    kept = "" if from_user_zip(analysis.packed.dataset) else " (cached after the first time)"
    progress(0, desc=f"Grad-CAM of {a} and {b} on the faces they disagree on{kept}")
    frame, maps_a, maps_b = maps_of(disagreement_frame, limit=int(limit or 200), sort=sort)
    progress(0.6, desc="map agreement per class")
    per_class_table = maps_of(class_agreement, per_class=int(per_class or 20))
    items = [(under_caption(pair_tile(analysis.packed.images[int(i)], maps_a[j], maps_b[j], names=(a, b),
                        lines=(f"#{int(i)} true {row['true']}\nρ {number(row['spearman'])} · IoU {number(row['top_k_iou'])}",
                               f"→ {row[f'pred_{a}']} {row[f'confidence_{a}']:.2f}",
                               f"→ {row[f'pred_{b}']} {row[f'confidence_{b}']:.2f}"))),
              f"#{int(i)} {row['true']} · A {row[f'pred_{a}']} {row[f'confidence_{a}']:.2f} · B {row[f'pred_{b}']} "
              f"{row[f'confidence_{b}']:.2f} · ρ {number(row['spearman'])} · IoU {number(row['top_k_iou'])}")
             for j, (i, row) in enumerate(frame.head(DISAGREE_TILES).iterrows())]
    path = write_csv(frame, export_folder() / f"ferx_disagreement_{a}_vs_{b}.csv")
    swept.add(str(path))
    return (items, rounded(frame.drop(columns=["path"])).reset_index(), rounded(per_class_table).reset_index(),
            str(path), selection(a, frame.index, f"Faces {a} (A) and {b} (B) label differently ({sort})", "ranking",
                                 versus=b),
            [int(i) for i in frame.index[:len(items)]])


def _disagreement_views() -> SimpleNamespace:
    from ferx.analysis.disagreement import SORTS as DISAGREE_SORTS

    with gr.Accordion("Disagreement explorer: model A vs model B, with their maps", open=False):
        gr.Markdown(DISAGREE_HELP)
        with gr.Row():
            sort = gr.Dropdown(list(DISAGREE_SORTS), value=list(DISAGREE_SORTS)[0], label="Sort by")
            limit = count_box(200, minimum=1, maximum=5000, label="Faces (both surest first)")
            per_class = count_box(20, minimum=1, maximum=500, label="Faces per class (table)")
            button = gr.Button("Compare the maps where they disagree")
        gallery = gr.Gallery(label="Face, A's map, colour bar, B's map (one scale): click a face to explain it",
                             columns=3, height=760, object_fit="contain", elem_id="disagree-gallery",
                             allow_preview=False)
        table = result_table("Faces they disagree on", "Compare the maps: one row per face A and B disagree on",
                             max_height=320, elem_id="disagree-table")
        classes = result_table("Map agreement per true class", "Compare the maps: one row per true class",
                               elem_id="disagree-classes")
        csv = gr.File(label="Disagreements (CSV)", interactive=False, height=60)
    return SimpleNamespace(sort=sort, limit=limit, per_class=per_class, button=button, gallery=gallery, table=table,
                           classes=classes, csv=csv)


ATTENTION_HELP = ("Is a network's own attention an explanation of its decision? For every analysed model with native "
                  "maps, on the same evenly spaced faces: deletion AUC (remove the pixels a map ranks highest first; "
                  "lower: the score falls faster, more faithful) and insertion AUC (put them back; higher is better) "
                  "of each native map and of Grad-CAM for the predicted class, beside random maps at each map's own "
                  "resolution. The *beats random* columns: on what share of the faces the map did better than its "
                  "random maps. Models without native maps are left out (named under the figure's title). Roughly 5-15 s per "
                  "face and model on 2 CPU cores the first time (Conv-cut the slowest), then cached.")


@user_errors
def show_attention(bank: ModelBank, analysis, n, swept: set, progress=gr.Progress()):
    """The attention-vs-Grad-CAM faithfulness table, figure and per-face CSV of the analysed models."""
    from ferx.analysis.attention import attention_figure, attention_study, attention_table

    if analysis is None:
        raise gr.Error("Run an analysis first: the test uses its faces and models.")
    models = [bank.models[r.name] for r in analysis.runs]
    with study_cache(analysis) as cache:
        rows = at_low_priority(attention_study, models, analysis.packed, int(n or 20), hold=bank.batch_hold,
                               cache_dir=cache,
                               progress=lambda f, what: progress(f, desc=f"deletion/insertion of {what}'s maps"))
    table = attention_table(rows)
    fig = attention_figure(table, left_out=[r.name for r in analysis.runs if r.name not in set(rows["model"])])
    return rounded(table).reset_index(), fig, exports(swept, "ferx_attention", table=rows.set_index("model"),
                                                      figure=fig)


def _map_study_views(title: str, help_text: str, count: tuple[int, str], button: str, table: tuple[str, str],
                     plot: str, files: str) -> SimpleNamespace:
    """An accordion for a dataset-wide study of the maps: how many faces, a button, its table and figure,
    and their downloads (``files`` labels them)."""
    with gr.Accordion(title, open=False):
        gr.Markdown(help_text)
        with gr.Row():
            n = count_box(count[0], minimum=1, maximum=2000, label=count[1])
            run = gr.Button(button)
        shown = result_table(table[0], f"{button}: one row per model and map", elem_id=table[1])
        figure = gr.Plot(label=plot)
        file = gr.File(label=files, interactive=False, file_count="multiple")
    return SimpleNamespace(n=n, button=run, table=shown, plot=figure, csv=file)


def _attention_views() -> SimpleNamespace:
    return _map_study_views("Is attention an explanation? Native maps vs Grad-CAM vs random maps", ATTENTION_HELP,
                            (20, "Faces (evenly spaced in the split)"), "Test the maps' faithfulness",
                            ("Mean AUC per model and map", "attention-table"), "Deletion and insertion AUC",
                            "Every face and map (CSV) and the figure (HTML)")


def _region_views() -> SimpleNamespace:
    return _map_study_views("Facial regions of the maps: Grad-CAM vs native attention", REGIONS_HELP,
                            (50, "Faces per true class"), "Break the maps down by facial region",
                            ("Mean share of positive mass per region", "dataset-regions-table"), "Regions heat-map",
                            "The table (CSV) and the heat-map (HTML)")


def build_dataset_tab(ctx: AppContext) -> None:
    """Layout, then wiring: every view's handler is a module-level function above."""
    ttl = ctx.cfg.state_ttl_s
    bank, state = ctx.bank, gr.State(None, time_to_live=ttl)
    chosen = gr.State(None, time_to_live=ttl)  # the selection (see selection())
    shown = gr.State([], time_to_live=ttl)  # sample ids on the gallery's page, in order
    placed = gr.State(None, time_to_live=ttl)  # a placed photo's positions: model -> method -> (x, y)
    src = _source_inputs(bank.names, ctx.cfg.data_root)
    with gr.Row():
        with gr.Column(scale=3, min_width=MATRIX_COLUMN_PX):  # narrower, the gallery goes below the matrices
            mx = _matrix_views(bank.names)
        with gr.Column(scale=2):
            gal = _gallery_views()
    det = _detail_views()
    plc = _placement_views()
    noise = _noise_views(bank.names)
    dis = _disagreement_views()
    att = _attention_views()
    reg = _region_views()
    page_out = [gal.gallery, shown, gal.title, gal.summary, gal.page]
    tiles = gr.State([], time_to_live=ttl)  # sample ids of the disagreement explorer's tiles, in order
    # what the research views showed of an earlier analysis: cleared when a new one lands
    research_out = [plc.table, plc.title, plc.gallery, noise.metrics, noise.table, noise.csv, noise.votes,
                    dis.gallery, dis.table, dis.classes, dis.csv, tiles, att.table, att.plot, att.csv,
                    reg.table, reg.plot, reg.csv]

    @user_errors
    def analyse(name, split_name, zip_file, chosen, calib, request: gr.Request, faces="given", face="best",
                progress=gr.Progress(track_tqdm=True)):  # not a partial: gradio passes gr.Request by annotation
        return run_analysis(bank, ctx.cfg, name, split_name, zip_file, chosen, calib, request, progress, faces, face)

    # an analysis asked for is under way from the click (Stop drops it while it waits in the queue), not from
    # when the queue starts it
    src.run_button.click(analysis_asked, None, None, queue=False, api_visibility="private")
    analysed = src.run_button.click(
        analyse,
        inputs_kwargs=dict(name=src.dataset, split_name=src.split, zip_file=src.upload, chosen=src.models,
                           calib=src.calibrate, faces=src.faces, face=src.face),
        outputs=[state, src.status, src.summary, mx.matrix_model, mx.model_a, mx.model_b, mx.emb_model],
        # progress, and an error's badge, on the status line only (the message itself is the toast): a zip
        # without a readable image put red "Error" badges on the status, the table and five dropdowns, like a crash
        show_progress_on=[src.status], concurrency_limit=1, api_name="analyze")
    # triggers=None: on page load and whenever the source changes
    gr.on(None, source_controls, [src.dataset, src.upload, src.faces], [src.split, src.calibrate, src.faces, src.face],
          api_visibility="undocumented")
    src.stop_button.click(stop_analysis, None, src.status, cancels=[analysed], api_name="stop_analysis")
    matrix_io = ([state, mx.matrix_model, mx.normalise], [mx.confusion, det.per_class,
                                                          det.reliability_plot])
    cross_io = ([state, mx.model_a, mx.model_b], [mx.cross, mx.agreement_line])
    embedding_in = [state, mx.emb_model, mx.method, mx.colour]
    embedding_io = (embedding_in + [chosen, placed], [mx.embedding])
    analysed.success(lambda: (None,) * (2 + len(research_out)), None, [chosen, placed] + research_out).then(
        show_matrix, *matrix_io).then(
        show_cross, *cross_io).then(show_embedding, *embedding_io).then(first_page, [state, chosen, gal.sort], page_out)
    for handler, io, triggers in ((show_matrix, matrix_io, (mx.matrix_model, mx.normalise)),
                                  (show_cross, cross_io, (mx.model_a, mx.model_b)),
                                  (show_embedding, embedding_io, (mx.emb_model, mx.method, mx.colour))):
        for trigger in triggers:
            trigger.input(handler, *io)
    for view in (mx.confusion, mx.cross, mx.embedding):  # on a phone the gallery is below every view
        scroll_to_on_narrow(view.select, "dataset-gallery", below=WIDE_PAGE_PX)  # stacked below the matrices
    scroll_to_on_narrow(gal.failure_button.click, "dataset-gallery", below=WIDE_PAGE_PX)
    # every view makes a selection; the gallery shows its first page and the embedding rings its faces
    for event in (mx.confusion.select(confusion_click, [state, mx.matrix_model], chosen),
                  mx.cross.select(cross_click, [state, mx.model_a, mx.model_b], chosen),
                  mx.embedding.select(embedding_select, [state, mx.emb_model, mx.method], chosen),
                  gal.failure_button.click(show_failures, [state, gal.failure_kind, mx.matrix_model, mx.model_a,
                                                           mx.model_b], chosen),
                  noise.button.click(functools.partial(show_label_noise, swept=noise.csv.temp_files),
                                     [state, noise.kind, noise.model], [noise.metrics, noise.table, noise.csv, chosen],
                                     api_name="label_noise"),
                  dis.button.click(functools.partial(show_disagreement, bank, swept=dis.csv.temp_files),
                                   [state, mx.model_a, mx.model_b, dis.sort, dis.limit, dis.per_class],
                                   [dis.gallery, dis.table, dis.classes, dis.csv, chosen, tiles], concurrency_limit=1,
                                   api_name="disagreement")):
        event.success(first_page, [state, chosen, gal.sort], page_out).then(
            ring_selection, embedding_in + [chosen, placed], mx.embedding)
    att.button.click(functools.partial(show_attention, bank, swept=att.csv.temp_files), [state, att.n],
                     [att.table, att.plot, att.csv], concurrency_limit=1, api_name="attention")
    noise.table.select(noise_row_click, [state, noise.table], noise.votes)
    gal.sort.input(first_page, [state, chosen, gal.sort], page_out)
    gal.page.submit(page_of, [state, chosen, gal.sort, gal.page], page_out)
    gal.csv_button.click(functools.partial(selection_csv, swept=gal.csv_file.temp_files),
                         [state, chosen, gal.sort], gal.csv_file)
    mx.html_button.click(functools.partial(embedding_html, swept=mx.html_file.temp_files), embedding_in + [chosen],
                         mx.html_file)
    plc.button.click(functools.partial(place_photo, bank), [state, plc.image, plc.whole, plc.index, plc.k,
                                                            mx.emb_model], [plc.table, plc.gallery, plc.title, placed],
                     api_name="place").success(show_embedding, *embedding_io)
    reg.button.click(functools.partial(show_regions, bank, swept=reg.csv.temp_files), [state, reg.n],
                     [reg.table, reg.plot, reg.csv],
                     concurrency_limit=1, api_name="regions")
    ex = ctx.shared["explain_photo"]

    @user_errors
    def open_face(analysis, ids, evt: gr.SelectData):  # every analysed model
        return open_in_explain(analysis, ids, evt.index, ex.image.temp_files)

    @user_errors
    def open_pair_face(analysis, ids, a, b, evt: gr.SelectData):  # the two models the explorer compares
        return open_in_explain(analysis, ids, evt.index, ex.image.temp_files, [a, b])

    opened = [ex.image, ex.whole, ex.index, ex.source, ex.models, ctx.tabs]
    for event in (gal.gallery.select(open_face, [state, shown], opened),
                  dis.gallery.select(open_pair_face, [state, tiles, mx.model_a, mx.model_b], opened)):
        event.success(ex.run.fn, inputs_kwargs=ex.run.inputs_kwargs, outputs=ex.run.outputs,
                      show_progress_on=ex.run.show_progress_on)
