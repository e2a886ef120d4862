import json
import math
import re

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from ferx.analysis.metrics import classification_metrics, expected_calibration_error
from ferx.checkpoint import read_card
from ferx.cli import main
from ferx.evaluate import evaluate_checkpoint, summary_line
from ferx.train import train

from conftest import CHECKPOINTS, DEVICE

MINI = CHECKPOINTS / "mini_xception_fer2013"


def test_mini_xception_port_scores_on_the_whole_fer2013_private_test(data_root):
    result = evaluate_checkpoint(MINI, "fer2013", "test", data_root, device=DEVICE, progress=False)
    assert result["n"] == 3_589 and result["n_excluded"] == 0
    assert result["accuracy"] >= 0.60  # a correct port gives ~0.609
    card_entry = next(m for m in read_card(MINI)["metrics"] if (m["dataset"], m["split"]) == ("fer2013", "test"))
    assert abs(result["accuracy"] - card_entry["accuracy"]) < 0.005
    assert np.sum(result["confusion_matrix"]) == 3_589
    # the card's quick re-check: 500 faces spread over the split (its files are ordered by class), not the first 500
    assert result["check_slice"]["n"] == 500
    assert abs(result["check_slice"]["accuracy"] - card_entry["check_slice"]["accuracy"]) < 0.005


def test_seven_class_model_on_ferplus_excludes_contempt(data_root):
    result = evaluate_checkpoint(MINI, "ferplus", "test", data_root, device=DEVICE, progress=False)
    assert result["n_excluded"] == 27 and result["n"] == 3_371 - 27
    assert result["accuracy"] > 0.6


def test_a_class_the_data_lacks_does_not_count_in_macro_f1(data_root):
    """CK+ has no neutral face: a 7-class FER-2013 model's macro-F1 there averages the 6 classes it has,
    and the summary says so rather than printing a recall of 0 for a class with no faces."""
    result = evaluate_checkpoint(MINI, "ckplus", "test", data_root, device=DEVICE, progress=False)
    assert result["per_class"]["neutral"]["support"] == 0
    cm = np.asarray(result["confusion_matrix"])
    f1s = [2 * cm[i, i] / (cm[i].sum() + cm[:, i].sum()) if cm[i].sum() + cm[:, i].sum() else 0.0
           for i in range(len(cm)) if cm[i].sum()]
    assert len(f1s) == 6 and result["macro_f1_classes"] == 6
    assert result["macro_f1"] == pytest.approx(np.mean(f1s))
    text = summary_line(result)
    assert "over the 6 classes with faces" in text and "neutral — (no faces)" in text
    # in the JSON a value with nothing to measure is null, not a score of 0
    neutral = json.loads(json.dumps(result["per_class"]["neutral"]))
    assert neutral["recall"] is None and neutral["f1"] is None
    predicted = cm[:, result["classes"].index("neutral")].sum()  # faces the model called neutral: all wrong
    assert neutral["precision"] == (0.0 if predicted else None)


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=500)
    y = rng.integers(0, 7, 500)
    m = classification_metrics(y, probs, [str(i) for i in range(7)])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))
    assert m["macro_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert sum(c["support"] for c in m["per_class"].values()) == 500
    # a perfectly confident, always-right model is perfectly calibrated; always-wrong is maximally not
    onehot = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(onehot, np.array([0, 1, 2, 1])) == 0.0
    assert expected_calibration_error(onehot, np.array([1, 2, 0, 0])) == pytest.approx(1.0)


def test_short_real_training_lowers_the_loss_and_resumes(data_root, tmp_path):
    """The LANMSFF recipe on 256 real FER-2013 faces: one epoch, then resumed for a second."""
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=256, limit_val=128, progress=False)
    first = train("lanmsff", "fer2013", tmp_path / "run", epochs=1, **kwargs)
    assert first["epochs_run"] == 1
    resumed = train("lanmsff", "fer2013", tmp_path / "run", epochs=2, resume=True, **kwargs)
    losses = [row["train_loss"] for row in resumed["history"]]
    assert resumed["epochs_run"] == 2 and len(losses) == 2
    assert losses[1] < losses[0]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    card = read_card(resumed["checkpoint"])
    assert card["data"]["val_split"] == "val" and "test split was not used" in card["selection"]
    assert card["data"]["train_images"] == 256 and card["wall_time_s"] > 0 and card["parameters"] == 356_294


def test_a_save_cut_short_keeps_the_run_it_would_have_replaced(data_root, tmp_path):
    """A disk that fills while an epoch's state.pt is written (here: at most 400 kB a file, RLIMIT_FSIZE; state.pt
    is 758 kB) truncated state.pt in place, saying 'unexpected pos 395584 vs 395476': the run was lost, and --resume
    said only 'PytorchStreamReader failed reading zip archive: failed finding central directory', naming no file. The last whole state.pt stays now, the
    next --resume goes on from it, metrics.jsonl holds each epoch once, and a damaged state.pt is named. What a run
    killed while saving left under a temporary name (nothing reads it; 600 MB for Conv-cut) the next run removes."""
    import resource

    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=32, progress=False)
    run = tmp_path / "run"
    train("mini_xception", "ckplus", run, epochs=1, **kwargs)
    state = (run / "state.pt").read_bytes()
    assert len(state) > 400_000
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, hard))  # Python ignores SIGXFSZ: a write fails with EFBIG
    try:
        with pytest.raises(OSError, match=rf"state.pt in {re.escape(str(run))} could not be written in full"):
            train("mini_xception", "ckplus", run, epochs=2, resume=True, **kwargs)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert (run / "state.pt").read_bytes() == state
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "checkpoint", "metrics.jsonl", "state.pt"]
    resumed = train("mini_xception", "ckplus", run, epochs=2, resume=True, **kwargs)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    # a run killed (SIGKILL) while it saved left its temporary files, which nothing reads: the next run removes them
    half = [run / "state.3f2a9c41d0e7.tmp.pt", run / "checkpoint" / "model.0b1c2d3e4f5a.tmp.safetensors"]
    for path in half:
        path.write_bytes(state[:1000])
    train("mini_xception", "ckplus", run, epochs=3, resume=True, **kwargs)
    assert not any(path.exists() for path in half)
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "checkpoint", "metrics.jsonl", "state.pt"]
    state = (run / "state.pt").read_bytes()

    (run / "state.pt").write_bytes(state[:300_000])  # cut short by something else (a copy, a crash of the disk)
    with pytest.raises(ValueError, match=rf"state.pt in {re.escape(str(run))} is damaged and cannot be read"):
        train("mini_xception", "ckplus", run, epochs=4, resume=True, **kwargs)


