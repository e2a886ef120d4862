"""The ``ferx`` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import ferx  # noqa: F401  (torchvision compatibility before anything imports timm)
from ferx.data.datasets import list_datasets
from ferx.paths import CARD, checkpoint_path, no_checkpoint

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg")


def figure_path(value: str | None, default: str) -> Path:
    """``--out`` of a command that draws a figure (its JSON goes beside it): ``.png`` added to a path
    without a suffix; a suffix matplotlib cannot draw is refused before any work."""
    out = Path(value or default)
    if not out.suffix:
        return out.with_suffix(".png")
    if out.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"--out {value}: a figure path ({', '.join(FIGURE_SUFFIXES)}); the JSON is written beside it")
    return out


def _writable_folder(folder: Path, value: str, option: str) -> None:
    """Refuse ``option value`` unless ``folder`` (where it goes) exists or can be made, and can be written in: the
    nearest folder that exists is tried with a temporary file (permission bits say nothing for root, or on a
    read-only mount)."""
    existing = next((f for f in (folder, *folder.parents) if f.exists()), Path("."))
    if not existing.is_dir():
        raise ValueError(f"{option} {value}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ValueError(f"{option} {value}: cannot write in {existing} ({err.strerror or err})") from None


def output_file(value: str | Path, option: str = "--out") -> Path:
    """A file a command will write, checked before its work: not a folder, and its folder writable."""
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"{option} {value}: a folder, not a file; give a file path")
    _writable_folder(path.parent, str(value), option)
    return path


def output_folder(value: str | Path, option: str = "--out") -> Path:
    """A folder a command will write files in, checked before its work: not a file, and writable (or creatable)."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {value}: a file, not a folder; give a folder path")
    _writable_folder(path, str(value), option)
    return path


def output_files(paths) -> list[Path]:
    """Files a command writes together (a PNG and its JSON; a card's three), each checked as :func:`output_file`
    before the work: ``p.json`` a folder failed after it, with half the pair replaced."""
    return [output_file(p) for p in paths]


@contextmanager
def written_together(*paths: Path):
    """Temporary names beside ``paths`` (one folder; a shared stem, so ``out.png``'s temporary name with
    ``.json`` is ``out.json``'s) for a block to write them under; once it has written all of them, each
    replaces its path. A failure leaves none of them, and whatever was there before stays."""
    stem = f".{paths[0].stem}.{uuid.uuid4().hex[:8]}.partial"
    temps = [p.with_name(stem + p.suffix) for p in paths]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp, path in zip(temps, paths):
            tmp.replace(path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


@contextmanager
def terminal_progress(width: int = 78):
    """A ``progress(fraction, what)`` callback that keeps one line on stderr up to date ("40% lanmsff
    (lanmsff_ferplus): gradcam") where stderr is a terminal, and clears it at the end; silent otherwise
    (logs and pipes get the results only)."""
    shown = sys.stderr.isatty()

    def report(fraction: float, what: str) -> None:
        if shown:
            sys.stderr.write(f"\r{100 * fraction:3.0f}% {what}"[:width].ljust(width))
            sys.stderr.flush()

    try:
        yield report
    finally:
        if shown:
            sys.stderr.write("\r" + " " * width + "\r")
            sys.stderr.flush()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive whole number")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a whole number of 0 or more")
    return value


def positive_number(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive number")
    return value


def non_negative_number(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"{value:g} is not a number of 0 or more")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"{value:g} is not a fraction in [0, 1]")
    return value


def crop_margin(text: str) -> float:
    from ferx.faces import MARGINS  # light: no torch, no OpenCV

    value = float(text)
    if not MARGINS[0] <= value <= MARGINS[1]:
        raise argparse.ArgumentTypeError(f"{value:g} is not a crop margin in [{MARGINS[0]:g}, {MARGINS[1]:g}] (a fraction "
                                         "of the face box per side)")
    return value


def recipe_name(text: str) -> str:
    from ferx.train import RECIPES  # the registry (torch: only once ferx train is run, which needs it anyway)

    if text not in RECIPES:
        raise argparse.ArgumentTypeError(f"unknown recipe {text!r}: choose {', '.join(RECIPES)}")
    return text


def checkpoint_folder(text: str) -> Path:
    """A checkpoint folder, or its name under the checkpoints root (:func:`ferx.paths.checkpoint_path`),
    that has a card: refused otherwise, as ``ferx explain --model`` refuses it."""
    path = checkpoint_path(text)
    if not (path / CARD).is_file():
        raise argparse.ArgumentTypeError(no_checkpoint(text))
    return path


def distinct_checkpoints(given) -> None:
    """Refuse checkpoints a command could not tell apart: its rows, JSON entries and files are named by each
    checkpoint's folder name, so ``runs/a/checkpoint`` and ``runs/b/checkpoint`` (every ``ferx train`` run exports
    to ``OUT/checkpoint``) came out as two rows called "checkpoint", the second one's files written over the
    first's; the same checkpoint given twice (by name and by folder) is refused too."""
    by_name: dict[str, str] = {}
    for value in map(str, given):
        path = Path(value)
        name = path.name
        if name in by_name:
            first = by_name[name]
            if checkpoint_path(first).resolve() == checkpoint_path(value).resolve():  # a name is no path from here
                raise ValueError(f"{value} is given twice" + (f" (as {first} and {value})" if first != value else ""))
            raise ValueError(f"{first} and {value} are both named {name!r}: rows and files are named by the "
                             "checkpoint's folder, so one would replace the other; copy or link one under another "
                             "name (ferx train --checkpoint-dir names a run's export)")
        by_name[name] = value


def port_number(text: str) -> int:
    from webapp.config import PORTS, in_range, range_text  # light: FERX_PORT is checked against the same range

    value = int(text)
    if not in_range(value, PORTS):
        raise argparse.ArgumentTypeError(f"{value} is not a port ({range_text(PORTS)})")
    return value


def percentile(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"{value:g} is not a percentile in (0, 100]")
    return value


CHECKPOINT_HELP = "a checkpoint folder, or its name under the project's checkpoints/ (ferx models lists them)"
DEVICE_HELP = "auto (CUDA when present, else the CPU), cpu, cuda or cuda:N"
EXPLAIN_METHODS = ("native", "gradcam")  # ferx explain's maps unless --method says: the model's own, and a CAM
DATA_ROOT = dict(default=None, help="dataset root (default: $FERX_DATA_ROOT, else the project's datasets/)")
PHOTO_HELP = "an image file (JPEG, PNG, WebP, BMP, ...)"  # explain, sanity, occlude
FACE_HELP = "which face (0 = the most face-like: detector confidence and size)"
WHOLE_IMAGE_HELP = "skip face detection: score the whole image as a face"


def refuse_no_face(search, photo: str) -> None:
    """ferx explain's and sanity's one refusal of a photo where no face was found."""
    if search.no_face:
        raise ValueError(f"no face found in {photo}; pass --whole-image to score the whole image as a face")


def _cmd_data_prepare(args) -> int:
    from ferx.data.prepare import prepare_datasets

    from ferx.paths import default_data_root

    for folder in prepare_datasets(args.data_root or default_data_root(), args.source, args.names or None):
        print(f"ready: {folder}")
    return 0


