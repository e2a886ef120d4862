import copy
import json

import pytest
import torch

from ferx.checkpoint import CheckpointError, load_checkpoint, read_card, render_card, save_checkpoint
from ferx.data import FER2013_7, FERPLUS_8
from ferx.models import create_model
from conftest import CHECKPOINTS, DEVICE, SHARED


@pytest.fixture
def lanmsff_ckpt(tmp_path):
    torch.manual_seed(0)
    model = create_model("lanmsff", num_classes=8).eval()
    path = save_checkpoint(model, tmp_path / "lan", labels=FERPLUS_8, card={"data": {"dataset": "ferplus"}})
    return model, path


def test_round_trip_keeps_outputs_and_card(lanmsff_ckpt):
    model, path = lanmsff_ckpt
    loaded = load_checkpoint(path, DEVICE)
    x = torch.randn(3, 1, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), model(x), atol=1e-6)
    card = read_card(path)
    assert card["model"] == "lanmsff" and card["labels"] == list(FERPLUS_8.classes)
    assert card["parameters"] == 356_451 and card["data"] == {"dataset": "ferplus"}
    assert "sha256 model.safetensors" in (path / "README.md").read_text()
    assert len(loaded.sha256) == 64


def test_a_loaded_model_computes_exactly_as_one_built_the_plain_way():
    """Bit for bit, gradients too: load_checkpoint fills a model built on the meta device, and its weights must be
    copies in torch's (aligned) memory; safetensors' own tensors changed Grad-CAM maps in the 8th digit."""
    from safetensors.torch import load_file

    path = CHECKPOINTS / "lanmsff_ferplus"
    plain = create_model("lanmsff", num_classes=8)
    plain.load_state_dict(load_file(str(path / "model.safetensors")))
    loaded = load_checkpoint(path, DEVICE).model
    x = torch.randn(1, 1, 64, 64, requires_grad=True)
    grads = [torch.autograd.grad(m.to(DEVICE).eval()(x).sum(), x)[0] for m in (plain, loaded)]
    assert torch.equal(*grads)


def test_an_architecture_with_a_tensor_it_does_not_save_still_loads(tmp_path):
    """Checkpoints are built on the meta device and filled with their weights; a non-persistent buffer (made
    by the architecture, not saved) cannot be filled that way, and the model is then built for real."""
    from ferx.models._registry import MODELS, InputSpec, register_model

    class Scaled(torch.nn.Module):
        def __init__(self, num_classes: int = 7):
            super().__init__()
            self.num_classes = num_classes
            self.fc = torch.nn.Linear(4, num_classes)
            self.register_buffer("scale", torch.full((num_classes,), 3.0), persistent=False)

        def forward(self, x):
            return self.fc(x.flatten(1)[:, :4]) * self.scale

    register_model("scaled_test", input_spec=InputSpec(2, 1, (0.5,), (0.5,)), default_labels="fer2013_7",
                   description="test", cam_target_layers=("fc",))(Scaled)
    try:
        model = create_model("scaled_test", num_classes=7).eval()
        loaded = load_checkpoint(save_checkpoint(model, tmp_path / "scaled", labels=FER2013_7), DEVICE)
        x = torch.randn(2, 1, 2, 2)
        with torch.inference_mode():
            assert torch.equal(loaded.model(x), model(x))
    finally:
        MODELS.remove("scaled_test")


@pytest.mark.parametrize("name", ["mini_xception_fer2013", "convcut_ferplus"])
def test_a_checkpoints_hash_is_the_hash_of_its_weight_files_hashes(name):
    """The hash ferx evaluate reports and the analysis cache is keyed by: sha256 of the weight files' own sha256s in
    the card's order, read here from the files' bytes (hashing the file names gave every one-file checkpoint the
    same hash, and the suite passed); two checkpoints with the same file names differ."""
    import hashlib

    card = read_card(CHECKPOINTS / name)
    files = [hashlib.sha256((CHECKPOINTS / name / f).read_bytes()).hexdigest() for f in card["weights"]["files"]]
    assert load_checkpoint(CHECKPOINTS / name, "cpu").sha256 == hashlib.sha256("".join(files).encode()).hexdigest()
    a, b = CHECKPOINTS / "lanmsff_fer2013", CHECKPOINTS / "lanmsff_ferplus"
    assert read_card(a)["weights"]["files"] == read_card(b)["weights"]["files"]
    assert load_checkpoint(a).sha256 != load_checkpoint(b).sha256