def test_ctrl_c_stops_a_run_in_one_line_and_resume_goes_on(data_root, tmp_path):
    """Ctrl-C during a ferx command printed 88 lines of traceback (ending inside torch's F.linear) and exit status -2.
    One line now, 130 as a shell reports it; a training run stopped so goes on with --resume."""
    import signal
    import subprocess
    import sys

    argv = ["train", "--recipe", "mini_xception", "--dataset", "ckplus", "--data-root", str(data_root), "--out",
            str(tmp_path / "run"), "--device", DEVICE, "--limit-train", "64", "--limit-val", "32", "--epochs", "50"]
    # unbuffered: through a pipe the epoch lines came in one block when the run ended (all 50 epochs, exit 0)
    # SIGINT at its default: a job started in the background (`cmd &`, as a CI may run the suite) inherits it
    # ignored, and Python then installs no Ctrl-C handler (the run went on to its 50th epoch, exit 0)
    run = subprocess.Popen([sys.executable, "-u", "-m", "ferx", *argv], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in run.stdout:  # stopped after its first epoch was saved, in a later one
        if line.startswith("epoch 1:"):
            break
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130
    assert err.strip().splitlines()[-1].split("\r")[-1] == (
        "ferx train: stopped (Ctrl-C); the same command with --resume goes on from its last finished epoch (--out's "
        "state.pt), if one finished")
    finished = len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines())  # 1, or more on a slow machine
    assert 1 <= finished < 50
    resumed = train("mini_xception", "ckplus", tmp_path / "run", data_root=data_root, device=DEVICE, limit_train=64,
                    limit_val=32, progress=False, epochs=finished + 2, resume=True)
    assert [r["epoch"] for r in resumed["history"]] == list(range(1, finished + 3))


def test_a_new_run_never_overwrites_an_earlier_run_or_a_checkpoint(data_root, tmp_path, capsys):
    """``ferx train --out`` a folder holding a run, without --resume, replaced its state.pt, best.pt and
    checkpoint and appended the new run's epochs to its metrics.jsonl (epochs 1, 2, 1); ``--checkpoint-dir`` a
    checkpoint folder replaced that checkpoint and the metrics on its card. Both are refused before any work."""
    import shutil

    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=32, progress=False)
    train("mini_xception", "ckplus", tmp_path / "run", epochs=1, **kwargs)
    state = (tmp_path / "run" / "state.pt").read_bytes()
    card = (tmp_path / "run" / "checkpoint" / "card.json").read_text()
    with pytest.raises(ValueError, match=r"already holds a run \(state.pt, best.pt, metrics.jsonl\): pass --resume"):
        train("mini_xception", "ckplus", tmp_path / "run", epochs=1, seed=3, **kwargs)
    assert (tmp_path / "run" / "state.pt").read_bytes() == state
    assert (tmp_path / "run" / "checkpoint" / "card.json").read_text() == card
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1

    shipped = tmp_path / "mini_xception_fer2013"
    shutil.copytree(MINI, shipped)
    before = (shipped / "card.json").read_text()
    assert main(["train", "--recipe", "mini_xception", "--dataset", "ckplus", "--data-root", str(data_root),
                 "--out", str(tmp_path / "other"), "--checkpoint-dir", str(shipped), "--epochs", "1",
                 "--limit-train", "64", "--limit-val", "32"]) == 1
    err = capsys.readouterr().err
    assert f"{shipped} already holds a checkpoint" in err and "choose another --checkpoint-dir" in err
    assert (shipped / "card.json").read_text() == before and not (tmp_path / "other").exists()