def _cmd_data_info(args) -> int:
    import numpy as np

    from ferx.data.datasets import load_split, split_title

    for split in args.splits:
        data = load_split(args.dataset, split, args.data_root)
        counts = np.bincount(data.targets, minlength=len(data.labels))
        per_class = ", ".join(f"{c} {n}" for c, n in zip(data.labels.classes, counts))
        excluded = "; excluded " + ", ".join(f"{k} {v}" for k, v in data.excluded.items()) if data.excluded else ""
        print(f"{split_title(data.dataset, data.split)}: {len(data)} images ({per_class}){excluded}")
        if data.split != split:  # a folder without split folders is one split, whatever was asked: said once
            print(f"  (no split folders: every image is in split {data.split})")
            break
    return 0


def _cmd_data_carry(args) -> int:
    import numpy as np

    from ferx.data.carry import write_carry
    from ferx.data.datasets import load_split
    from ferx.data.packed import pack_split

    output_file(args.out)
    rng = np.random.default_rng(args.seed)
    packs = []
    for split in args.splits:
        packed = pack_split(load_split(args.dataset, split, args.data_root))
        if args.limit and args.limit < len(packed):  # a fixed random subset, recorded in the fingerprint
            packed = packed.take(np.sort(rng.choice(len(packed), args.limit, replace=False)))
        packs.append(packed)
    path = write_carry(packs, args.out)
    sizes = ", ".join(f"{p.split} {len(p)}" for p in packs)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB ({args.dataset}: {sizes} faces)")
    return 0


