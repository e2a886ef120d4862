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