def test_the_device_auto_chose_is_said_by_train_evaluate_analyze_and_regions(data_root, tmp_path, capsys):
    """--device auto (the default) ran on CUDA or the CPU without a word: train's epochs, evaluate's summary, analyze's
    and regions' tables did not say which (only evaluate's JSON and the card did)."""
    from ferx.device import resolve_device

    used = str(resolve_device("auto"))
    root = ["--data-root", str(data_root)]
    assert main(["train", "--recipe", "mini_xception", "--dataset", "ckplus", "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--limit-train", "32", "--limit-val", "16", *root]) == 0
    out = capsys.readouterr().out
    assert f"training mini_xception (mini_xception recipe) on {used}: " in out
    assert "; 32 training and 16 validation faces" in out
    assert main(["evaluate", str(MINI), "--dataset", "ckplus", "--limit", "20", *root]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["device"] == used and f"% (fp32 on {used})" in printed.err
    assert main(["analyze", str(MINI), "--dataset", "ckplus", "--top", "1", *root]) == 0
    assert re.search(rf"^ckplus/test: 144 faces \(mini_xception_fer2013: fp32, \w+\) on {used}$",
                     capsys.readouterr().out, re.M)
    assert main(["regions", str(MINI), "--dataset", "ckplus", "--per-class", "1", *root]) == 0
    assert f"(maps on {used}; mean-face template" in capsys.readouterr().out


def test_train_on_a_folder_of_ones_own_says_how_to_measure_it_without_update_card(data_root, tmp_path, capsys):
    """Trained on a folder of one's own, ferx train said to run `ferx evaluate ... --dataset FOLDER --split test
    --update-card`, which refuses (only registered datasets go on a card), and of a folder without test/ the split
    'test' falls back to all its faces, those it trained on. It names the folder's test split, or none."""
    from PIL import Image

    from ferx.data import load_split, pack_split

    packed = pack_split(load_split("ckplus", "test", data_root), progress=False)
    folder = tmp_path / "mine"
    for k, split in enumerate(("train", "val", "test")):  # every class in each (the split is ordered by class)
        for i in range(k, len(packed), 3):
            path = folder / split / packed.classes[packed.targets[i]] / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(packed.images[i]).save(path)
    argv = ["train", "--recipe", "mini_xception", "--epochs", "1", "--device", DEVICE]
    assert main([*argv, "--dataset", str(folder), "--out", str(tmp_path / "a")]) == 0
    hint = capsys.readouterr().out.splitlines()[-1]
    assert hint == f"measure it with: ferx evaluate {tmp_path / 'a' / 'checkpoint'} --dataset {folder} --split test"
    assert main(["evaluate", hint.split()[5], "--dataset", str(folder), "--split", "test"]) == 0  # as it says
    capsys.readouterr()
    for face in (folder / "test").rglob("*.png"):
        face.unlink()
    for empty in sorted((folder / "test").rglob("*"), reverse=True):
        empty.rmdir()
    (folder / "test").rmdir()
    assert main([*argv, "--dataset", str(folder), "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("checkpoint --dataset FACES_IT_DID_NOT_TRAIN_ON")


def test_evaluate_update_card_keeps_stdout_the_json_alone(data_root, tmp_path, capsys):
    """Without --out, stdout is only the JSON (for a pipe), the rest on stderr: --update-card printed 'recorded on the
    card of ...' on stdout after the JSON, which a JSON reader then refused ('Extra data')."""
    import shutil

    ckpt = tmp_path / "mini"
    shutil.copytree(MINI, ckpt)
    assert main(["evaluate", str(ckpt), "--dataset", "ckplus", "--split", "test", "--update-card",
                 "--data-root", str(data_root)]) == 0
    printed = capsys.readouterr()
    result = json.loads(printed.out)
    assert f"recorded on the card of {ckpt}" in printed.err
    recorded = next(m for m in read_card(ckpt)["metrics"] if (m["dataset"], m["split"]) == ("ckplus", "test"))
    assert recorded["accuracy"] == result["accuracy"] and recorded["n"] == 138


def test_a_card_that_cannot_be_written_in_full_stays_as_it_was(data_root, tmp_path, capsys):
    """--update-card on a full disk (here at most 8,192 bytes a file, RLIMIT_FSIZE; the card grows from 7,463 to
    ~10,000) wrote card.json in place: it was left cut at 8,192 bytes, the checkpoint unusable ('card.json is not
    valid JSON') and the error, '[Errno 27] File too large', named no file. The card and its README stay whole now,
    the error names card.json, and the next --update-card records the result."""
    import resource
    import shutil

    ckpt = tmp_path / "mini"
    shutil.copytree(MINI, ckpt)
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    argv = ["evaluate", str(ckpt), "--dataset", "ckplus", "--split", "test", "--update-card", "--data-root",
            str(data_root)]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, hard))  # Python ignores SIGXFSZ: a write fails with EFBIG
    try:
        assert main(argv) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert {p.name: len(p.read_bytes()) for p in ckpt.iterdir()} == {n: len(b) for n, b in before.items()}
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before  # no half card, no temporary file
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"ferx evaluate: error: [Errno 27] File too large: '{ckpt / 'card.json'}'"
    assert main(argv) == 0
    assert [m["n"] for m in read_card(ckpt)["metrics"] if (m["dataset"], m["split"]) == ("ckplus", "test")] == [138]
    assert "ckplus" in (ckpt / "README.md").read_text().lower()


def test_a_cards_entry_is_replaced_per_split_and_the_other_splits_of_its_dataset_stay(data_root, tmp_path):
    """Recording CK+ test on a card that holds CK+ validation replaces only CK+ test: the validation entry, and the
    FER-2013 and FERPlus ones shipped with the model, stay as they were. (Replacing every entry of the dataset
    passed the suite.)"""
    import shutil

    from ferx.evaluate import record_on_card

    ckpt = tmp_path / "mini"
    shutil.copytree(MINI, ckpt)
    shipped = read_card(ckpt)["metrics"]
    val = evaluate_checkpoint(ckpt, "ckplus", "val", data_root, device=DEVICE, progress=False)
    record_on_card(ckpt, val)
    test = evaluate_checkpoint(ckpt, "ckplus", "test", data_root, device=DEVICE, progress=False)
    record_on_card(ckpt, test)
    record_on_card(ckpt, test)  # measured again: still one entry of it
    metrics = read_card(ckpt)["metrics"]
    assert [(m["dataset"], m["split"]) for m in metrics] == \
        [(m["dataset"], m["split"]) for m in shipped] + [("ckplus", "val"), ("ckplus", "test")]
    assert metrics[:len(shipped)] == shipped
    fingerprints = [m["dataset_fingerprint"] for m in metrics[-2:]]
    assert fingerprints == [val["dataset_fingerprint"], test["dataset_fingerprint"]] and len(set(fingerprints)) == 2


def test_a_further_schedule_starts_from_a_checkpoints_weights(data_root, tmp_path):
    """--init-from: training starts where the shipped mini-Xception is (its validation accuracy, not a random
    network's), the card names the checkpoint it started from; another model's checkpoint is refused."""
    from ferx.checkpoint import CheckpointError, load_checkpoint

    shipped = CHECKPOINTS / "mini_xception_fer2013"
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=256, progress=False)
    further = train("mini_xception", "fer2013", tmp_path / "further", epochs=1, init_from=shipped, lr=1e-5,
                    **kwargs)
    scratch = train("mini_xception", "fer2013", tmp_path / "scratch", epochs=1, lr=1e-5, **kwargs)
    assert further["best_val_acc"] > 0.5 > scratch["best_val_acc"]
    card = read_card(further["checkpoint"])
    assert card["initialised_from"]["checkpoint"] == "mini_xception_fer2013" and card["recipe"]["lr"] == 1e-5
    assert card["initialised_from"]["checkpoint_sha256"] == load_checkpoint(shipped).sha256
    with pytest.raises(CheckpointError, match="not 'lanmsff'"):
        train("lanmsff", "fer2013", tmp_path / "wrong", epochs=1, init_from=shipped, **kwargs)
    assert not (tmp_path / "wrong").exists()  # refused from its card, before any data is packed
    # resuming takes the weights from state.pt: a run started elsewhere is refused, not silently continued
    with pytest.raises(ValueError, match="was started from random weights, not from"):
        train("mini_xception", "fer2013", tmp_path / "scratch", epochs=2, init_from=shipped, resume=True, **kwargs)
    resumed = train("mini_xception", "fer2013", tmp_path / "further", epochs=2, init_from=shipped, resume=True,
                    lr=1e-5, **kwargs)
    assert resumed["epochs_run"] == 2 and read_card(resumed["checkpoint"])["initialised_from"] == card["initialised_from"]