def _cmd_convert(args) -> int:
    from ferx.checkpoint import save_checkpoint
    from ferx.data.labels import FER2013_7
    from ferx.models import create_model
    from ferx.models.mini_xception import convert_keras_h5

    out = output_folder(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.force:  # the shipped card lost its metrics this way
        held = "a checkpoint (its card and the metrics recorded on it)" if (out / CARD).is_file() else "files"
        raise ValueError(f"--out {args.out} already holds {held}: pass --force to replace it, or choose another --out")
    model = create_model("mini_xception", num_classes=7)
    model.load_state_dict(convert_keras_h5(args.h5))
    card = {
        "title": "mini-Xception trained on FER-2013 (ported from Keras)",
        "summary": "Trained by O. Arriaga, M. Valdenegro-Toro and P. Plöger (face_classification, 2017) on "
                   "FER-2013; converted to PyTorch by `ferx convert mini-xception` (h5py, no TensorFlow). "
                   "A reference model for checking every pipeline, not one of ours.",
        "source": {"file": Path(args.h5).name, "project": "https://github.com/oarriaga/face_classification",
                   "trained_by": "face_classification authors (not ferx)"},
        "licence": "MIT (face_classification), see LICENSE-face_classification.txt",
        "data": {"dataset": "fer2013", "train_split": "train (Training_*) per the original project",
                 "test_split": "test (PrivateTest_*)"},
        "recipe": "unknown beyond the original project's train_emotion_classifier.py (Adam, batch 32, augmentation)",
        "hardware": "unknown (trained by the original authors)",
        "wall_time_s": "unknown",
    }
    out = save_checkpoint(model, out, labels=FER2013_7, card=card)
    print(f"wrote {out}")
    return 0


def _cmd_train(args) -> int:
    from ferx.train import train

    output_folder(args.out)
    if args.checkpoint_dir:
        output_folder(args.checkpoint_dir, "--checkpoint-dir")
    summary = train(args.recipe, args.dataset, args.out, data_root=args.data_root, device=args.device,
                    epochs=args.epochs, batch_size=args.batch_size, limit_train=args.limit_train,
                    limit_val=args.limit_val, resume=args.resume, checkpoint_dir=args.checkpoint_dir, seed=args.seed,
                    time_budget_min=args.time_budget, carried=args.carried, export_dtype=args.export_dtype,
                    input_size=args.input_size, fit_budget=args.fit_budget, init_from=args.init_from, lr=args.lr,
                    ema_decay=args.ema_decay, augment=args.augment, warmup_epochs=args.warmup_epochs,
                    soft_labels=args.soft_labels, precision=args.precision,
                    backbone_weights=args.backbone_weights, head_epochs=args.head_epochs)
    from ferx.data.datasets import list_datasets

    # a card records a registered dataset's test split; a folder of one's own is measured on its test faces, if any
    on = (f"--dataset {args.dataset} --split test --update-card" if args.dataset in list_datasets() else
          f"--dataset {args.dataset} --split test" if (Path(args.dataset) / "test").is_dir() else
          "--dataset FACES_IT_DID_NOT_TRAIN_ON")
    print(f"best epoch {summary['best_epoch']} (val acc {summary['best_val_acc']:.4f}); checkpoint: "
          f"{summary['checkpoint']}\nmeasure it with: ferx evaluate {summary['checkpoint']} {on}")
    return 0


def _cmd_evaluate(args) -> int:
    from ferx.evaluate import card_worthy, evaluate_checkpoint, record_on_card, summary_line

    faces_chosen(args)  # refused before the run, not after it
    if args.out:
        output_file(args.out)
    if args.update_card:
        card_worthy(args.dataset, args.split, args.limit, args.faces)
    result = evaluate_checkpoint(args.checkpoint, args.dataset, args.split, args.data_root, args.device, args.limit,
                                 args.batch_size, faces=args.faces, face=args.face, precision=args.precision)
    said = sys.stdout if args.out else sys.stderr  # without --out, stdout is only the JSON, for a pipe
    print(summary_line(result), file=said)
    if args.out:
        with written_together(Path(args.out)) as (tmp,):  # whole or not at all
            tmp.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")
    else:
        print(json.dumps(result, indent=2))
    if args.update_card:
        record_on_card(args.checkpoint, result)
        print(f"recorded on the card of {args.checkpoint}", file=said)
    return 0


ANALYSIS_FILES = "analysis_files.json"  # what `ferx analyze --out` wrote in its folder
ANALYSIS_SUFFIXES = (".csv", ".html", ".png")  # the kinds of file it writes there: tables and figures


def _earlier_analysis(out: Path) -> list[str]:
    """The files an earlier ``ferx analyze`` wrote in ``out`` (its ANALYSIS_FILES): the next one removes those it
    does not write again, so a folder never holds one analysis's tables beside another's (a model no longer
    analysed, another split); nothing else in the folder is touched. Only names of the kinds it writes (a table or
    a figure) that are files there are taken from the list: a hand-edited one naming notes.txt or a folder removed
    that file, or ended the analysis in 'Is a directory' after it had written everything."""
    try:
        names = json.loads((out / ANALYSIS_FILES).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n == Path(n).name
            and Path(n).suffix.lower() in ANALYSIS_SUFFIXES and (out / n).is_file()]


def _cmd_analyze(args) -> int:
    import itertools

    import pandas as pd

    from ferx.analysis import (agreement, analyze, confusion_frame, cross_model_frame, disagreements, failures,
                               per_class_table, summary_table)
    from ferx.analysis.embeddings import check_projectable, project
    from ferx.analysis.figures import COLOUR_BY, confusion_figure, embedding_figure, reliability_figure, write_figure
    from ferx.analysis.tables import FAILURE_KINDS
    from ferx.data.datasets import split_title
    from ferx.data.packed import faces_note, left_out
    from ferx.device import resolve_device
    from ferx.text import plural

    faces_chosen(args)  # before the analysis, not after it
    distinct_checkpoints(args.checkpoints)
    if args.color_by not in COLOUR_BY:
        raise ValueError(f"--color-by {args.color_by}: choose {', '.join(COLOUR_BY)}")
    if args.out:
        output_folder(args.out)
    runs = analyze(args.checkpoints, args.dataset, args.split, data_root=args.data_root, device=args.device,
                   batch_size=args.batch_size, calibrate=args.calibrate, faces=args.faces, face=args.face,
                   precision=args.precision)
    if args.out:  # too few faces for a projection: refused before the report, not after it and half the files
        for method in args.embeddings:
            check_projectable(len(runs[0]), method)
    pd.set_option("display.width", 160, "display.max_columns", 20, "display.precision", 4)
    cached = ", ".join(f"{r.name}: {r.compute_dtype}, {'cache' if r.from_cache else 'computed'}" for r in runs)
    print(f"{split_title(runs[0].dataset, runs[0].split)}: {len(runs[0])} faces{left_out(runs[0].skipped)}"
          f"{faces_note(runs[0].faces, runs[0].no_face)} "
          f"({cached}) on {resolve_device(args.device)}\n")  # the device analyze() ran on (a cached run: would run on)
    print(summary_table([r.with_temperature(1.0) for r in runs]).to_string(), "\n")
    if args.calibrate:
        print("after temperature scaling fitted on the val split:")
        print(summary_table(runs).to_string(), "\n")
    for run in runs:
        print(f"{run.name} per class:\n{per_class_table(run).to_string()}\n")
        print(f"{run.name} confusion (rows true, columns predicted):\n{confusion_frame(run).to_string()}\n")
        for kind in FAILURE_KINDS:
            print(f"{run.name} {kind.replace('_', ' ')} (top {args.top}):\n"
                  f"{failures(run, kind, args.top)[['path', 'true', 'pred', 'confidence', 'loss']].to_string()}\n")
    votes = _votes(args, runs[0].paths)
    if votes is not None:
        from ferx.analysis.labelnoise import RANKINGS, ranking, vote_metrics

        print(f"against the annotators' votes:\n{vote_metrics(runs, votes).to_string()}\n")
        for run in runs:
            for kind in RANKINGS:
                table = ranking(run, votes, kind, args.top)
                print(f"{run.name} {kind} (top {args.top}):\n{table.drop(columns=['path']).to_string()}\n")
    pairs = list(itertools.combinations(runs, 2))
    for a, b in pairs:
        print(f"{a.name} vs {b.name}: agreement {agreement(a, b):.4f}\n{cross_model_frame(a, b).to_string()}\n")
        print(f"disagreements (top {args.top}):\n{disagreements(a, b, args.top).to_string()}\n")
    research = _map_studies(args, runs)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        earlier, written = _earlier_analysis(out), []

        def put(name: str) -> Path:  # a file of this analysis, listed in the folder's ANALYSIS_FILES
            written.append(name)
            return out / name

        summary_table([r.with_temperature(1.0) for r in runs]).to_csv(put("summary.csv"))
        if args.calibrate:
            summary_table(runs).to_csv(put("summary_calibrated.csv"))
        figures = {"reliability": reliability_figure(runs)}
        if votes is not None:
            vote_metrics(runs, votes).to_csv(put("vote_metrics.csv"))
            for run in runs:
                for kind in RANKINGS:
                    ranking(run, votes, kind, len(run)).to_csv(put(f"{kind.replace(' ', '_')}_{run.name}.csv"))
        for run in runs:
            run.frame().to_csv(put(f"samples_{run.name}.csv"))
            per_class_table(run).to_csv(put(f"per_class_{run.name}.csv"))
            figures[f"confusion_{run.name}"] = confusion_figure(confusion_frame(run), confusion_frame(run, True),
                                                               f"{run.name} on {split_title(run.dataset, run.split)}<br>"
                                                               f"<sub>{run.scored_text()}</sub>")
            for method in args.embeddings:
                figures[f"{method}_{run.name}"] = embedding_figure(project(run, method), run, args.color_by, method,
                                                                   others=runs)
        for a, b in pairs:
            figures[f"cross_{a.name}_vs_{b.name}"] = confusion_figure(
                cross_model_frame(a, b), title=f"{a.name} vs {b.name}: agreement {agreement(a, b):.3f}<br>"
                                               f"<sub>{split_title(a.dataset, a.split)}, {len(a)} faces (every face, whatever its label)</sub>")
        for name, (table, fig) in research.items():
            table.to_csv(put(f"{name}.csv"))
            if fig is not None:
                figures[name] = fig
        for name, fig in figures.items():
            for fmt in args.format:
                write_figure(fig, put(f"{name}.{fmt}"), shared_js=True)
        stale = sorted(set(earlier) - set(written))  # an earlier analysis's files this one did not replace
        for name in stale:
            (out / name).unlink(missing_ok=True)
        (out / ANALYSIS_FILES).write_text(json.dumps({"command": "ferx analyze", "files": sorted(written)}, indent=1))
        shared = " (the HTML files load plotly.min.js from there: move the folder as a whole)" if "html" in args.format else ""
        print(f"wrote tables and {len(figures)} figure(s) ({', '.join(args.format)}) to {out}{shared}"
              + (f"; removed {plural(len(stale), 'file')} of the earlier analysis there ({', '.join(stale[:4])}"
                 f"{' ...' if len(stale) > 4 else ''})" if stale else ""))
    return 0


def _map_studies(args, runs) -> dict:
    """``--attention`` and ``--disagreement``: printed, and returned as name -> (table, figure or None)."""
    import itertools

    if not (args.attention or args.disagreement):
        return {}
    from ferx.checkpoint import load_checkpoint
    from ferx.data.datasets import load_split
    from ferx.data.packed import pack_options, pack_split
    from ferx.device import resolve_device
    from ferx.text import plural

    dev = resolve_device(args.device)
    models = {run.name: load_checkpoint(run.checkpoint, dev) for run in runs}
    options = pack_options([m.input_spec for m in models.values()], args.faces, args.face)  # the runs' faces
    packed = pack_split(load_split(args.dataset, args.split, args.data_root), progress=False, **options)
    out = {}
    if args.attention:
        from ferx.analysis.attention import attention_figure, attention_study, attention_table

        with terminal_progress() as progress:
            rows = attention_study(list(models.values()), packed, args.attention,
                                   progress=lambda f, what: progress(f, f"deletion/insertion of {what}'s maps"))
        table = attention_table(rows)
        print(f"is attention an explanation? ({plural(args.attention, 'face')}; deletion lower and insertion higher is more "
              f"faithful)\n{table.round(3).to_string()}\n")
        left_out = [name for name in models if name not in set(rows["model"])]  # no native maps
        out["attention"] = (table, attention_figure(table, left_out=left_out))
    if args.disagreement:
        from ferx.analysis.disagreement import class_agreement

        for a, b in itertools.combinations(runs, 2):
            table = class_agreement(models[a.name], models[b.name], a, b, packed, per_class=args.disagreement)
            print(f"{a.name} vs {b.name}: Grad-CAM agreement per true class ({plural(args.disagreement, 'face')} each)\n"
                  f"{table.round(3).to_string()}\n")
            out[f"map_agreement_{a.name}_vs_{b.name}"] = (table, None)
    return out


def _votes(args, paths):
    """The annotator vote shares (FERPlus) of the faces analysed, read from the split's label file (no pixels)
    and matched by file: an unreadable image left out, or several faces of one photo, keep every row its own
    votes; None for a split without votes (or a face whose file the label file does not name)."""
    from ferx.data.datasets import load_split

    try:
        split = load_split(args.dataset, args.split, args.data_root)
    except (ValueError, OSError):
        return None
    row = {str(p): i for i, p in enumerate(split.paths)}
    if split.soft_targets is None or not all(str(p) in row for p in paths):
        return None
    return split.soft_targets[[row[str(p)] for p in paths]]


def _cmd_bundle(args) -> int:
    from ferx.analysis.bundle import build_bundle

    output_folder(args.out)
    out = build_bundle(args.checkpoints, args.dataset, args.split, args.out, data_root=args.data_root,
                       methods=args.embeddings)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB): start the app with FERX_CACHE_DIR={out} (spaces/app.py does)")
    return 0