def test_the_same_weights_saved_again_have_the_same_hash(lanmsff_ckpt, tmp_path):
    """The analysis cache is keyed by the weights' sha256: saving the same model again (a second identical run, a
    card rewritten) must give the same bytes; safetensors wrote several metadata keys in a random order."""
    model, path = lanmsff_ckpt
    hashes = {load_checkpoint(save_checkpoint(model, tmp_path / f"again{i}", labels=FERPLUS_8), "cpu").sha256
              for i in range(8)}
    assert hashes == {load_checkpoint(path, "cpu").sha256}
    from safetensors import safe_open

    with safe_open(path / "model.safetensors", "pt") as f:  # what the file says of itself, for one who has only it
        assert json.loads(f.metadata()["ferx"]) == {"format": "ferx-checkpoint/1", "model": "lanmsff",
                                                    "labels": list(FERPLUS_8.classes)}


def test_sharded_save_loads_and_each_shard_is_small(tmp_path):
    model = create_model("lanmsff", num_classes=7).eval()
    path = save_checkpoint(model, tmp_path / "sharded", labels=FER2013_7, shard_mib=0.25, dtype=torch.float16)
    files = read_card(path)["weights"]["files"]
    assert len(files) >= 3 and all((path / f).stat().st_size <= 0.25 * 2**20 + 65536 for f in files)
    loaded = load_checkpoint(path, DEVICE)
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), model(x), atol=5e-2)  # fp16 storage


def test_corrupt_or_mismatched_checkpoints_are_refused(lanmsff_ckpt, tmp_path):
    _, path = lanmsff_ckpt
    with pytest.raises(CheckpointError, match="holds a 'lanmsff' model, not 'convcut'"):
        load_checkpoint(path, expect_model="convcut")
    with pytest.raises(CheckpointError, match="not a ferx checkpoint"):
        load_checkpoint(tmp_path / "nowhere")

    card = json.loads((path / "card.json").read_text())
    card["model"] = "mini_xception"  # weights of one architecture, card of another
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit the 'mini_xception' architecture"):
        load_checkpoint(path)

    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(path)


def test_label_count_must_match_the_model(tmp_path):
    with pytest.raises(CheckpointError, match="7 outputs but the label set has 8"):
        save_checkpoint(create_model("lanmsff", num_classes=7), tmp_path / "x", labels=FERPLUS_8)


@pytest.mark.parametrize("notes", ["Trained on 2 cores.", ["Trained on 2 cores.", "Kept on validation."]])
def test_card_notes_read_as_sentences_whether_one_or_several(lanmsff_ckpt, notes):
    text = render_card({**read_card(lanmsff_ckpt[1]), "notes": notes})
    assert "Trained on 2 cores." in text and "\nT\nr\n" not in text
    if isinstance(notes, list):
        assert "Trained on 2 cores.\n\nKept on validation." in text


def test_auto_precision_is_bf16_only_for_a_checkpoint_whose_card_shows_it_agrees(lanmsff_ckpt, monkeypatch):
    """``--precision auto`` on a CPU with native bf16: bf16 where the card records top-1 agreement with fp32
    of at least 99.5 % on every measured split, fp32 where one split is below or nothing was measured;
    ``fp32`` / ``bf16`` force it. The card shows the figures and the decision."""
    import ferx.device

    monkeypatch.setattr(ferx.device, "cpu_has_bf16", lambda: True)
    loaded = load_checkpoint(lanmsff_ckpt[1], "cpu")
    assert loaded.compute_dtype() == "fp32"  # nothing measured
    record = {"measured": "2026-12-04", "hardware": "CPU test", "top1_agreement": {"a/test": 0.9994, "b/test": 0.9961},
              "speed_ratio": {"a/test": 2.0, "b/test": 1.9}, "map_spearman": {"a/test": [1.0, 0.99], "b/test": [0.98, 0.9]}}
    loaded.card["bf16"] = record
    assert loaded.compute_dtype() == "bf16" and loaded.compute_dtype("fp32") == "fp32"
    assert "runs it in bf16" in render_card(loaded.card) and "| b/test | 99.61% | 1.90x | 0.980, 0.900 |" in render_card(loaded.card)
    record["top1_agreement"]["c/test"], record["speed_ratio"]["c/test"] = 0.9861, 1.1
    record["map_spearman"]["c/test"] = [0.91, 0.65]
    assert loaded.compute_dtype() == "fp32" and loaded.compute_dtype("bf16") == "bf16"
    assert "keeps fp32" in render_card(loaded.card)
    monkeypatch.setattr(ferx.device, "cpu_has_bf16", lambda: False)
    record["top1_agreement"].pop("c/test")
    assert loaded.compute_dtype() == "fp32"  # emulated bf16 is slower: never chosen
    with pytest.raises(ValueError, match="no native bf16"):
        loaded.compute_dtype("bf16")