def test_a_moving_average_of_the_weights_is_what_is_validated_selected_and_exported(data_root, tmp_path):
    """--ema-decay: with a decay of 1 the average never leaves the start, so the exported weights are the shipped
    ones although the raw weights trained at a high learning rate; with a decay near 0 the average follows the
    raw weights step by step. Each epoch logs the raw weights' accuracy too; state.pt keeps the average, and a
    resumed run goes on with the decay it began with (another decay is refused)."""
    import torch

    from ferx.checkpoint import load_checkpoint

    shipped = CHECKPOINTS / "mini_xception_fer2013"
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=256, progress=False, lr=1e-2,
                  init_from=shipped)
    run = train("mini_xception", "fer2013", tmp_path / "still", epochs=1, ema_decay=1.0, **kwargs)
    row = run["history"][0]
    assert row["raw_val_acc"] < row["val_acc"] - 0.05  # lr 1e-2 on 64 faces wrecks the raw weights, not the average
    card = read_card(run["checkpoint"])
    assert card["recipe"]["ema_decay"] == 1.0 and "moving average" in card["selection"]
    exported, start = load_checkpoint(run["checkpoint"]).model.state_dict(), load_checkpoint(shipped).model.state_dict()
    for name, tensor in start.items():
        if tensor.is_floating_point():  # integer buffers (batch counts) are copied, not averaged
            torch.testing.assert_close(exported[name], tensor.to(exported[name]), msg=name)
    saved = torch.load(tmp_path / "still" / "state.pt", weights_only=True)
    assert not torch.equal(saved["model"]["classifier.weight"], saved["ema"]["classifier.weight"])

    follow = train("mini_xception", "fer2013", tmp_path / "follow", epochs=1, ema_decay=1e-9, **kwargs)
    assert follow["history"][0]["val_acc"] == pytest.approx(follow["history"][0]["raw_val_acc"], abs=1 / 256)
    raw = torch.load(tmp_path / "follow" / "state.pt", weights_only=True)["model"]
    exported = load_checkpoint(follow["checkpoint"]).model.state_dict()
    torch.testing.assert_close(exported["classifier.weight"], raw["classifier.weight"].contiguous(), atol=1e-6, rtol=0)

    resumed = train("mini_xception", "fer2013", tmp_path / "still", epochs=2, resume=True, **kwargs)  # its decay
    assert resumed["history"][1]["val_acc"] == pytest.approx(row["val_acc"])
    assert read_card(resumed["checkpoint"])["recipe"]["ema_decay"] == 1.0
    with pytest.raises(ValueError, match="was started with --ema-decay 1.0, not 0.5"):
        train("mini_xception", "fer2013", tmp_path / "still", epochs=3, resume=True, ema_decay=0.5, **kwargs)
    train("mini_xception", "fer2013", tmp_path / "plain", epochs=1, **kwargs)
    with pytest.raises(ValueError, match="was started with no --ema-decay, not 0.99"):
        train("mini_xception", "fer2013", tmp_path / "plain", epochs=2, resume=True, ema_decay=0.99, **kwargs)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        train("mini_xception", "fer2013", tmp_path / "bad", epochs=1, ema_decay=1.5, **kwargs)


def test_mirror_augmentation_shows_each_face_or_its_mirror_and_nothing_else(data_root, tmp_path, monkeypatch):
    """--augment mirror (a last schedule at the scale faces are tested at): every training image is the face
    itself or its exact mirror, both occur; the run trains with it (a resumed call too, which refuses another
    augmentation or learning rate), the card's recipe says so, a wrong name is refused with the list of names."""
    import torch

    from ferx.train import AUGMENTS

    x = torch.rand(256, 1, 8, 8)
    out = AUGMENTS["mirror"](x, torch.Generator().manual_seed(0))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 80 < int(mirrored.sum()) < 176 and 80 < int(same.sum()) < 176

    seen = []
    mirror = AUGMENTS["mirror"]
    monkeypatch.setitem(AUGMENTS, "mirror", lambda batch, gen: seen.append(len(batch)) or mirror(batch, gen))
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=64, progress=False, lr=1e-3)
    run = train("mini_xception", "fer2013", tmp_path / "mirror", augment="mirror", epochs=1, **kwargs)
    assert sum(seen) == 64
    recipe = read_card(run["checkpoint"])["recipe"]
    assert recipe["augment"] == "mirror" and recipe["overrides"] == {"epochs": 1, "augment": "mirror"}
    resumed = train("mini_xception", "fer2013", tmp_path / "mirror", epochs=2, resume=True, **kwargs)
    assert sum(seen) == 128 and read_card(resumed["checkpoint"])["recipe"]["augment"] == "mirror"
    with pytest.raises(ValueError, match="started with --augment mirror, not lanmsff"):
        train("mini_xception", "fer2013", tmp_path / "mirror", epochs=3, resume=True, augment="lanmsff", **kwargs)
    with pytest.raises(ValueError, match="started with --lr 0.001, not 0.01"):
        train("mini_xception", "fer2013", tmp_path / "mirror", epochs=3, resume=True, **{**kwargs, "lr": 1e-2})
    with pytest.raises(ValueError, match="augment must be one of lanmsff, strong, mirror, none, not 'flip'"):
        train("mini_xception", "fer2013", tmp_path / "bad", augment="flip", epochs=1, **kwargs)


