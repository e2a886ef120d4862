"""ferx as a library in a notebook: the same model object is predicted with, explained, sanity-checked and
occluded again and again, so no call may leave it changed — its training flags (every module's), its weights and
batch-norm statistics, its hooks — and misuse gets one message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CHECKPOINTS, DEVICE
from ferx.checkpoint import load_checkpoint
from ferx.data import load_split, pack_split, to_model_input
from ferx.explain import cam_maps, deletion_insertion, get_method, native_attention
from ferx.explain.occlusion import OccludedFace, occlusion_effect
from ferx.explain.sanity import cascading_randomization
from ferx.explain.stability import stability_probe
from ferx.inference import predict_logits


@pytest.fixture(scope="module")
def lanmsff():
    return load_checkpoint(CHECKPOINTS / "lanmsff_fer2013", DEVICE)


@pytest.fixture(scope="module")
def ckplus(data_root):
    return pack_split(load_split("ckplus", "test", data_root), progress=False)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _modes(model):
    return {name: m.training for name, m in model.named_modules()}


def test_a_model_in_training_mode_leaves_every_call_as_it_came(lanmsff, ckplus):
    """A model being fine-tuned (train mode, one batch-norm layer frozen in eval mode) keeps every module's
    mode and every buffer: native attention and deletion/insertion left it in eval mode, the sanity check ran
    its prediction through it in train mode (60 batch-norm statistics changed), Grad-CAM put the frozen
    layer back in train mode."""
    model, spec = lanmsff.model, lanmsff.input_spec
    x = to_model_input(ckplus.images[70:71], spec).to(DEVICE)
    crop = np.repeat(ckplus.images[70][..., None], 3, axis=2)
    gradcam = cam_maps(model, x, "gradcam")[0]
    calls = {
        "native_attention": lambda: native_attention(model, x),
        "gradcam": lambda: cam_maps(model, x, "gradcam"),
        "saliency": lambda: get_method("saliency")(model, x),
        "deletion_insertion": lambda: deletion_insertion(model, x, gradcam, n_steps=4, n_random=1),
        "sanity": lambda: cascading_randomization(model, x, ["gradcam"], n_steps=2),
        "occlusion_effect": lambda: occlusion_effect(model, spec, list(lanmsff.classes),
                                                     OccludedFace(crop, crop[::-1].copy(), 0.5)),
        "stability_probe": lambda: stability_probe(model, spec, list(lanmsff.classes), crop),
        "predict_logits": lambda: predict_logits(model, spec, ckplus.images[:4]),
    }
    try:
        for what, call in calls.items():
            model.train()
            model.block1.conv1[1].eval()  # a frozen batch norm, as fine-tuning often has
            modes = _modes(model)
            state = {k: v.clone() for k, v in model.state_dict().items()}
            call()
            assert _modes(model) == modes, f"{what} changed the model's training flags"
            changed = [k for k, v in model.state_dict().items() if not torch.equal(v, state[k])]
            assert not changed, f"{what} changed {len(changed)} weights or statistics, e.g. {changed[:2]}"
    finally:
        model.eval()


def test_a_class_index_of_any_integer_type_is_a_target(lanmsff, ckplus):
    """``run.preds[i]`` is a numpy integer and ``logits.argmax()`` a 0-d tensor: both name a class
    ('numpy.int64' object is not iterable before), and a generator is one per image as a list is (it was refused);
    a class name, a float or a boolean is refused by name."""
    x = to_model_input(ckplus.images[70:72], lanmsff.input_spec).to(DEVICE)
    expected = [m.values for m in cam_maps(lanmsff.model, x, "gradcam", targets=3)]
    for target in (np.int64(3), torch.tensor(3), np.array([3, 3]), [np.int64(3), 3], (t for t in (3, 3))):
        maps = cam_maps(lanmsff.model, x, "gradcam", targets=target)
        assert [m.target for m in maps] == [3, 3]
        assert all(np.array_equal(a.values, b) for a, b in zip(maps, expected))
    assert [m.target for m in get_method("saliency")(lanmsff.model, x, targets=np.int64(3))] == [3, 3]
    with pytest.raises(TypeError, match=r"targets: a class index \(int\) expected, not 'happy'"):
        cam_maps(lanmsff.model, x, "gradcam", targets="happy")
    with pytest.raises(TypeError, match="not 1.5"):
        cam_maps(lanmsff.model, x, "gradcam", targets=[1.5, 2])
    for flag in (True, np.bool_(True), torch.tensor([True, False])):  # Python's True is an int: it was class 1
        with pytest.raises(TypeError, match=r"a class index \(int\) expected, not (np\.)?(True|tensor\(True\))"):
            cam_maps(lanmsff.model, x, "gradcam", targets=flag)


@pytest.mark.parametrize("call", ["gradcam", "saliency", "native", "deletion", "sanity"])
def test_an_input_that_does_not_fit_the_model_is_named(lanmsff, ckplus, call):
    """Every explanation entry point checks its input against the model: numpy, uint8 pixels, float64, another
    device, RGB for a gray model each get one message (a convolution's 'expected input[1, 3, 64, 64] to have 1
    channels' or 'Input type (unsigned char) and bias type (float)' from 19 frames down before)."""
    model = lanmsff.model
    x = to_model_input(ckplus.images[70:71], lanmsff.input_spec).to(DEVICE)
    run = {"gradcam": lambda v: cam_maps(model, v, "gradcam"),
           "saliency": lambda v: get_method("saliency")(model, v),
           "native": lambda v: native_attention(model, v),
           "deletion": lambda v: deletion_insertion(model, v, np.ones((8, 8), np.float32)),
           "sanity": lambda v: cascading_randomization(model, v, ["gradcam"], n_steps=1)}[call]
    with pytest.raises(TypeError, match="as a torch.Tensor, not numpy.ndarray"):
        run(x.cpu().numpy())
    with pytest.raises(TypeError, match="float model input, got torch.uint8"):
        run(torch.as_tensor(ckplus.images[70:71])[:, None].to(DEVICE))
    with pytest.raises(TypeError, match="the input is torch.float64 and lanmsff's weights torch.float32"):
        run(x.double())
    with pytest.raises(ValueError, match="the input is on meta and lanmsff on"):
        run(x.to("meta"))
    with pytest.raises(ValueError, match="lanmsff reads 1-channel images, the input has 3 channels"):
        run(x.expand(-1, 3, -1, -1))


def test_a_model_built_for_other_channels_is_checked_against_its_own(ckplus):
    """create_model takes the architecture's options (LANMSFF and mini-Xception: in_chans): a LANMSFF built for RGB
    was refused its own 3-channel input ('lanmsff reads 1-channel images') by the check against the registry's
    channels, and a gray input reached the convolution."""
    from ferx.models import create_model

    model = create_model("lanmsff", num_classes=7, in_chans=3).eval().to(DEVICE)
    x = torch.randn(1, 3, 64, 64, device=DEVICE)
    assert cam_maps(model, x, "gradcam")[0].values.shape == (64, 64)
    with pytest.raises(ValueError, match="lanmsff reads 3-channel images, the input has 1 channels"):
        cam_maps(model, x[:, :1], "gradcam")


def test_sanity_check_refuses_a_batch_by_name(lanmsff, ckplus):
    x = to_model_input(ckplus.images[70:72], lanmsff.input_spec).to(DEVICE)
    with pytest.raises(ValueError, match="one image .* not a batch of 2"):
        cascading_randomization(lanmsff.model, x, ["gradcam"], n_steps=1)


def test_to_model_input_refuses_one_image_instead_of_misreading_it(lanmsff, ckplus):
    """One H x W x 3 crop was read as a batch of H images 3 pixels wide (120 'faces' from one 120-px crop);
    one H x W face failed in a permute."""
    with pytest.raises(ValueError, match=r"got shape \(120, 120, 3\): one image\? pass images\[None\]"):
        to_model_input(np.zeros((120, 120, 3), np.uint8), lanmsff.input_spec)
    with pytest.raises(ValueError, match=r"got shape \(48, 48\): one image\?"):
        to_model_input(ckplus.images[70], lanmsff.input_spec)
    assert to_model_input(ckplus.images[70][None], lanmsff.input_spec).shape == (1, 1, 64, 64)
    assert to_model_input(np.zeros((2, 120, 120, 3), np.uint8), lanmsff.input_spec).shape == (2, 1, 64, 64)


def test_load_checkpoint_takes_a_checkpoint_by_name_from_any_folder(tmp_path, monkeypatch):
    """``ferx models`` lists checkpoints by name and every command takes the name; in Python
    ``load_checkpoint("mini_xception_fer2013")`` (and ``ferx.analysis.analyze([...])``) failed outside the
    repository ("is not a ferx checkpoint: card.json not found")."""
    monkeypatch.delenv("FERX_CHECKPOINTS", raising=False)
    monkeypatch.chdir(tmp_path)
    loaded = load_checkpoint("mini_xception_fer2013")
    assert loaded.path == CHECKPOINTS / "mini_xception_fer2013" and loaded.trained
    from ferx.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="nosuch is not a ferx checkpoint"):
        load_checkpoint("nosuch")


def test_explanations_inside_a_callers_inference_mode_give_the_same_maps(lanmsff, ckplus):
    """A notebook cell under ``torch.inference_mode()`` (as one scores faces): a gradient method raised
    'element 0 of tensors does not require grad', the sanity check 'Inference tensors cannot be saved for
    backward'; now the maps are those drawn outside it."""
    model = lanmsff.model
    x = to_model_input(ckplus.images[70:71], lanmsff.input_spec).to(DEVICE)
    methods = ("gradcam", "saliency", "integrated_gradients")
    outside = {m: get_method(m)(model, x)[0].values for m in methods}
    check = cascading_randomization(model, x, ["gradcam"], n_steps=2).spearman_table()
    with torch.inference_mode():
        xi = to_model_input(ckplus.images[70:71], lanmsff.input_spec).to(DEVICE)
        for m in methods:
            assert np.array_equal(get_method(m)(model, xi)[0].values, outside[m]), m
        assert cascading_randomization(model, xi, ["gradcam"], n_steps=2).spearman_table().equals(check)
        assert torch.is_inference_mode_enabled()
    assert not any(p.is_inference() for p in model.parameters())