def test_convert_refuses_to_overwrite_a_checkpoint_unless_forced(tmp_path, monkeypatch, capsys):
    """`ferx convert` (README) wrote over checkpoints/mini_xception_fer2013 (its default --out, from the current
    folder) and the shipped card lost its metrics; an existing checkpoint is now refused before the file is read."""
    from ferx.cli import main

    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "checkpoints" / "mini_xception_fer2013"
    shipped.mkdir(parents=True)
    (shipped / "card.json").write_text('{"metrics": ["measured"]}')
    assert main(["convert", "mini-xception", "missing.hdf5"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ferx convert: error: --out checkpoints/mini_xception_fer2013 already holds a checkpoint (its card and the "
        "metrics recorded on it): pass --force to replace it, or choose another --out")
    assert (shipped / "card.json").read_text() == '{"metrics": ["measured"]}'
    assert main(["convert", "mini-xception", "missing.hdf5", "--force"]) == 1  # forced: the file is read, by its name
    assert capsys.readouterr().err.strip() == "ferx convert: error: missing.hdf5: file not found"
    (tmp_path / "notes.h5").write_text("not hdf5")
    assert main(["convert", "mini-xception", "notes.h5", "--out", "new"]) == 1
    assert capsys.readouterr().err.strip() == "ferx convert: error: notes.h5: not an HDF5 file (a Keras .hdf5 / .h5 model)"
    h5 = SHARED / "weights" / "fer2013_mini_XCEPTION.102-0.66.hdf5"
    if h5.is_file():
        assert main(["convert", "mini-xception", str(h5), "--force"]) == 0
        assert read_card(shipped)["model"] == "mini_xception" and "metrics" not in read_card(shipped)


def test_a_card_with_a_field_missing_is_named_and_the_other_checkpoints_stay_offered(tmp_path, capsys):
    """A card without its 'weights' (or 'labels'), or one that is not a JSON object: `ferx evaluate` said only
    "error: 'weights'", `ferx models` listed it as usable or stopped in a traceback ('list' object has no attribute
    'get'), and the app did not start (KeyError: 'weights'), for one damaged card beside good ones. Each is named
    with what is wrong; the others are listed and offered."""
    import shutil

    from ferx.cli import main
    from webapp.model_bank import ModelBank

    root = tmp_path / "checkpoints"
    shutil.copytree(CHECKPOINTS / "mini_xception_fer2013", root / "good")
    for name, edit in (("no_weights", lambda c: c.pop("weights")), ("no_labels", lambda c: c.pop("labels")),
                       ("a_list", None)):
        shutil.copytree(CHECKPOINTS / "mini_xception_fer2013", root / name)
        card = json.loads((root / name / "card.json").read_text())
        if edit:
            edit(card)
        (root / name / "card.json").write_text(json.dumps(card if edit else [card]))
    assert main(["models", "--checkpoints", str(root)]) == 0
    listed = capsys.readouterr().out.split(f"checkpoints in {root}:\n")[1].splitlines()
    assert listed[0] == f"  a_list: unusable ({root / 'a_list' / 'card.json'}: a card is a JSON object, not a list)"
    assert listed[1].startswith("  good                     mini_xception  64x64x1     7 classes  fer2013/test acc ")
    assert listed[2] == (f"  no_labels: unusable ({root / 'no_labels' / 'card.json'}: missing or malformed labels (a "
                         "list of class names))")
    assert listed[3] == (f"  no_weights: unusable ({root / 'no_weights' / 'card.json'}: missing or malformed weights "
                         "(an object with files and the sha256 of each))")
    assert main(["evaluate", str(root / "no_weights"), "--dataset", "ckplus", "--limit", "5"]) == 1
    assert capsys.readouterr().err.strip() == (f"ferx evaluate: error: {root / 'no_weights' / 'card.json'}: missing or "
                                               "malformed weights (an object with files and the sha256 of each)")
    bank = ModelBank.load(root, "cpu", defer=True)
    assert list(bank.models) == ["good"] and sorted(bank.unusable) == ["a_list", "no_labels", "no_weights"]


def test_convert_force_on_a_full_disk_keeps_the_checkpoint_it_would_replace(tmp_path, capsys):
    """`ferx convert --force` (and every save over a checkpoint: a resumed run's export) deleted the old weights
    before writing the new: on a full disk (here at most 200 kB a file; the weights are 241,924 bytes) the folder was
    left without model.safetensors and the command ended in a traceback (safetensors' SafetensorError, no OSError).
    The checkpoint stays as it was and loads, the error is one line naming the file, and the next convert works."""
    import resource

    from ferx.cli import main

    h5 = SHARED / "weights" / "fer2013_mini_XCEPTION.102-0.66.hdf5"
    if not h5.is_file():
        pytest.skip(f"{h5} not found")
    out = tmp_path / "mini"
    assert main(["convert", "mini-xception", str(h5), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))  # Python ignores SIGXFSZ: a write fails with EFBIG
    try:
        assert main(["convert", "mini-xception", str(h5), "--out", str(out), "--force"]) == 1
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert capsys.readouterr().err.strip() == (
        f"ferx convert: error: {out / 'model.safetensors'} could not be written (Error while serializing: I/O error: "
        "File too large (os error 27)); the checkpoint there is as it was")
    load_checkpoint(out)
    assert main(["convert", "mini-xception", str(h5), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "card.json", "model.safetensors"]


def test_a_checkpoint_whose_classes_are_in_its_own_order_keeps_that_order(data_root, tmp_path):
    """The FER-2013 mini-Xception with its 7 outputs put in reverse order, saved with its classes in that order, names
    each output by its own card: it scores the FER-2013 test split as the shipped checkpoint does. (A card's classes
    that are a registered label set's in another order were read as that set, in its order: passed the suite.)"""
    from ferx.data.labels import LabelSet
    from ferx.evaluate import evaluate_checkpoint

    shipped = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", "cpu")
    order = list(range(len(shipped.classes)))[::-1]
    model = copy.deepcopy(shipped.model)
    with torch.no_grad():
        model.classifier.weight.copy_(shipped.model.classifier.weight[order])
        model.classifier.bias.copy_(shipped.model.classifier.bias[order])
    reversed_classes = tuple(shipped.classes[i] for i in order)
    out = save_checkpoint(model, tmp_path / "reversed", labels=LabelSet("custom", reversed_classes),
                          input_spec=shipped.input_spec)
    assert load_checkpoint(out, "cpu").classes == reversed_classes
    mine, theirs = (evaluate_checkpoint(c, "fer2013", "test", data_root, device="cpu", progress=False, limit=600)
                    for c in (out, CHECKPOINTS / "mini_xception_fer2013"))
    assert mine["accuracy"] == pytest.approx(theirs["accuracy"], abs=1e-9) and mine["accuracy"] > 0.5
    recall = [{c: m["recall"] for c, m in result["per_class"].items()} for result in (mine, theirs)]
    assert recall[0] == recall[1]


def test_the_converted_keras_model_names_its_outputs_in_kaggles_order_and_scores_as_shipped(data_root, tmp_path):
    """The Keras mini-Xception's 7 outputs are FER-2013's Kaggle label ids (angry, disgust, fear, happy, sad, surprise,
    neutral): converted, it scores the FER-2013 test split as the shipped checkpoint's card says, class by class.
    (The label set in another order, sad and surprise swapped, passed the suite: the shipped checkpoint names its
    classes on its card, and the conversion test checked the card's model name only.)"""
    from ferx.cli import main
    from ferx.evaluate import evaluate_checkpoint

    h5 = SHARED / "weights" / "fer2013_mini_XCEPTION.102-0.66.hdf5"
    if not h5.is_file():
        pytest.skip(f"{h5.name} is not in ../shared/weights")
    assert main(["convert", "mini-xception", str(h5), "--out", str(tmp_path / "port")]) == 0
    result = evaluate_checkpoint(tmp_path / "port", "fer2013", "test", data_root, device="cpu", progress=False)
    card = next(m for m in read_card(CHECKPOINTS / "mini_xception_fer2013")["metrics"]
                if (m["dataset"], m["split"]) == ("fer2013", "test"))
    assert read_card(tmp_path / "port")["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert result["accuracy"] == pytest.approx(card["accuracy"], abs=0.005)
    for c in ("sad", "surprise"):
        assert result["per_class"][c]["recall"] == pytest.approx(card["per_class"][c]["recall"], abs=0.01), c