def test_a_shorter_warm_up_replaces_the_recipes_and_never_exceeds_the_peak(data_root, tmp_path):
    """--warmup-epochs (a further Conv-cut schedule from trained weights cannot spend its recipe's five epochs
    warming up): the learning rate climbs linearly over the asked warm-up, reaches the peak and never goes
    above it, even when the warm-up is shorter than one step; the card records it and a resumed run keeps it."""
    import torch

    from ferx.train import RECIPES, Recipe, _cosine_lr

    recipe = RECIPES["convcut"]
    assert recipe.warmup_epochs == 5
    short = Recipe(**{**recipe.__dict__, "warmup_epochs": 0.25, "epochs": 2, "lr": 2e-4})
    rates = [_cosine_lr(short, step, 100) for step in range(200)]
    assert rates[0] == pytest.approx(2e-4 / 25) and rates[24] == pytest.approx(2e-4) and max(rates) == rates[24]
    assert rates[-1] < 1e-7  # the cosine still ends at 0 over the run
    assert _cosine_lr(short, 0, 1) == pytest.approx(2e-4)  # a quarter of a one-step epoch: the peak, not 4x it
    odd = Recipe(**{**RECIPES["lanmsff_short"].__dict__, "lr": 1e-3})  # 449 steps: the warm-up ends mid-step 224
    assert _cosine_lr(odd, 224, 449) == pytest.approx(1e-3)  # not 225 / 224.5 of the peak

    # 256 faces in batches of 64: 4 steps. The recipe's half-epoch warm-up ends at step 2, so its last step runs
    # at half the peak; with none the cosine starts at step 0 and its last step runs at (1 + cos(0.75 pi)) / 2.
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=256, limit_val=64, progress=False, lr=1e-3)
    run = train("lanmsff_short", "fer2013", tmp_path / "warm", warmup_epochs=0, epochs=1, **kwargs)
    assert run["history"][0]["lr"] == pytest.approx(1e-3 * (1 + math.cos(0.75 * math.pi)) / 2)
    recipes = train("lanmsff_short", "fer2013", tmp_path / "recipes", epochs=1, **kwargs)
    assert recipes["history"][0]["lr"] == pytest.approx(1e-3 / 2)
    card = read_card(run["checkpoint"])
    assert card["recipe"]["warmup_epochs"] == 0 and card["recipe"]["overrides"]["warmup_epochs"] == 0
    resumed = train("lanmsff_short", "fer2013", tmp_path / "warm", epochs=2, resume=True, **kwargs)
    # 8 steps over the resumed 2 epochs, no warm-up: the last runs at (1 + cos(7/8 pi)) / 2 (the recipe's: 5/6 pi)
    assert resumed["history"][1]["lr"] == pytest.approx(1e-3 * (1 + math.cos(7 / 8 * math.pi)) / 2)
    assert read_card(resumed["checkpoint"])["recipe"]["warmup_epochs"] == 0
    with pytest.raises(ValueError, match="started with --warmup-epochs 0, not 0.5"):
        train("lanmsff_short", "fer2013", tmp_path / "warm", epochs=3, resume=True, warmup_epochs=0.5, **kwargs)
    # a state.pt from before the warm-up was kept warmed up over its recipe's half epoch, not what is asked now
    path = tmp_path / "recipes" / "state.pt"
    saved = torch.load(path, weights_only=True)
    saved["progress"] = json.dumps({k: v for k, v in json.loads(saved["progress"]).items() if k != "warmup_epochs"})
    torch.save(saved, path)
    with pytest.raises(ValueError, match="started with --warmup-epochs 0.5, not 0"):
        train("lanmsff_short", "fer2013", tmp_path / "recipes", epochs=2, resume=True, warmup_epochs=0, **kwargs)
    with pytest.raises(ValueError, match="mini_xception recipe decays on a plateau and has no warm-up"):
        train("mini_xception", "fer2013", tmp_path / "plateau", warmup_epochs=0.5, epochs=1, **kwargs)
    with pytest.raises(ValueError, match="warmup_epochs must be 0 or more"):
        train("lanmsff_short", "fer2013", tmp_path / "bad", warmup_epochs=-1, epochs=1, **kwargs)


def test_a_ferplus_checkpoint_starts_a_fer2013_run_with_its_classifier_rows_taken_by_name(data_root, tmp_path):
    """--init-from across label sets (the same faces, FERPlus's 8 labels -> FER-2013's 7): every FER-2013 class
    starts from the FERPlus row of that name, so the run starts where the FERPlus model is on FER-2013 (not at
    chance); the card says which rows came over."""
    import torch

    from ferx.checkpoint import load_checkpoint

    source = CHECKPOINTS / "lanmsff_ferplus"
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=64, limit_val=256, progress=False, lr=1e-9)
    started = train("lanmsff_short", "fer2013", tmp_path / "from_ferplus", epochs=1, init_from=source, **kwargs)
    scratch = train("lanmsff_short", "fer2013", tmp_path / "scratch", epochs=1, **kwargs)
    assert started["best_val_acc"] > 0.45 > 0.3 > scratch["best_val_acc"]
    card = read_card(started["checkpoint"])
    assert card["labels"][:3] == ["angry", "disgust", "fear"] and card["initialised_from"]["its_data"] == "ferplus"
    assert card["initialised_from"]["classifier_rows"].startswith("7 of 7 classes taken by name from its 8")
    new, old = load_checkpoint(started["checkpoint"]), load_checkpoint(source)
    for name in ("happy", "fear", "neutral"):
        i, j = new.labels.classes.index(name), old.labels.classes.index(name)
        torch.testing.assert_close(new.model.head.weight[i], old.model.head.weight[j], atol=1e-5, rtol=0)


def test_a_class_the_start_checkpoint_lacks_keeps_its_fresh_row():
    import torch

    from ferx.data.labels import get_label_set
    from ferx.models import create_model
    from ferx.train import _start_from

    torch.manual_seed(0)
    seven, eight = create_model("mini_xception", num_classes=7), create_model("mini_xception", num_classes=8)
    fresh = eight.classifier.weight.detach().clone()
    taken = _start_from(eight, seven, get_label_set("fer2013"), get_label_set("ferplus"), "classifier")
    assert taken == ["neutral", "happy", "surprise", "sad", "angry", "disgust", "fear"]
    torch.testing.assert_close(eight.classifier.weight[7], fresh[7])  # contempt: FER-2013 has no such row
    torch.testing.assert_close(eight.classifier.weight[0], seven.classifier.weight[6])  # neutral
    torch.testing.assert_close(eight.classifier.bias[1], seven.classifier.bias[3])  # happy
    torch.testing.assert_close(eight.stem[0].weight, seven.stem[0].weight)
    with pytest.raises(AttributeError):  # a classifier declared where there is none fails, not copies by position
        _start_from(eight, seven, get_label_set("fer2013"), get_label_set("ferplus"), "head")


def test_convcut_recipe_runs_end_to_end_on_gray_ferplus(data_root, tmp_path):
    """AdamW + cosine warm-up + strong augmentation + mixup + label smoothing, 17 faces in batches of 8: the last
    batch, of one face, is dropped (its head's BatchNorm1d cannot train on one sample; the epoch crashed)."""
    result = train("convcut", "ferplus", tmp_path / "cc", data_root=data_root, device=DEVICE, epochs=1, batch_size=8,
                   limit_train=17, limit_val=8, progress=False)
    row = result["history"][0]
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    card = read_card(result["checkpoint"])
    assert card["model"] == "convcut" and len(card["labels"]) == 8 and card["input_spec"]["channels"] == 3


