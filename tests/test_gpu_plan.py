"""The GPU plan, dry-run on CPU: carry files, the time budget, and bench/gpu_train.sh end to end,
so the first (rare, 30-minute) GPU lease does not fail on a typo."""

import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from ferx.checkpoint import load_checkpoint, read_card
from ferx.cli import main
from ferx.data.carry import read_carry, write_carry
from ferx.data.datasets import load_split
from ferx.data.packed import pack_split
from ferx.train import train

from conftest import DEVICE, REPO


@pytest.fixture(scope="module")
def ferplus_val(data_root):
    return pack_split(load_split("ferplus", "val", data_root), progress=False)


def test_carry_file_gives_back_the_same_packed_split(ferplus_val, tmp_path):
    part = ferplus_val.take(np.arange(0, 3000, 7))  # 429 real faces with their vote distributions
    path = write_carry([part], tmp_path / "ferplus.zip")
    back = read_carry(path)["val"]
    assert back.fingerprint == part.fingerprint and back.classes == part.classes
    assert np.array_equal(back.images, part.images)  # lossless
    assert np.array_equal(back.targets, part.targets) and np.array_equal(back.paths, part.paths)
    assert np.allclose(back.soft_targets, part.soft_targets)
    # smaller than ferx's own zlib packs of the same faces
    assert path.stat().st_size < 1.7e3 * len(part)


def test_a_damaged_carry_file_is_refused_by_name(ferplus_val, tmp_path):
    path = write_carry([ferplus_val.take(np.arange(50))], tmp_path / "faces.zip")
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ValueError, match="faces.zip is not a readable ferx carry file"):
        read_carry(path)
    with zipfile.ZipFile(tmp_path / "future.zip", "w") as z:
        z.writestr("manifest.json", json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="carry format 99"):
        read_carry(tmp_path / "future.zip")


def test_time_budget_stops_cleanly_exports_and_resumes(data_root, tmp_path):
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=192, limit_val=96, progress=False)
    first = train("lanmsff_short", "ferplus", tmp_path / "run", epochs=1, **kwargs)
    assert first["epochs_run"] == 1 and first["stopped"] is None
    # a budget already spent: the next epoch is abandoned, epoch 1 stays the exported checkpoint
    cut = train("lanmsff_short", "ferplus", tmp_path / "run", epochs=3, resume=True, time_budget_min=0.001, **kwargs)
    assert cut["epochs_run"] == 1 and "time budget" in cut["stopped"]
    card = read_card(cut["checkpoint"])
    assert "time budget" in card["recipe"]["stopped"] and card["recipe"]["memory_format"] == "channels_last"
    assert load_checkpoint(cut["checkpoint"]).model.num_classes == 8
    resumed = train("lanmsff_short", "ferplus", tmp_path / "run", epochs=2, resume=True, **kwargs)
    assert resumed["epochs_run"] == 2 and [r["epoch"] for r in resumed["history"]] == [1, 2]


class _StepClock:
    """ferx.train's clock, driven by the work instead of the machine: a training step costs 1 s (``slowdown``
    times that after the third validation), a validation 0.5 s. The budget arithmetic is then checked without
    depending on this machine's load: sub-second epochs on a shared CPU varied enough to cut a real-clock
    schedule mid-way."""

    def __init__(self, monkeypatch, slowdown: float = 1.0):
        import types
        import ferx.train as train_module

        self.now, self.validations = 0.0, 0
        real_loss, real_validate = train_module._loss, train_module.validate

        def loss(*args, **kw):
            self.now += 1.0 if self.validations < 3 else slowdown
            return real_loss(*args, **kw)

        def validate(*args, **kw):
            self.now += 0.5
            self.validations += 1
            return real_validate(*args, **kw)

        monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: self.now))
        monkeypatch.setattr(train_module, "_loss", loss)
        monkeypatch.setattr(train_module, "validate", validate)


@pytest.mark.parametrize("slowdown, epochs", [(1.0, 6), (1.2, 5)])
def test_a_budget_fitted_schedule_ends_inside_the_budget_at_its_lowest_learning_rate(data_root, tmp_path, monkeypatch,
                                                                                      slowdown, epochs):
    clock = _StepClock(monkeypatch, slowdown)
    kwargs = dict(data_root=data_root, device=DEVICE, limit_train=128, limit_val=64, progress=False)  # 2 steps an epoch
    budget_s = 6.5 * (2 * 1.0 + 0.5)  # six epochs at the first epochs' pace, and room to export
    run = train("lanmsff_short", "ferplus", tmp_path / "run", epochs=50, time_budget_min=budget_s / 60,
                fit_budget=True, **kwargs)
    card = read_card(run["checkpoint"])
    assert card["recipe"]["epochs_fitted_to_budget"] and card["recipe"]["epochs"] == run["epochs_run"] == epochs
    assert run["stopped"] is None and clock.now <= budget_s  # finished inside the budget
    # the cosine schedule ran to its end (a slower machine gets a shorter schedule, not a cut one)
    assert run["history"][-1]["lr"] < 0.2 * card["recipe"]["lr"]
    assert max(r["lr"] for r in run["history"]) > 0.5 * card["recipe"]["lr"]