def _cmd_models(args) -> int:
    from ferx.checkpoint import CheckpointError, read_card
    from ferx.models import get_model_info, list_models
    from ferx.paths import checkpoint_folders, default_checkpoints

    root = Path(args.checkpoints) if args.checkpoints else default_checkpoints()
    if not root.is_dir():  # it listed no checkpoint, exit 0, for a folder that is not there
        given = f"--checkpoints {args.checkpoints}" if args.checkpoints else f"{root} ($FERX_CHECKPOINTS, or the default)"
        raise ValueError(f"{given}: " + ("no such folder" if not root.exists() else "not a folder"))
    print("registered architectures:")
    for name in list_models():
        info = get_model_info(name)
        s = info.input_spec
        size = f"{s.size}x{s.size}x{s.channels}"
        print(f"  {name:14s} {size:11s} {info.description}")
    print(f"checkpoints in {root}:")
    for folder in checkpoint_folders(root):
        try:
            card = read_card(folder)
        except CheckpointError as err:
            print(f"  {folder.name}: unusable ({err})")
            continue
        measured = "; ".join(f"{m['dataset']}/{m['split']} acc {100 * m['accuracy']:.2f} %" for m in card.get("metrics", []))
        spec = card["input_spec"]  # a checkpoint's own input (Conv-cut's was trained at 112, its architecture's 224)
        size = f"{spec['size']}x{spec['size']}x{spec['channels']}"
        print(f"  {folder.name:24s} {card['model']:14s} {size:11s} {len(card['labels'])} classes  "
              f"{measured or 'not evaluated'}")
    return 0


def _cmd_explain(args) -> int:
    from ferx.faces import find_faces, load_photo
    from ferx.text import plural

    if args.card and args.out and Path(args.out).suffix.lower() not in ("", ".png"):  # k.svg wrote k.png, k.pdf ...
        raise ValueError(f"--out {args.out}: a card is written as PNG, PDF and JSON: give a .png path (the .pdf and "
                         ".json go beside it)")
    distinct_checkpoints(args.model)
    out = figure_path(args.out, f"{Path(args.photo).stem}_{'card' if args.card else 'explain'}.png")
    written = output_files((out, out.with_suffix(".json")))  # a card's three are checked once ferx.explain loads
    # The faces are found and reported before torch, the models and the explanation libraries load:
    # this first line comes after 0.3 s, where the first line used to wait 6.8 s for all of them (2 CPU
    # cores at load 4, bench/bench_startup.py); a photo without a face is refused before that wait.
    search = find_faces(load_photo(args.photo), whole_image=args.whole_image, margin=args.margin, align=args.align)
    if search.note:
        print(f"note: {search.note}")
    refuse_no_face(search, args.photo)
    face = search.pick(args.face)
    print(f"{args.photo}: {plural(len(search.faces), 'face')} found; explaining face {face}"
          + (" (whole image)" if search.faces[face].whole_image else "")
          + f" with {', '.join(Path(m).name for m in args.model)}: {', '.join(args.method or EXPLAIN_METHODS)}")

    import matplotlib
    import torch

    if args.cmap and args.cmap not in matplotlib.colormaps:
        raise ValueError(f"--cmap {args.cmap}: not a matplotlib colormap (e.g. jet, inferno, viridis, RdBu_r)")
    from ferx.explain.attributions import BASELINES, DELETION_BASELINE

    baseline = args.baseline or DELETION_BASELINE
    if baseline not in BASELINES:
        raise ValueError(f"--baseline {baseline}: choose {', '.join(BASELINES)}")
    from ferx.explain.card import CardFiles
    from ferx.explain.panel import render_panel
    from ferx.explain.methods import map_caption
    from ferx.explain.regions import REGIONS, breakdown_line
    from ferx.explain.report import canonical_method, explain_photo, open_model

    if args.card:  # before the models load and the maps are made
        written = output_files(CardFiles.beside(out))
    methods = [canonical_method(m) for m in (args.method or EXPLAIN_METHODS)]
    models = [open_model(m, untrained=args.untrained, device=args.device) for m in args.model]
    print(f"{plural(len(models), 'model')} loaded on {models[0].device}")  # where the timings below were measured
    if args.threads:
        torch.set_num_threads(args.threads)
    with terminal_progress() as progress:  # a bar with the step under way, where stderr is a terminal
        result = explain_photo(models, search, args.face, methods, target=args.target, contrast=args.contrast,
                               faithfulness=not args.no_faithfulness, baseline=baseline,
                               deletion_steps=args.deletion_steps, n_random=args.random_maps,
                               **({} if args.ig_steps is None else {"ig_steps": args.ig_steps}),
                               progress=progress)
    view = {k: v for k, v in dict(scale=args.scale, clip_percentile=args.clip_percentile, alpha=args.alpha,
                                  cmap=args.cmap).items() if v is not None}  # None: the drawing's own default
    if args.card:
        from ferx.explain.card import write_card

        with written_together(*written) as temps:  # all three or none
            write_card(temps[0], result, models, target=args.target, contrast=args.contrast, **view)
    else:
        with written_together(*written) as (png, numbers):  # both or neither
            render_panel(png, search, result.face, result.rows, **view)
            numbers.write_text(json.dumps(result.to_dict(args.scale), indent=2) + "\n")
    for row in result.rows:
        top = row.classes[row.predicted]
        print(f"{row.model}: {top} {row.probs[row.predicted]:.3f} (margin {row.margin:.2f}, {row.certainty}); "
              + "; ".join(f"{map_caption(m)} {m.elapsed_s * 1000:.0f} ms" for m in row.maps))
        for note in row.notes:  # a method asked for and not drawn: the panel and the JSON said so, the terminal not
            print(f"  note: {note}")
        for m in row.maps:  # facial-region breakdown: share of the map's positive mass (share of the crop's area)
            print(f"  {map_caption(m)} regions: {breakdown_line(m.regions, top=len(REGIONS))}")
            if m.regions and m.regions["warning"]:
                print(f"  WARNING {map_caption(m)}: {m.regions['warning']}")
    print(f"wrote {', '.join(map(str, written))}")
    return 0