def test_convcut_trains_its_head_alone_on_a_pretrained_backbone_then_the_whole_model(data_root, tmp_path, monkeypatch):
    """models.md: Conv-cut's ConvNeXt-Base can start from ImageNet weights in a local file, and the head trains alone
    (dropout 0.1) before the whole model does (dropout 0.2). The weights here stand in for ImageNet's (random,
    float16: 103 MB), the real file is used as a user would give it, and the card names it by its sha256."""
    import timm
    from safetensors.torch import save_file

    from ferx.checkpoint import load_checkpoint, sha256_file
    from ferx.models import create_model

    reference = timm.create_model("convnext_base", pretrained=False)
    weights = tmp_path / "convnext_base.safetensors"
    save_file({k: v.half().contiguous() for k, v in reference.state_dict().items()
               if k.startswith(("stem.", "stages.0.", "stages.1.", "stages.2."))}, str(weights))
    kwargs = dict(data_root=data_root, device=DEVICE, batch_size=8, limit_train=17, limit_val=8, input_size=112,
                  progress=False)
    head = train("convcut", "ferplus", tmp_path / "cc", epochs=1, head_epochs=1, backbone_weights=str(weights), **kwargs)
    card = read_card(head["checkpoint"])
    assert card["initialised_from"] == {"backbone_weights": weights.name, "backbone_weights_sha256": sha256_file(weights)}
    assert "backbone_weights" not in card["config"] and card["recipe"]["head_epochs"] == 1
    assert head["history"][0]["trained"] == "head only"
    weights.unlink()  # the checkpoint holds every weight: it loads without the file
    trained = load_checkpoint(head["checkpoint"], "cpu").model
    stem = reference.stem[0].weight.half().float()
    assert torch.equal(trained.backbone.stem[0].weight, stem)  # frozen while the head trained alone
    assert not torch.equal(trained.head.weight, create_model("convcut", num_classes=8).head.weight)
    whole = train("convcut", "ferplus", tmp_path / "cc", epochs=2, resume=True, **kwargs)
    assert whole["history"][1]["trained"] == "all"
    last = torch.load(tmp_path / "cc" / "state.pt", weights_only=True)["model"]  # the last epoch's (not the best)
    assert not torch.equal(last["backbone.stem.0.weight"], stem)  # the whole model trains after the head's epochs
    from ferx.train import _head_only

    model = create_model("convcut", num_classes=8).train()
    drops = {model.drop: 0.2, model.spatial_drop: 0.2}
    _head_only(model, "backbone", True, 0.1, drops)
    assert model.drop.p == model.spatial_drop.p == 0.1 and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters()) and model.head.weight.requires_grad
    _head_only(model, "backbone", False, 0.1, drops)
    assert model.drop.p == 0.2 and model.backbone.training and all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="--head-epochs trains the head on a trained backbone"):
        train("convcut", "ferplus", tmp_path / "random", epochs=1, head_epochs=1, **kwargs)
    import ferx.train as training

    def packed(*args, **kw):
        raise AssertionError("the data was packed before the hub's weights were found missing")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set and they are not"):
        patched.setattr(training, "_packed_splits", packed)  # offline (the tests are), no cached copy: said first
        train("convcut", "ferplus", tmp_path / "offline", epochs=1, head_epochs=1, backbone_weights="hub", **kwargs)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # online, but the hub does not answer

    def unreachable(name, pretrained=False, **kw):  # the hub does not answer (offline, no cached copy)
        if pretrained:
            raise OSError("no connection to the hub")
        return real(name, **kw)

    real = timm.create_model
    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="not available from the Hugging Face hub"):
        patched.setattr(timm, "create_model", unreachable)  # an error, not a frozen random backbone
        train("convcut", "ferplus", tmp_path / "hub", epochs=1, head_epochs=1, backbone_weights="hub", **kwargs)
    with pytest.raises(ValueError, match="lanmsff has no pre-trained backbone"):
        train("lanmsff", "ferplus", tmp_path / "lan", epochs=1, backbone_weights="hub", **kwargs)