def _plan(tmp_path, *steps):
    env = {**os.environ, "GPU_PLAN_DEVICE": "cpu", "GPU_PLAN_EPOCHS": "1", "GPU_PLAN_CARRY": str(tmp_path / "carry"),
           "GPU_PLAN_RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "GPU_PLAN_PROBE_BATCH": "2", "GPU_PLAN_PROBE_STEPS": "1"}
    return subprocess.run(["bash", str(REPO / "bench" / "gpu_train.sh"), *steps], env=env, capture_output=True,
                          text=True, timeout=900)


def test_gpu_plan_dry_run_trains_from_a_carry_file_and_brings_back_what_it_promises(data_root, tmp_path):
    assert main(["data", "carry", "ferplus", "--limit", "160", "--out", str(tmp_path / "carry" / "ferplus.zip"),
                 "--data-root", str(data_root)]) == 0
    assert main(["data", "carry", "fer2013", "--limit", "96", "--out", str(tmp_path / "carry" / "fer2013.zip"),
                 "--data-root", str(data_root)]) == 0
    done = _plan(tmp_path, "check", "train:lanmsff_short:ferplus:5+train:mini_xception:ferplus:5",
                 f"train:lanmsff_short:fer2013:5::{tmp_path}/runs/lanmsff_short_ferplus/checkpoint", "pack")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["results.tar"]  # one of the 8 files that come back
    with tarfile.open(out / "results.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    back = tmp_path / "back"
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == [
        "lanmsff_short_fer2013/card.json", "lanmsff_short_fer2013/curves.png", "lanmsff_short_fer2013/metrics.jsonl",
        "lanmsff_short_fer2013/model.safetensors",
        "lanmsff_short_ferplus/card.json", "lanmsff_short_ferplus/curves.png", "lanmsff_short_ferplus/metrics.jsonl",
        "lanmsff_short_ferplus/model.safetensors", "log.txt", "mini_xception_ferplus/card.json",
        "mini_xception_ferplus/curves.png", "mini_xception_ferplus/metrics.jsonl",
        "mini_xception_ferplus/model.safetensors"]
    card = read_card(back / "lanmsff_short_ferplus")
    assert card["data"]["source"] == "carry file ferplus.zip" and card["data"]["train_images"] == 160
    assert load_checkpoint(back / "lanmsff_short_ferplus").labels.name == "ferplus"
    started = read_card(back / "lanmsff_short_fer2013")["initialised_from"]  # FER-2013 from the FERPlus step's weights
    assert started["checkpoint"] == "lanmsff_short_ferplus/checkpoint" and started["its_data"] == "ferplus"
    assert started["checkpoint_sha256"] == load_checkpoint(back / "lanmsff_short_ferplus").sha256
    log = (back / "log.txt").read_text()
    assert "=== train:lanmsff_short:ferplus:5" in log and "=== train:mini_xception:ferplus:5" in log


@pytest.mark.slow
def test_gpu_plan_dry_run_of_the_sharded_convcut_path(data_root, tmp_path):
    """Conv-cut at 112 px on 24 faces: float16 export in 15 MiB shards, brought back in two fetches."""
    assert main(["data", "carry", "ferplus", "--limit", "24", "--out", str(tmp_path / "carry" / "ferplus.zip"),
                 "--data-root", str(data_root)]) == 0
    done = _plan(tmp_path, "train:convcut:ferplus:10:112", "fetch:convcut:ferplus:1:3", "pack")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ckpt = tmp_path / "out" / "convcut_ferplus"
    first = sorted(p.name for p in ckpt.glob("*.safetensors"))
    assert len(first) == 3 and sum(p.stat().st_size for p in (tmp_path / "out").rglob("*")) < 64 * 2**20
    done = _plan(tmp_path, "fetch:convcut:ferplus:4:99", "pack")  # the second, chained call
    assert done.returncode == 0, done.stderr[-3000:]
    with tarfile.open(tmp_path / "out" / "results.tar") as tar:
        tar.extract("./convcut_ferplus/card.json", tmp_path / "out", filter="data")
    assert all(p.stat().st_size <= 15 * 2**20 for p in ckpt.glob("*.safetensors"))
    card = read_card(ckpt)
    assert sorted(p.name for p in ckpt.glob("*.safetensors")) == card["weights"]["files"]
    assert card["weights"]["dtype"] == "float16" and card["input_spec"]["size"] == 112
    assert load_checkpoint(ckpt).input_spec.size == 112  # sha256 of every reassembled shard checked on load


def _carry_weights():
    import importlib.util

    spec = importlib.util.spec_from_file_location("carry_weights", REPO / "bench" / "carry_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weights_carried_as_int8_continue_on_the_gpu_machine(data_root, ferplus_val, tmp_path):
    """A committed checkpoint travels as int8 (bench/carry_weights.py), is unpacked there into a checkpoint that
    predicts what the committed one predicts, and a train step continues from it with its own flags."""
    import torch

    carry = _carry_weights()
    source_dir = REPO / "checkpoints" / "lanmsff_ferplus"
    manifest = carry.pack(source_dir, tmp_path / "carry" / "lanmsff_ferplus.zip")
    source = load_checkpoint(source_dir)
    assert manifest["source_sha256"] == source.sha256 and manifest["checkpoint"] == "lanmsff_ferplus"
    weights_bytes = sum((source_dir / f).stat().st_size for f in source.card["weights"]["files"])
    assert (tmp_path / "carry" / "lanmsff_ferplus.zip").stat().st_size < 0.45 * weights_bytes  # float32 -> int8
    copy = load_checkpoint(carry.unpack(tmp_path / "carry" / "lanmsff_ferplus.zip", tmp_path / "init"))
    # every weight within half an int8 step of its row's scale, and the same predictions on 1,000 real faces
    state, copied = source.model.state_dict(), copy.model.state_dict()
    assert max(float((state[k].float() - copied[k]).abs().max()) for k in state) == pytest.approx(
        manifest["max_abs_error"])
    quantised = [k for k, v in state.items() if v.ndim >= 2 and v.numel() >= carry.MIN_QUANTISED]
    assert len(quantised) > 10
    for k in quantised:  # each output channel within half a step of its own scale (its largest magnitude / 127)
        rows, error = state[k].reshape(len(state[k]), -1), (state[k] - copied[k]).reshape(len(state[k]), -1)
        assert (error.abs().amax(1) <= rows.abs().amax(1) / 254 + 1e-7).all(), k
    assert all(torch.equal(state[k], copied[k]) for k in state if k not in quantised)  # the rest as they were
    from ferx.data.preprocess import to_model_input

    faces = ferplus_val.take(np.arange(1000))
    with torch.inference_mode():
        x = to_model_input(torch.as_tensor(faces.images), source.input_spec)
        agree = (source.model(x).argmax(1) == copy.model(x).argmax(1)).float().mean().item()
    assert agree >= 0.99
    assert copy.card["carried"]["source_sha256"] == source.sha256 and "metrics" not in copy.card

    assert main(["data", "carry", "ferplus", "--limit", "160", "--out", str(tmp_path / "carry" / "ferplus.zip"),
                 "--data-root", str(data_root)]) == 0
    done = _plan(tmp_path, f"train:lanmsff_short:ferplus:5::{tmp_path}/carry/lanmsff_ferplus.zip:"
                           "--lr=3e-4,--ema-decay=0.99", "pack")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with tarfile.open(tmp_path / "out" / "results.tar") as tar:
        tar.extract("./lanmsff_short_ferplus/card.json", tmp_path / "back", filter="data")
    card = json.loads((tmp_path / "back" / "lanmsff_short_ferplus" / "card.json").read_text())
    started = card["initialised_from"]
    assert started["checkpoint"] == "lanmsff_ferplus" and started["carried"]["source_sha256"] == source.sha256
    assert card["recipe"]["lr"] == 3e-4 and card["recipe"]["ema_decay"] == 0.99  # the step's flags reached ferx train

    (tmp_path / "carry" / "lanmsff_ferplus.zip").write_bytes(b"PK\x03\x04 not a zip")
    failed = _plan(tmp_path, f"train:lanmsff_short:ferplus:5::{tmp_path}/carry/lanmsff_ferplus.zip")
    assert failed.returncode != 0 and "lanmsff_ferplus.zip is not a readable weights carry file" in failed.stdout
    gone = _plan(tmp_path, f"train:lanmsff_short:ferplus:5::{tmp_path}/carry/missing.zip")
    assert gone.returncode != 0 and "missing.zip is not here" in gone.stdout