def _cmd_regions(args) -> int:
    import pandas as pd

    from ferx.analysis.figures import write_figure
    from ferx.analysis.regions import region_figure, region_shares, region_table
    from ferx.checkpoint import load_checkpoint
    from ferx.data.datasets import load_split, split_title
    from ferx.data.packed import pack_split
    from ferx.device import resolve_device

    distinct_checkpoints(args.checkpoints)
    if args.out:
        output_folder(args.out)
    packed = pack_split(load_split(args.dataset, args.split, args.data_root))
    dev = resolve_device(args.device)
    tables = []
    with terminal_progress() as progress:  # one line on stderr, where it is a terminal
        for i, path in enumerate(args.checkpoints):
            loaded = load_checkpoint(path, dev)
            shares = region_shares(loaded, packed, per_class=args.per_class or None, batch_size=args.batch_size,
                                   progress=lambda f, i=i, name=Path(path).name: progress(
                                       (i + f) / len(args.checkpoints), f"{name}: Grad-CAM and attention maps"))
            tables.append(region_table(shares))
    table = pd.concat(tables)
    pd.set_option("display.width", 200, "display.max_columns", 20)
    print(f"{split_title(packed.dataset, packed.split)}: mean share of each map's positive mass per facial region "
          f"(maps on {dev}; mean-face template; '(area)': the regions' area shares)\n{table.round(3).to_string()}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "regions.csv")
        write_figure(region_figure(table), out / "regions.html", shared_js=True)
        print(f"wrote {out / 'regions.csv'} and {out / 'regions.html'} (with plotly.min.js beside it)")
    return 0


def _cmd_occlude(args) -> int:
    from ferx.explain.occlusion import FILLS, occlude_face, occlusion_effect, occlusion_figure, read_masks
    from ferx.explain.report import open_model
    from ferx.faces import load_photo
    from ferx.text import plural

    distinct_checkpoints(args.model)
    out = None
    if args.out:  # --out x.png, x.json or x: x.json and x.png, neither over the other
        if Path(args.out).suffix.lower() not in ("", ".json", ".png"):
            raise ValueError(f"--out {args.out}: give a .json or .png path (both are written: "
                             f"{Path(args.out).stem}.json and {Path(args.out).stem}.png)")
        out = output_file(Path(args.out).with_suffix(".json"))
        output_file(out.with_suffix(".png"))
    photo = load_photo(args.photo)  # the photo and the mask before the models: they are quicker to refuse
    mask = read_masks([args.mask], photo.original_size, f"--mask {args.mask}")
    if not mask.any():
        print(f"warning: nothing painted: --mask {args.mask} has no pixel brighter than mid-grey (nor, with alpha, "
              "any pixel above alpha 0); the face is scored as it is", file=sys.stderr)
    models = [open_model(path, device=args.device) for path in args.model]
    print(f"{plural(len(models), 'model')} loaded on {models[0].device}")
    face = occlude_face(photo, mask, face=args.face, whole_image=args.whole_image, fill=args.fill)
    if face.note:  # a small image taken as an already-cropped face, as ferx explain says
        print(f"note: {face.note}")
    print(f"{face.covered:.0%} of face {args.face}'s crop painted over ({FILLS[args.fill]})")
    if mask.any() and not face.covered:
        print(f"warning: nothing painted over face {args.face}: --mask {args.mask} paints elsewhere in the photo",
              file=sys.stderr)
    effects, raw = [], []
    for em in models:
        effect = occlusion_effect(em.model, em.input_spec, em.classes, face)
        raw.append(effect)
        label, new = effect.classes[effect.label], effect.classes[int(effect.after.argmax())]
        print(f"{em.display}: {label} {effect.before[effect.label]:.3f} -> {effect.after[effect.label]:.3f} "
              f"({effect.change:+.3f}); top class now {new} {effect.after.max():.3f}")
        effects.append({"model": em.display, **effect.to_dict()})
    if out is not None:
        fig = occlusion_figure(face, raw, [em.display for em in models], title=f"{Path(args.photo).name}, face {args.face}")
        with written_together(out, out.with_suffix(".png")) as (numbers, png):  # both or neither
            numbers.write_text(json.dumps({"photo": Path(args.photo).name, "fill": args.fill,
                                           "covered": round(face.covered, 4), "models": effects}, indent=2) + "\n")
            fig.savefig(png, dpi=150)
        print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def _cmd_sanity(args) -> int:
    from ferx.explain.report import canonical_method, open_model, resolve_class
    from ferx.explain.sanity import DEFAULT_STEPS, applicable_methods, cascading_randomization, max_steps
    from ferx.faces import find_faces, load_photo

    out = figure_path(args.out, f"{Path(args.photo).stem}_sanity.png")
    output_files((out, out.with_suffix(".json")))
    loaded = open_model(args.model, device=args.device)
    print(f"{loaded.display} loaded on {loaded.device}")
    if args.steps and args.steps > max_steps(loaded.model):  # it was cut to the maximum, silently
        raise ValueError(f"--steps {args.steps}: {loaded.display} has {max_steps(loaded.model)} layers with weights, "
                         f"so at most {max_steps(loaded.model)} steps (one layer each)")
    methods = applicable_methods(loaded.model, [canonical_method(m) for m in args.method or ()],
                                 loaded.display)
    search = find_faces(load_photo(args.photo), whole_image=args.whole_image)
    if search.note:  # as ferx explain says it
        print(f"note: {search.note}")
    refuse_no_face(search, args.photo)
    face = search.faces[search.pick(args.face)]
    x = face.model_input(loaded.input_spec).to(loaded.device)
    with terminal_progress() as progress:
        check = cascading_randomization(loaded.model, x, methods, target=resolve_class(args.target, loaded.classes),
                                        n_steps=args.steps or DEFAULT_STEPS, seed=args.seed, name=loaded.display,
                                        classes=loaded.classes, progress=progress)
    with written_together(out, out.with_suffix(".json")) as (png, numbers):  # both or neither
        check.figure(face=face.crop, photo=Path(args.photo).name).savefig(png, dpi=130)
        numbers.write_text(json.dumps(check.to_dict(), indent=2) + "\n")
    table = check.spearman_table()
    print(f"{loaded.display}, class {check.target_label}: Spearman with the trained map as layers are randomised "
          f"from the head down (steps 1..{len(check.steps) - 1})")
    print(table.to_string())
    for name, flag in check.independent().items():
        print(f"{name}: mean rho {check.mean_similarity()[name]:.2f}: "
              f"{'DOES NOT depend on the model' if flag else 'depends on the model'}")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _cmd_app(args) -> int:
    from webapp.config import AppConfig

    overrides = {k: v for k, v in (("data_root", args.data_root), ("checkpoints", args.checkpoints),
                                   ("device", args.device), ("host", args.host), ("port", args.port)) if v is not None}
    # the $FERX_* settings are read and checked here, before gradio and the models load
    cfg = AppConfig(**{k: Path(v) if k in ("data_root", "checkpoints") else v for k, v in overrides.items()})
    from webapp.app import launch

    launch(cfg)
    return 0


class _RegistryHelp(argparse.HelpFormatter):
    """Fills ``{methods}`` with the registered explanation methods when help is shown (listing them
    imports torch, Captum and pytorch-grad-cam, which plain commands need not wait for)."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action)
        if "{methods}" in text:
            from ferx.explain.methods import method_help

            text = text.replace("{methods}", method_help())
        if "{cmaps}" in text or "{clip_percentile}" in text or "{alpha}" in text:
            from ferx.explain.overlay import ALPHA, CLIP_PERCENTILE, DEFAULT_CMAP, DEFAULT_SIGNED_CMAP

            text = (text.replace("{cmaps}", f"{DEFAULT_CMAP}, {DEFAULT_SIGNED_CMAP} for signed maps")
                    .replace("{clip_percentile}", f"{CLIP_PERCENTILE:g}").replace("{alpha}", f"{ALPHA:g}"))
        if "{baselines}" in text:
            from ferx.explain.attributions import BASELINES, DELETION_BASELINE

            text = text.replace("{baselines}", f"{', '.join(BASELINES)} (default: {DELETION_BASELINE})")
        if "{deletion_steps}" in text or "{random_maps}" in text or "{ig_steps}" in text:
            from ferx.explain.faithfulness import DELETION_STEPS, RANDOM_MAPS
            from ferx.explain.methods import MethodOptions

            def budget(counts):
                return f"{counts['small']}; {counts['large']} for Conv-cut-sized models"

            text = (text.replace("{deletion_steps}", budget(DELETION_STEPS)).replace("{random_maps}", budget(RANDOM_MAPS))
                    .replace("{ig_steps}", str(MethodOptions.ig_steps)))
        if "{sanity_" in text:  # the sanity check's defaults, declared beside it
            from ferx.explain.sanity import DEFAULT_METHODS, DEFAULT_STEPS

            text = text.replace("{sanity_methods}", ", ".join(DEFAULT_METHODS)).replace("{sanity_steps}",
                                                                                     str(DEFAULT_STEPS))
        return text


def _inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=256, help="faces per forward pass")  # ferx.inference.BATCH_SIZE (not imported: torch)
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--data-root", **DATA_ROOT)


def _face_options(parser: argparse.ArgumentParser) -> None:
    from ferx.data.datasets import FACE_CHOICES, FACES  # declared once, for the app's zip upload too
    from ferx.text import choices_text

    parser.add_argument("--faces", choices=list(FACES), default=next(iter(FACES)), help=choices_text(FACES))
    parser.add_argument("--face", choices=list(FACE_CHOICES), default=None,  # None: not given (faces_chosen)
                        help=f"with --faces detect: {choices_text(FACE_CHOICES)}")


def faces_chosen(args) -> None:
    """Refuse ``--face`` without ``--faces detect`` (it was ignored, silently), else fill in its default."""
    from ferx.data.datasets import FACE_CHOICES

    if args.face is not None and args.faces != "detect":
        raise ValueError(f"--face {args.face} chooses among the faces found in each photo: it applies only with "
                         f"--faces detect (--faces {args.faces} takes each image as one face)")
    args.face = args.face or next(iter(FACE_CHOICES))


def _precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",  # ferx.device.PRECISIONS
                        help="auto: bf16 autocast on CUDA; on a CPU with native bf16 (AVX512-BF16/AMX) only for a "
                             "checkpoint whose card shows bf16 agrees with fp32 (bench/bench_bf16.py --write-cards), "
                             "else fp32; the precision used is reported (and keys analyze's cache)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferx", description="Facial-expression-recognition analysis workbench")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = p.add_subparsers(dest="command", required=True)
    data_root = DATA_ROOT

    data = sub.add_parser("data", help="unpack and inspect datasets").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", help="unpack the ../shared/datasets archives into the data root")
    datasets = ", ".join(list_datasets())
    dataset_help = f"{datasets}, or a path to an image folder or zip"  # every command that reads a split
    prep.add_argument("names", nargs="*", help=f"{datasets} (default: all)")
    prep.add_argument("--source", default=None, help="folder holding the .tar archives (default: ../shared/datasets)")
    prep.add_argument("--data-root", **data_root)
    prep.set_defaults(func=_cmd_data_prepare)
    info = data.add_parser("info", help="image and class counts of a dataset's splits")
    info.add_argument("dataset", help=dataset_help)
    info.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="default: train val test")
    info.add_argument("--data-root", **data_root)
    info.set_defaults(func=_cmd_data_info)

    carry = data.add_parser("carry", help="pack splits into one lossless file for a machine without the datasets "
                                          "(ferx train --carried)")
    carry.add_argument("dataset")
    carry.add_argument("--splits", nargs="+", default=["train", "val"], help="default: train val")
    carry.add_argument("--out", required=True)
    carry.add_argument("--limit", type=positive_int, default=None, help="a fixed random subset of each split (dry runs)")
    carry.add_argument("--seed", type=int, default=0)
    carry.add_argument("--data-root", **data_root)
    carry.set_defaults(func=_cmd_data_carry)

    conv = sub.add_parser("convert", help="convert third-party weights into a ferx checkpoint")
    conv.add_argument("kind", choices=["mini-xception"])
    conv.add_argument("h5", help="Keras .hdf5 file")
    conv.add_argument("--out", default="checkpoints/mini_xception_fer2013",
                      help="checkpoint folder to write (default: %(default)s, from the current folder); one that "
                           "already holds files is refused unless --force")
    conv.add_argument("--force", action="store_true", help="replace what --out holds (a checkpoint's card and "
                      "recorded metrics included)")
    conv.set_defaults(func=_cmd_convert)

    tr = sub.add_parser("train", help="train a recipe; selects on the validation split only")
    tr.add_argument("--recipe", required=True, type=recipe_name, help="lanmsff, lanmsff_short, convcut or mini_xception")
    tr.add_argument("--dataset", required=True)
    tr.add_argument("--out", required=True, help="run folder (metrics.jsonl, state.pt, checkpoint/)")
    tr.add_argument("--checkpoint-dir", default=None, help="where to export the best checkpoint (default: OUT/checkpoint)")
    tr.add_argument("--epochs", type=positive_int, default=None)
    tr.add_argument("--batch-size", type=positive_int, default=None)
    tr.add_argument("--limit-train", type=positive_int, default=None,
                    help="random subset of the training split (smoke tests)")
    tr.add_argument("--limit-val", type=positive_int, default=None)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/state.pt (refused where there is none)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--time-budget", type=positive_number, default=None, metavar="MINUTES",
                    help="stop before an epoch that would not fit, export the best epoch so far, keep state for --resume")
    tr.add_argument("--fit-budget", action="store_true",
                    help="size the schedule to --time-budget after the first epochs (at most --epochs), so a cosine "
                         "schedule completes instead of being cut")
    tr.add_argument("--device", default="auto", help=DEVICE_HELP)
    tr.add_argument("--data-root", **data_root)
    tr.add_argument("--carried", default=None, metavar="FILE",
                    help="read the train and val splits from a carry file (ferx data carry) instead of the data root")
    tr.add_argument("--input-size", type=positive_int, default=None,
                    help="train at this input size instead of the model's (e.g. 112 for Conv-cut; the card records it)")
    tr.add_argument("--init-from", default=None, metavar="CHECKPOINT", type=checkpoint_folder,
                    help="start from this checkpoint's weights (same model; a folder or a name `ferx models` lists): "
                         "a further schedule for a run that ended "
                         "still improving, or a checkpoint with other labels (its classifier rows are taken by class "
                         "name); the card names it")
    tr.add_argument("--lr", type=positive_number, default=None, help="peak learning rate instead of the recipe's")
    tr.add_argument("--warmup-epochs", type=non_negative_number, default=None, metavar="EPOCHS",
                    help="linear warm-up before the cosine instead of the recipe's, cosine recipes only (e.g. 0.25 for a "
                         "further schedule from trained weights)")
    tr.add_argument("--ema-decay", type=fraction, default=None, metavar="DECAY",
                    help="keep a moving average of the weights (e.g. 0.998) and validate, select and export it "
                         "instead of the last weights; each epoch also logs the raw weights' val accuracy")
    tr.add_argument("--augment", default=None,
                    help="augmentation instead of the recipe's: the authors' 4x (lanmsff), crop/rotate/flip/erase (strong), "
                         "horizontal mirror only (mirror: e.g. a last schedule at the scale faces are tested at), none")
    tr.add_argument("--soft-labels", action=argparse.BooleanOptionalAction, default=None,
                    help="train on FERPlus's vote distributions (or, with --no-soft-labels, the majority class) "
                         "instead of what the recipe says")
    tr.add_argument("--backbone-weights", default=None, metavar="FILE",
                    help="start Conv-cut's ConvNeXt-Base from these ImageNet weights (a convnext_base state dict, "
                         ".safetensors or .pth, e.g. timm's convnext_base.fb_in22k_ft_in1k), or 'hub' where the "
                         "Hugging Face hub answers; the card names the file and its sha256")
    tr.add_argument("--head-epochs", type=non_negative_int, default=None, metavar="N",
                    help="train the head alone for the first N epochs (the pre-trained backbone frozen, dropout 0.1), "
                         "then the whole model (dropout 0.2), as models.md describes Conv-cut's (N at least --epochs: "
                         "the backbone stays frozen throughout, as in the paper); needs --backbone-weights or --init-from")
    tr.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="auto: bf16 autocast on CUDA, fp32 on CPU; bf16 also on a CPU with native bf16 "
                         "(AVX512-BF16 or AMX; refused elsewhere, where it is emulated and slower); validation runs alike")
    tr.add_argument("--export-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                    help="dtype of the exported weights (float16 halves a large model; loading upcasts)")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="accuracy, macro-F1, per-class metrics, confusion matrix and ECE as JSON")
    ev.add_argument("checkpoint", type=checkpoint_folder, help=CHECKPOINT_HELP)
    ev.add_argument("--dataset", required=True, help=dataset_help)
    ev.add_argument("--split", default="test", help="train, val or test (default: %(default)s; a folder without split folders: all)")
    ev.add_argument("--limit", type=positive_int, default=None,
                    help="score only N images spread evenly over the split (a fixed slice with every class)")
    ev.add_argument("--out", default=None, help="write the JSON here (default: print it)")
    ev.add_argument("--update-card", action="store_true", help="record the result on the checkpoint's card")
    _inference_options(ev)
    _face_options(ev)
    _precision_option(ev)
    ev.set_defaults(func=_cmd_evaluate)

    an = sub.add_parser("analyze", help="metrics, confusion matrices, calibration, embeddings and failure cases")
    an.add_argument("checkpoints", nargs="+", type=checkpoint_folder, help=f"one or more: {CHECKPOINT_HELP}")
    an.add_argument("--dataset", required=True, help=dataset_help)
    an.add_argument("--split", default="test", help="default: %(default)s (a folder without split folders: all)")
    an.add_argument("--calibrate", action="store_true", help="fit a temperature on the val split and apply it")
    an.add_argument("--embeddings", nargs="*", default=["pca"], choices=["pca", "tsne", "umap"],
                    help="2-D projections to draw (cached); default: pca")
    an.add_argument("--color-by", default="true",
                    help="colour the embeddings by true, pred, correct, confidence or disagreement (with the other "
                         "models)")
    an.add_argument("--top", type=positive_int, default=10, help="failure cases listed per ranking")
    an.add_argument("--attention", type=non_negative_int, default=0, metavar="N",
                    help="is attention an explanation? deletion/insertion of each native map vs Grad-CAM vs random "
                         "maps on N evenly spaced faces, for the models with native maps (cached; ~8 s per face and "
                         "model on 2 CPU cores the first time); default 0: off")
    an.add_argument("--disagreement", type=non_negative_int, default=0, metavar="N",
                    help="for each pair of models, Grad-CAM map agreement on N faces per true class and on the faces "
                         "they disagree on (cached); default 0: off")
    an.add_argument("--out", default=None, help="folder for CSV tables and figures")
    an.add_argument("--format", nargs="+", default=["html"], choices=["html", "png"],
                    help="figure files (default: html; png needs Chrome or Chromium)")
    _inference_options(an)
    _face_options(an)
    _precision_option(an)
    an.set_defaults(func=_cmd_analyze)

    rg = sub.add_parser("regions", help="facial-region breakdown of Grad-CAM and native attention per model and "
                        "true class (mean-face template)")
    rg.add_argument("checkpoints", nargs="+", type=checkpoint_folder, help=f"one or more: {CHECKPOINT_HELP}")
    rg.add_argument("--dataset", required=True, help=dataset_help)
    rg.add_argument("--split", default="test", help="default: %(default)s (a folder without split folders: all)")
    rg.add_argument("--per-class", type=non_negative_int, default=100, help="faces per true class (the first in split order; 0: all; default: %(default)s)")
    rg.add_argument("--out", default=None, help="folder for regions.csv and regions.html")
    _inference_options(rg)
    rg.set_defaults(func=_cmd_regions, batch_size=64)

    bu = sub.add_parser("bundle", help="precompute a Dataset-tab bundle (faces, runs, projections) for a Space")
    bu.add_argument("checkpoints", nargs="+", type=checkpoint_folder, help=f"one or more: {CHECKPOINT_HELP}")
    bu.add_argument("--dataset", required=True, help=dataset_help)
    bu.add_argument("--split", default="test")
    bu.add_argument("--out", default="spaces/bundle",
                    help="bundle folder (default: %(default)s, from the current folder); a split already in it is replaced")
    bu.add_argument("--embeddings", nargs="*", default=["pca", "tsne", "umap"], choices=["pca", "tsne", "umap"],
                    help="2-D projections to precompute (default: all three)")
    bu.add_argument("--data-root", **data_root)
    bu.set_defaults(func=_cmd_bundle)

    mo = sub.add_parser("models", help="registered architectures and available checkpoints")
    mo.add_argument("--checkpoints", default=None, help="default: $FERX_CHECKPOINTS, else the project's checkpoints/")
    mo.set_defaults(func=_cmd_models)

    from ferx.faces import DEFAULT_MARGIN, MARGINS  # light: no torch, no OpenCV until a photo is read

    ex = sub.add_parser("explain", help="explain a photo: faces, maps and faithfulness as a PNG panel and JSON",
                        formatter_class=_RegistryHelp)
    ex.add_argument("photo", help=PHOTO_HELP)
    ex.add_argument("--model", action="append", required=True,
                    help=f"{CHECKPOINT_HELP}, or a registry name with --untrained; repeat for several models")
    ex.add_argument("--untrained", action="store_true",
                    help="build registry names with random weights (outputs are labelled UNTRAINED)")
    ex.add_argument("--method", action="append", default=None,
                    help=f"{{methods}}; repeat for several (default: {' and '.join(EXPLAIN_METHODS)})")
    ex.add_argument("--target", default=None,
                    help="class to explain, by name (every model) or index (default: each model's prediction)")
    ex.add_argument("--contrast", default=None, help="explain --target over this class")
    ex.add_argument("--face", type=int, default=0, help=FACE_HELP)
    ex.add_argument("--whole-image", action="store_true", help=WHOLE_IMAGE_HELP)
    ex.add_argument("--margin", type=crop_margin, default=DEFAULT_MARGIN,
                    help=f"crop margin, a fraction of the face box per side, {MARGINS[0]:g} to {MARGINS[1]:g} "
                         f"(default {DEFAULT_MARGIN:g})")
    ex.add_argument("--align", action="store_true", help="rotate the face crop so the eyes are level (off by default: "
                    "bench/bench_alignment.py measured it does not help)")
    ex.add_argument("--scale", choices=["per-map", "shared"], default="per-map",  # ferx.explain.overlay.SCALES
                    help="colour scale per map, or shared by each method across models")
    ex.add_argument("--clip-percentile", type=percentile, default=None,  # None: ferx.explain.overlay's default
                    help="the colour scale's top: this percentile of the map's values (default {clip_percentile})")
    ex.add_argument("--alpha", type=fraction, default=None, help="map opacity, 0 to 1 (default {alpha})")
    ex.add_argument("--cmap", default=None, help="matplotlib colormap (default: {cmaps})")
    ex.add_argument("--baseline", default=None,
                    help="what deleted pixels become in the deletion/insertion test: {baselines}")
    ex.add_argument("--deletion-steps", type=positive_int, default=None,
                    help="deletion/insertion steps (default {deletion_steps})")
    ex.add_argument("--random-maps", type=non_negative_int, default=None,
                    help="random maps the deletion/insertion scores are compared with (default {random_maps}; 0: "
                         "no comparison)")
    ex.add_argument("--ig-steps", type=positive_int, default=None, help="Integrated Gradients path points (default {ig_steps})")
    ex.add_argument("--no-faithfulness", action="store_true", help="skip deletion/insertion (faster)")
    ex.add_argument("--out", default=None, help="PNG path (default: PHOTO_explain.png here); the JSON goes beside it")
    ex.add_argument("--card", action="store_true", help="an explanation card instead of the panel: the panel plus "
                    "method parameters, checkpoint sha256s and library versions, as PNG, PDF and JSON "
                    "(--out a .png path; default name PHOTO_card.png)")
    ex.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    ex.add_argument("--device", default="auto", help=DEVICE_HELP)
    ex.set_defaults(func=_cmd_explain)

    sa = sub.add_parser("sanity", help="sanity check of the maps: randomise the model from the head down and see "
                        "which maps change (Adebayo et al. 2018)", formatter_class=_RegistryHelp)
    sa.add_argument("photo", help=PHOTO_HELP)
    sa.add_argument("--model", required=True, help=CHECKPOINT_HELP)
    sa.add_argument("--method", action="append", default=None,
                    help="{methods}; repeat for several (default: {sanity_methods}; native only where the model has it)")
    sa.add_argument("--target", default=None, help="class to explain (default: the trained model's prediction)")
    sa.add_argument("--steps", type=positive_int, default=None,
                    help="groups of layers randomised one after another (default: {sanity_steps}; at most the model's "
                         "layers with weights)")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--face", type=int, default=0, help=FACE_HELP)
    sa.add_argument("--whole-image", action="store_true", help=WHOLE_IMAGE_HELP)
    sa.add_argument("--out", default=None, help="PNG path (default: PHOTO_sanity.png here); the JSON goes beside it")
    sa.add_argument("--device", default="auto", help=DEVICE_HELP)
    sa.set_defaults(func=_cmd_sanity)

    oc = sub.add_parser("occlude", help="occlusion brush: fill the painted pixels of a photo and see each model's "
                        "probabilities change")
    oc.add_argument("photo", help=PHOTO_HELP)
    oc.add_argument("--mask", required=True, help="an image of the photo's size: painted where its alpha is above 0, "
                    "or (no alpha) where it is brighter than mid-grey")
    oc.add_argument("--model", action="append", required=True, help=f"{CHECKPOINT_HELP}; repeat for several")
    oc.add_argument("--fill", default="blur", choices=["blur", "mean", "black"],  # ferx.explain.occlusion.FILLS
                    help="what painted pixels become: blur, mean (grey) or black")
    oc.add_argument("--face", type=int, default=0, help="which face (0 = the most face-like)")
    oc.add_argument("--whole-image", action="store_true", help=WHOLE_IMAGE_HELP)
    oc.add_argument("--out", default=None, help="JSON path (.json; x.png or x says the same: x.json) for every model's "
                    "probabilities before and after; a PNG of the face before and after and the probabilities goes "
                    "beside it")
    oc.add_argument("--device", default="auto", help=DEVICE_HELP)
    oc.set_defaults(func=_cmd_occlude)

    app = sub.add_parser("app", help="the Gradio web UI (defaults from $FERX_* environment variables)")
    app.add_argument("--data-root", **DATA_ROOT)
    app.add_argument("--checkpoints", default=None,
                     help="checkpoint folder (default: $FERX_CHECKPOINTS, else the project's checkpoints/)")
    from webapp.config import setting_text  # light: the defaults as $FERX_DEVICE, $FERX_HOST, $FERX_PORT say

    app.add_argument("--device", default=None, help=f"auto, cpu or cuda (default: {setting_text('device')})")
    app.add_argument("--host", default=None, help=f"default {setting_text('host')}; 0.0.0.0 to serve the network")
    app.add_argument("--port", type=port_number, default=None, help=f"default {setting_text('port')}")
    app.set_defaults(func=_cmd_app)
    _say_defaults(p)
    return p


def _say_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option that takes a value and has a default says it in its help (where the help does not already)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _say_defaults(sub)
        elif (action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS)
              and "default" not in (action.help or "")):
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # ferx's own messages at INFO; third-party libraries (kaleido, numba ...) only when they warn
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ferx").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if getattr(args, "source", "unset") is None:
        from ferx.data.prepare import DEFAULT_SOURCE
        args.source = DEFAULT_SOURCE
    command = " ".join(c for c in (args.command, getattr(args, "data_command", None)) if c)  # ferx data carry
    try:
        return args.func(args)
    except (ValueError, OSError, KeyError, RuntimeError) as err:  # user errors (a read-only folder too): one line
        if args.verbose:
            raise
        print(f"ferx {command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C printed 88 lines of traceback, ending inside torch's F.linear
        if args.verbose:
            raise
        print(f"ferx {command}: stopped (Ctrl-C){STOPPED.get(command, '')}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it


# what a command stopped midway keeps (every cache entry is whole or absent: ferx.cache)
STOPPED = {"train": "; the same command with --resume goes on from its last finished epoch (--out's state.pt), if "
                    "one finished"}


if __name__ == "__main__":
    sys.exit(main())