def test_cli_evaluate_writes_json_and_reports_errors(data_root, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["evaluate", str(MINI), "--dataset", "fer2013", "--split", "test", "--limit", "300",
                 "--data-root", str(data_root), "--device", DEVICE, "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 300 and set(result["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert len(result["confusion_matrix"]) == 7 and 0 <= result["ece"] <= 1
    # FER-2013 test's files are ordered by class (its first 300 faces are all angry): --limit spreads
    # its faces over the split, so every class is scored, each about as often as in the whole split
    support = {c: m["support"] for c, m in result["per_class"].items()}
    assert min(support.values()) > 0 and abs(support["happy"] - 300 * 879 / 3589) <= 1
    with pytest.raises(SystemExit):  # refused by argparse, as explain refuses it
        main(["evaluate", str(tmp_path / "missing"), "--dataset", "fer2013"])
    assert f"argument checkpoint: {tmp_path / 'missing'}: no such checkpoint: give a checkpoint folder" in \
        capsys.readouterr().err


def test_commands_take_a_committed_checkpoint_by_its_name_from_any_folder(data_root, tmp_path, monkeypatch, capsys):
    """``ferx models`` lists checkpoints by name; every command takes that name, wherever it runs."""
    from PIL import Image

    from ferx.data import load_fer2013, pack_split

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "eval.json"
    assert main(["evaluate", MINI.name, "--dataset", "fer2013", "--limit", "20", "--data-root", str(data_root),
                 "--device", DEVICE, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["model"] == "mini_xception"
    face = tmp_path / "face.png"
    Image.fromarray(pack_split(load_fer2013(data_root, "test"), progress=False).images[0]).save(face)
    assert main(["explain", str(face), "--model", "lanmsf_ferplus", "--whole-image"]) == 1
    err = capsys.readouterr().err
    assert "lanmsf_ferplus: no such checkpoint" in err and "lanmsff_ferplus" in err and "mini_xception_fer2013" in err


def test_batched_inference_leaves_the_model_ready_for_gradients():
    """predict_logits runs channels-last; afterwards backward (Grad-CAM, training) must still work on CPU."""
    import torch

    from ferx.inference import predict_logits
    from ferx.models import create_model, get_model_info

    model = create_model("mini_xception").eval()
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    logits = predict_logits(model, get_model_info("mini_xception").input_spec, images, batch_size=4)
    assert logits.shape == (8, 7)
    assert model.blocks[0].shortcut[0].weight.is_contiguous()
    x = torch.randn(2, 1, 64, 64, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and model.blocks[0].shortcut[0].weight.grad is not None


def test_channels_last_is_detected_and_restored_on_models_with_a_one_channel_stem():
    """LANMSFF's first conv has one input channel, which looks contiguous in both layouts."""
    import torch

    from ferx.memory_format import channels_last, is_channels_last
    from ferx.models import create_model

    model = create_model("lanmsff").eval()
    assert not is_channels_last(model)
    with channels_last(model):
        assert is_channels_last(model)
    assert not is_channels_last(model)
    model.to(memory_format=torch.channels_last)  # as trained on CUDA
    with channels_last(model):
        pass
    assert is_channels_last(model)  # restored to what it was, not forced to contiguous


def test_cpu_training_is_channels_last_only_where_its_backward_is_safe():
    """torch 2.13 on CPU corrupts the heap in the weight gradient of strided 1x1 convs in channels-last;
    LANMSFF has none, so it trains channels-last (faster) with the same gradients."""
    import torch
    import torch.nn.functional as F

    from ferx.memory_format import training_memory_format
    from ferx.models import create_model

    cpu = torch.device("cpu")
    assert training_memory_format(create_model("mini_xception"), cpu) == torch.contiguous_format
    assert training_memory_format(create_model("lanmsff"), cpu) == torch.channels_last
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 64, 64), torch.arange(8) % 7
    grads = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        model = create_model("lanmsff").eval().to(memory_format=fmt)  # eval: dropout masks follow memory order
        F.cross_entropy(model(x.contiguous(memory_format=fmt)), y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    largest = max(g.norm().item() for g in grads[0].values())
    for name, g in grads[0].items():
        if g.norm().item() > 1e-3 * largest:  # near-zero gradients differ only by summation order
            assert (g - grads[1][name]).norm().item() <= 0.05 * g.norm().item(), name


def test_evaluate_faces_detect_scores_a_photo_folder_as_the_app_scores_each_photo(data_root, tmp_path, monkeypatch,
                                                                               capsys):
    """FER-2013 test faces made into 256-px photos: `--faces detect` finds and crops each face as the
    app does (same pixels up to rounding, so the same predictions), counts the photos without a face,
    and scores far better than shrinking the whole photo to the model's input."""
    import torch

    from ferx.checkpoint import load_checkpoint
    from ferx.data import load_fer2013, pack_split
    from ferx.data.photos import write_photo_folder
    from ferx.faces import find_faces, load_photo
    from ferx.inference import predict_faces

    folder = tmp_path / "photos"
    paths = write_photo_folder(pack_split(load_fer2013(data_root, "test"), progress=False), folder, 200, seed=1)
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))  # the photos' faces are found, not read back
    out = tmp_path / "detect.json"
    assert main(["evaluate", str(MINI), "--dataset", str(folder), "--split", "all", "--faces", "detect",
                 "--out", str(out)]) == 0
    detect = json.loads(out.read_text())
    assert "without a face left out" in capsys.readouterr().out

    loaded = load_checkpoint(MINI, torch.device("cpu"))  # the app's path: Compare scores face 0 of each upload
    hits, no_face = [], 0
    for path in paths:
        search = find_faces(load_photo(path, name=path.name))
        if search.no_face:
            no_face += 1
            continue
        probs = predict_faces(loaded.model, loaded.input_spec, search.faces[:1])[0]
        hits.append(loaded.classes[int(probs.argmax())] == path.parent.name)
    assert detect["no_face"] == no_face and 0 < no_face < 40  # MTCNN misses some of FER-2013's hardest faces
    assert detect["n"] == len(hits) == 200 - no_face
    assert abs(detect["accuracy"] * detect["n"] - sum(hits)) <= 1  # a rounded pixel may move one near-tie at most

    whole = evaluate_checkpoint(MINI, str(folder), "all", progress=False)  # the photo shrunk to 48 px
    assert whole["faces"] == "given" and whole["n"] == 200
    print(f"accuracy: faces detected {detect['accuracy']:.3f}, whole photo {whole['accuracy']:.3f}; "
          f"{no_face} photos without a face")
    assert detect["accuracy"] > whole["accuracy"] + 0.1


def test_two_models_analysed_on_colour_photos_each_score_a_face_as_the_app_does(data_root, tmp_path, monkeypatch):
    """`ferx analyze --faces detect` of mini-Xception (64 px, grey) beside Conv-cut (112 px, colour) packs each photo's
    face once, at the larger input and in colour, so Conv-cut scores the pixels the app gives it for that photo: the
    probabilities of the app's face 0, to rounding (mini-Xception gets those pixels resized). 12 FER-2013 test faces
    in 256-px photos, tinted warm as a camera's are. (Packing at the smaller input, or in grey, passed the suite.)"""
    from PIL import Image

    from ferx.analysis import analyze
    from ferx.checkpoint import load_checkpoint
    from ferx.data import load_fer2013, pack_split
    from ferx.data.photos import write_photo_folder
    from ferx.faces import find_faces, load_photo
    from ferx.inference import predict_faces

    folder = tmp_path / "photos"
    for path in write_photo_folder(pack_split(load_fer2013(data_root, "test"), progress=False), folder, 12, seed=2):
        grey = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        Image.fromarray((grey * (1.0, 0.8, 0.6)).round().astype(np.uint8)).save(path, quality=95)
    monkeypatch.setenv("FERX_CACHE_DIR", str(tmp_path / "cache"))
    runs = analyze([MINI, CHECKPOINTS / "convcut_ferplus"], str(folder), "all", device="cpu", progress=False,
                   faces="detect")
    run = runs[1]
    loaded = load_checkpoint(run.checkpoint, torch.device("cpu"))
    assert len(run) >= 8 and loaded.input_spec.size > 64 and loaded.input_spec.channels == 3
    for path, probs in zip(run.paths, run.probs):
        app = predict_faces(loaded.model, loaded.input_spec, find_faces(load_photo(folder / path)).faces[:1])[0]
        assert np.abs(probs - app).max() < 0.02, (path, np.abs(probs - app).max())


def test_training_precision_and_soft_labels_are_chosen_recorded_and_kept(data_root, tmp_path, monkeypatch):
    """--precision bf16 trains and validates under bf16 autocast where the CPU has native bf16 (and is refused, by
    name, where it has not); auto stays fp32 on CPU. --soft-labels / --no-soft-labels override the recipe's
    targets (FERPlus vote distributions or majority classes); the card records both, and a resumed run keeps its
    targets (the other kind is refused)."""
    import ferx.device
    import ferx.train

    seen, validated = [], []  # (logits dtype, target kind) of each training step; each validation's precision
    loss, predict = ferx.train._loss, ferx.train.predict_logits
    monkeypatch.setattr(ferx.train, "_loss", lambda logits, y, s: (seen.append((logits.dtype, y.ndim)), loss(logits, y, s))[1])
    monkeypatch.setattr(ferx.train, "predict_logits", lambda *a, precision, **k: (
        validated.append(ferx.device.autocast_bf16(torch.device("cpu"), precision)), predict(*a, precision=precision, **k))[1])
    kwargs = dict(data_root=data_root, device="cpu", limit_train=64, limit_val=64, progress=False, epochs=1)

    monkeypatch.setattr(ferx.device, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match="this CPU has no native bf16"):
        train("lanmsff_short", "ferplus", tmp_path / "refused", precision="bf16", **kwargs)
    monkeypatch.setattr(ferx.device, "cpu_has_bf16", lambda: True)
    fast = train("lanmsff_short", "ferplus", tmp_path / "bf16", precision="bf16", soft_labels=False, **kwargs)
    assert seen == [(torch.bfloat16, 1)]  # one step of 64 faces, majority classes although the recipe says votes
    assert validated == [True] and fast["history"][0]["precision"] == "bf16"
    card = read_card(fast["checkpoint"])["recipe"]
    assert card["precision"] == "bf16 autocast (training and validation)" and card["soft_labels"] is False
    assert card["overrides"]["soft_labels"] is False

    seen.clear()
    plain = train("lanmsff_short", "ferplus", tmp_path / "auto", **kwargs)
    assert seen == [(torch.float32, 2)] and validated == [True, False]  # auto on CPU: fp32; the recipe's votes
    assert read_card(plain["checkpoint"])["recipe"]["precision"] == "fp32"
    soft = train("lanmsff", "ferplus", tmp_path / "soft", soft_labels=True, batch_size=64, **kwargs)
    assert seen[-1] == (torch.float32, 2)  # the authors' recipe (majority classes) takes the votes when asked
    assert read_card(soft["checkpoint"])["recipe"]["overrides"]["soft_labels"] is True

    with pytest.raises(ValueError, match="was started with --no-soft-labels, not --soft-labels: resume it without "
                                         "--soft-labels"):
        train("lanmsff_short", "ferplus", tmp_path / "bf16", resume=True, soft_labels=True, precision="bf16",
              **{**kwargs, "epochs": 2})
    with pytest.raises(ValueError, match="fer2013 has no vote distributions"):
        train("lanmsff", "fer2013", tmp_path / "no_votes", soft_labels=True, **kwargs)
    # a resumed call in another precision: the card tells which epochs ran in which
    resumed = train("lanmsff_short", "ferplus", tmp_path / "bf16", resume=True, **{**kwargs, "epochs": 2})
    assert seen[-1] == (torch.float32, 1)  # fp32 now, and still the majority classes it began with
    card = read_card(resumed["checkpoint"])["recipe"]
    assert card["precision"] == "bf16: epochs 1; fp32: epochs 2" and card["soft_labels"] is False
    # a recipe whose targets are votes trains on classes where there are none, and its card says so
    assert read_card(train("lanmsff_short", "fer2013", tmp_path / "classes", **kwargs)["checkpoint"])["recipe"][
        "soft_labels"] is False and seen[-1] == (torch.float32, 1)


def test_ferx_models_lists_each_checkpoint_with_its_own_input(capsys):
    """Conv-cut's architecture defaults to 224 px; its checkpoint was trained and scores at the size its
    card records, which is what ferx models shows beside it."""
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for card_path in CHECKPOINTS.glob("*/card.json"):
        card = read_card(card_path.parent)
        spec = card["input_spec"]
        line = next(row for row in out.splitlines() if row.strip().startswith(card_path.parent.name + " "))
        assert f"{spec['size']}x{spec['size']}x{spec['channels']}" in line and f"{len(card['labels'])} classes" in line


def test_resume_without_a_saved_run_is_refused_before_any_data_is_packed(tmp_path, monkeypatch, capsys):
    """--resume used to start a fresh run, silently, where OUT had no state.pt (a typo in --out lost the
    stopped run's place); now it is refused in one line, before the data is read or the folder is made."""
    def never(*args, **kwargs):
        raise AssertionError("the data was packed for a refused run")

    monkeypatch.setattr("ferx.train._packed_splits", never)
    run = tmp_path / "runs" / "typo"
    assert main(["train", "--recipe", "mini_xception", "--dataset", "fer2013", "--out", str(run), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"ferx train: error: --resume: {run} has no state.pt to resume from (no run was saved there); "
                   "leave out --resume to start a new run")
    assert not (tmp_path / "runs").exists()


def test_a_missing_checkpoint_dataset_or_folder_is_named_as_missing(tmp_path, monkeypatch, capsys):
    """`evaluate nosuch` said "nosuch is not a ferx checkpoint: card.json not found" where explain listed the
    checkpoints there are (now one message, ferx.paths.no_checkpoint); `--dataset /path/not/there` said "unknown
    dataset ... use one of fer2013, ..."; `models --checkpoints nodir` listed nothing and exited 0."""
    from ferx.explain.report import open_model
    from ferx.paths import no_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["evaluate", "nosuch", "--dataset", "ckplus"])
    err = capsys.readouterr().err
    assert f"ferx evaluate: error: argument checkpoint: {no_checkpoint('nosuch')}" in err
    assert no_checkpoint("nosuch").startswith("nosuch: no such checkpoint: give a checkpoint folder or the name of one")
    assert "mini_xception_fer2013" in no_checkpoint("nosuch")
    with pytest.raises(ValueError, match=re.escape(no_checkpoint("nosuch"))):
        open_model("nosuch", untrained=False)  # what ferx explain --model nosuch says, before its --untrained hint
    assert main(["evaluate", "mini_xception_fer2013", "--dataset", "nodir_ds/"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "ferx evaluate: error: nodir_ds/: no such folder or zip"
    assert main(["models", "--checkpoints", "nodir"]) == 1
    printed = capsys.readouterr()
    assert printed.err.strip() == "ferx models: error: --checkpoints nodir: no such folder" and printed.out == ""
