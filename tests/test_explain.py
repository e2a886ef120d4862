"""Explanations on real FER-2013 test faces with the trained mini-Xception, and on LANMSFF /
Conv-cut with random weights (no trained checkpoints exist for them yet)."""

import inspect
import json
import os

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image

from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split, to_model_input
from ferx.explain import (attribution_maps, cam_maps, deletion_insertion, map_agreement, map_scale,
                          native_attention, overlay)
from ferx.explain._common import LogitTarget
from ferx.explain.native import NoNativeAttention
from ferx.models import create_model

from conftest import CHECKPOINTS


@pytest.fixture(scope="module")
def mini():
    return load_checkpoint(CHECKPOINTS / "mini_xception_fer2013")


@pytest.fixture(scope="module")
def faces(data_root, mini):
    """100 FER-2013 test faces (a fixed random sample) as mini-Xception inputs."""
    split = pack_split(load_fer2013(data_root, "test"), progress=False)
    idx = np.random.default_rng(0).choice(len(split), 100, replace=False)
    return to_model_input(split.images[idx], mini.input_spec)


@pytest.fixture(scope="module")
def lanmsff():
    torch.manual_seed(0)
    return create_model("lanmsff").eval()


@pytest.fixture(scope="module")
def convcut():
    torch.manual_seed(0)
    return create_model("convcut", num_classes=8).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small batches of small models: one thread is about as fast as two on an idle machine, and
    3-20x faster when another process holds the second core (OpenMP threads wait on each other),
    so these tests' durations do not depend on the neighbours."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hooks_and_grads(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(m._backward_pre_hooks) for m in model.modules())
    grads = sum(p.grad is not None for p in model.parameters())
    return hooks, grads


def test_gradcam_beats_a_random_map_on_deletion_over_100_real_faces(mini, faces):
    """The model's probability for its predicted class falls faster when Grad-CAM's top pixels are
    blurred away than when an equally smooth random map's are. Can fail: a misplaced or inverted map
    (e.g. ranking pixels lowest-first) does worse than random."""
    maps = cam_maps(mini.model, faces, "gradcam")
    scores = [deletion_insertion(mini.model, faces[i:i + 1], maps[i], n_steps=16, n_random=1, seed=i)
              for i in range(len(faces))]
    deletion = np.mean([s.deletion_auc for s in scores])
    random_deletion = np.mean([s.random_deletion_auc for s in scores])
    insertion = np.mean([s.insertion_auc for s in scores])
    random_insertion = np.mean([s.random_insertion_auc for s in scores])
    assert deletion < random_deletion - 0.02, (deletion, random_deletion)
    assert insertion > random_insertion + 0.02, (insertion, random_insertion)
    inverted = [deletion_insertion(mini.model, faces[i:i + 1], -maps[i].values, target=maps[i].target, n_steps=16,
                                   n_random=0) for i in range(20)]
    assert np.mean([s.deletion_auc for s in inverted]) > np.mean([s.deletion_auc for s in scores[:20]])


def test_deletion_and_insertion_curves_run_between_the_image_and_its_baseline(mini, faces):
    x = faces[:1]
    m = cam_maps(mini.model, x, "gradcam")[0]
    f = deletion_insertion(mini.model, x, m, n_steps=8, n_random=2)
    probs = torch.softmax(mini.model(x), 1)[0].detach()
    assert f.deletion_curve[0] == pytest.approx(float(probs[f.target]), abs=1e-4)
    assert f.insertion_curve[-1] == pytest.approx(float(probs[f.target]), abs=1e-4)
    assert f.deletion_curve[-1] == pytest.approx(f.insertion_curve[0], abs=1e-6)  # all pixels = the baseline
    assert len(f.deletion_curve) == 9 and "blur" in f.baseline and 0 <= f.deletion_auc <= 1


def test_cam_family_on_the_trained_mini_xception(mini, faces):
    x = faces[:3]
    for method in ("gradcam", "gradcam++", "hirescam", "scorecam", "eigencam", "layercam", "xgradcam"):
        maps = cam_maps(mini.model, x, method, batch_size=128)
        assert len(maps) == 3
        for m in maps:
            assert m.raw.shape == (4, 4) and m.values.shape == (64, 64) and (m.values >= 0).all()
            assert m.kind == "cam" and m.params["target_layers"] == ["blocks.3"] and m.elapsed_s > 0
        assert (maps[0].target is None) == (method == "eigencam")
    happy = cam_maps(mini.model, x, "gradcam", targets=3)
    assert [m.target for m in happy] == [3, 3, 3]
    with pytest.raises(ValueError, match="out of range"):
        cam_maps(mini.model, x, "gradcam", targets=7)


def test_raw_gradcam_equals_pytorch_grad_cam_after_its_normalisation(mini, lanmsff, faces):
    """Stopping gradients at the target layer and keeping raw values changes nothing but the scale."""
    for model, x in ((mini.model, faces[:4]), (lanmsff, torch.rand(4, 1, 64, 64))):
        ours = cam_maps(model, x, "gradcam", targets=[0, 1, 2, 3])
        layer = model.get_submodule(ours[0].params["target_layers"][0])
        with GradCAM(model, [layer]) as cam:
            theirs = cam(x, [LogitTarget(k) for k in range(4)])
        model.zero_grad(set_to_none=True)
        # pytorch-grad-cam: min-max at the layer's resolution, resize, min-max again
        ours_scaled = scale_cam_image(scale_cam_image(np.stack([m.raw for m in ours]), (x.shape[-1], x.shape[-2])))
        assert np.allclose(ours_scaled, theirs, atol=1e-4)


def test_convcut_cam_layers_native_heatmap_and_no_leftovers(convcut):
    x = torch.randn(1, 3, 224, 224)
    default = cam_maps(convcut, x, "gradcam")[0]
    assert default.params["target_layers"] == ["attention"] and default.raw.shape == (14, 14)
    assert default.values.shape == (224, 224)
    inside = cam_maps(convcut, x, "gradcam", target_layers="backbone.blocks.22.mlp")[0]  # a channels-last ConvNeXt layer
    assert inside.raw.shape == (14, 14) and inside.params["activation_shape"] == [512, 14, 14]
    native = native_attention(convcut, x)[0]
    (heat,) = native.maps
    assert heat.method == "convcut_attention" and heat.raw.shape == (14, 14)
    assert heat.raw.sum() == pytest.approx(1.0, abs=1e-4) and "mean over 8 heads" in heat.params["aggregation"]
    assert hooks_and_grads(convcut) == (0, 0)
    assert all(p.requires_grad for p in convcut.parameters())


def test_lanmsff_native_maps_match_the_forward_pass(lanmsff):
    x = torch.rand(2, 1, 64, 64)
    results = native_attention(lanmsff, x)
    with torch.inference_mode():
        logits = lanmsff(x)
    for i, r in enumerate(results):
        assert np.allclose(r.logits, logits[i].cpu().numpy(), atol=1e-5)
        assert [m.method for m in r.maps] == ["massatt_block2_spatial", "massatt_block4_spatial"]
        assert [m.raw.shape for m in r.maps] == [(32, 32), (8, 8)]
        assert all(m.kind == "native" and m.values.shape == (64, 64) for m in r.maps)
        assert r.channel_weights["block2"].shape == (72,) and r.channel_weights["block4"].shape == (84,)
        assert all(((w > 0) & (w < 1)).all() for w in r.channel_weights.values())
    with pytest.raises(NoNativeAttention, match="no native attention"):
        native_attention(create_model("mini_xception"), x)


def test_captum_methods_signed_and_complete(mini, faces):
    x = faces[:2]
    for method in ("integrated_gradients", "saliency", "input_x_gradient", "occlusion", "guided_backprop"):
        maps = attribution_maps(mini.model, x, method, n_steps=16)
        for m in maps:
            assert m.values.shape == (64, 64) and m.kind == "attribution"
            if method == "saliency":
                assert not m.signed and (m.values >= 0).all()
            else:
                assert m.signed
        if method in ("integrated_gradients", "input_x_gradient", "occlusion"):
            assert any((m.values < 0).any() and (m.values > 0).any() for m in maps)  # sign kept
    # IG completeness: attributions sum to logit(x) - logit(baseline) (black baseline)
    ig = attribution_maps(mini.model, x[:1], "ig", targets=3, n_steps=256, internal_batch_size=128)[0]
    black = torch.full_like(x[:1], (0 - 0.5) / 0.5)
    with torch.no_grad():
        gap = float(mini.model(x[:1])[0, 3] - mini.model(black)[0, 3])
    assert ig.values.sum() == pytest.approx(gap, rel=0.03, abs=0.02)


def test_contrastive_maps_explain_a_over_b(mini, faces):
    x = faces[:2]
    a, b = 3, 4  # happy over sad
    ig_a = attribution_maps(mini.model, x, "ig", targets=a, n_steps=16)
    ig_b = attribution_maps(mini.model, x, "ig", targets=b, n_steps=16)
    ig_ab = attribution_maps(mini.model, x, "ig", targets=a, contrast=b, n_steps=16)
    for pa, pb, pab in zip(ig_a, ig_b, ig_ab):  # IG is linear in the explained output
        assert np.allclose(pab.values, pa.values - pb.values, atol=1e-4)
        assert pab.contrast == b and pab.target == a
    cam_ab = cam_maps(mini.model, x, "gradcam", targets=a, contrast=b)
    cam_a = cam_maps(mini.model, x, "gradcam", targets=a)
    assert cam_ab[0].contrast == b and not np.allclose(cam_ab[0].raw, cam_a[0].raw)


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_1000_explanations_leave_no_hooks_and_no_gradients(mini, faces):
    model = mini.model
    x = faces[:1]
    for i in range(1000):
        cam_maps(model, x, "gradcam")
        if i == 199:
            rss_after_200 = rss_mib()
    assert rss_mib() - rss_after_200 < 25  # 800 more calls: no growth beyond allocator noise
    for i in range(50):
        attribution_maps(model, x, "guided_backprop")
        attribution_maps(model, x, "saliency")
        native_attention(create_model("lanmsff").eval(), torch.rand(1, 1, 64, 64)) if i == 0 else None
    assert hooks_and_grads(model) == (0, 0)
    assert all(p.requires_grad for p in model.parameters())
    assert not torch.nn.modules.module._global_forward_hooks and not torch.nn.modules.module._global_backward_hooks


def test_agreement_and_overlay_scales():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64)).astype(np.float32)
    assert map_agreement(a, a) == {"spearman": pytest.approx(1.0), "top_k": 0.1, "top_k_iou": 1.0}
    opposite = map_agreement(a, -a)
    assert opposite["spearman"] == pytest.approx(-1.0) and opposite["top_k_iou"] == 0.0
    # ties: the top 10 % took the lowest pixel indices among equal values, so two different constant maps
    # overlapped fully (1.0) and two disjoint 16-pixel blobs by 0.87 (their zeros filled both tops)
    flat = map_agreement(np.zeros((48, 48)), np.full((48, 48), 3.0))
    assert flat["top_k_iou"] is None and json.loads(json.dumps(flat))["top_k_iou"] is None  # no top: null
    low, high = np.zeros((48, 48)), np.zeros((48, 48))
    low[40:44, 40:44], high[0:4, 40:44] = 1, 1
    assert map_agreement(low, high)["top_k_iou"] == 0.0
    wide, shifted = np.zeros((48, 48)), np.zeros((48, 48))  # 300 tied pixels each (more than 10 %), 150 shared
    wide[:20, :15], shifted[10:30, :15] = 1, 1
    assert map_agreement(wide, shifted)["top_k_iou"] == pytest.approx(150 / 450)
    spiky = a.copy()
    spiky[0, 0] = 1000.0
    assert map_scale([spiky], clip_percentile=99).vmax < 2  # one outlier does not set the top
    shared = map_scale([a, 2 * a])
    face = np.full((64, 64), 128, np.uint8)
    assert not np.array_equal(overlay(face, a, shared), overlay(face, 2 * a, shared))  # shared: 2x looks hotter
    assert np.array_equal(overlay(face, a, map_scale([a])), overlay(face, 2 * a, map_scale([2 * a])))  # per map: same
    signed = map_scale([a - 0.5])
    assert signed.signed is False and map_scale([a - 0.5], signed=True).vmin == -map_scale([a - 0.5], signed=True).vmax
    zero = np.zeros((64, 64), np.float32)
    assert np.array_equal(overlay(face, zero, map_scale([a - 0.5], signed=True))[..., 0], face)  # no evidence, no colour
    gate = 0.45 + 0.03 * a  # a MassAtt-like sigmoid gate that never closes: its contrast must still show
    assert map_scale([gate]).vmin == pytest.approx(float(gate.min()))
    coloured = overlay(face, gate, map_scale([gate]))
    assert coloured.reshape(-1, 3).std(0).max() > 10
    with pytest.raises(ValueError, match="differ in size"):
        overlay(face, np.zeros((8, 8)))


def test_the_default_map_colours_run_dark_to_bright_evenly():
    """An unsigned map's colours are ordered by lightness, in even steps, so "bright = kept, dark = suppressed" (the
    MassAtt reading) and "warm" read true, in grey print and for colour-blind readers alike: jet (the default) went
    dark blue → bright cyan/yellow → dark red, its top as dark as its bottom (CIELAB L* 13 at 0, 96, 25 at 1)."""
    from skimage.color import rgb2lab

    from ferx.analysis.disagreement import pair_tile
    from ferx.explain.overlay import DEFAULT_CMAP, colormap

    for name in (DEFAULT_CMAP, inspect.signature(pair_tile).parameters["cmap"].default or DEFAULT_CMAP):
        lightness = rgb2lab(colormap(name)(np.linspace(0, 1, 64))[None, :, :3])[0, :, 0]
        steps = np.diff(lightness)
        assert steps.min() > 0, f"{name}: lightness falls from {lightness[steps.argmin()]:.0f}"
        assert steps.max() < 3 * steps.mean(), f"{name}: uneven steps"  # perceptually even, not one jump


def test_gradients_never_run_on_a_channels_last_model(lanmsff):
    """torch 2.13 on CPU corrupts the heap in the backward of a strided 1x1 conv in channels-last: a
    model left in channels-last is switched to contiguous for the explanation and back after."""
    from ferx.explain._common import gradient_safe

    convs = [m.weight for m in lanmsff.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[1] > 1]
    lanmsff.to(memory_format=torch.channels_last)
    try:
        with gradient_safe(lanmsff):
            assert all(w.is_contiguous() for w in convs) and not any(p.requires_grad for p in lanmsff.parameters())
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
        assert all(p.requires_grad for p in lanmsff.parameters())
    finally:
        lanmsff.to(memory_format=torch.contiguous_format)


def test_every_colour_bar_says_what_its_numbers_are():
    from ferx.explain.methods import list_methods, units
    from ferx.explain.overlay import MapScale, describe_scale
    from ferx.models import get_model_info, list_models

    assert "ReLU" in units("gradcam") and "+ for it" in units("integrated_gradients") and "|gradient|" in units("saliency")
    natives = [n for m in list_models() for n in get_model_info(m).native_maps]
    assert natives and all(units(n.name) == n.units for n in natives)
    assert units("massatt_block2_spatial") == "MassAtt weight, sigmoid 0–1"
    assert all(units(m) for m in list_methods())
    assert describe_scale(MapScale(0.0, 3.5, False, 99.0), "shared") == (
        "the map's minimum to its 99th percentile; one scale for this method across models")
    assert describe_scale(MapScale(-1.0, 1.0, True, 97.5), "per-map").startswith("−/+ the 97.5th percentile of |value|")


def test_explain_progress_counts_methods_and_faithfulness_across_models(data_root, mini):
    """The app's progress bar: every model and every map reports, in order, faithfulness weighted as the
    slow part (the bar used to count models only and sat at 0 % for a whole single-model run)."""
    from ferx.explain.report import FAITHFULNESS_COST, explain_photo
    from PIL import Image

    from ferx.faces import find_faces, load_photo

    split = pack_split(load_fer2013(data_root, "test"), progress=False)
    search = find_faces(load_photo(Image.fromarray(split.images[0])), whole_image=True)
    seen = []
    explain_photo([mini, mini], search, 0, ["gradcam", "saliency"], faithfulness=True, deletion_steps=4, n_random=1,
                  progress=lambda fraction, what: seen.append((fraction, what)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0 and fractions[-1] < 1
    assert len(seen) == 2 * (2 + 2)  # per model: two maps, then their two faithfulness tests
    steps = [w.split(": ", 1)[1] for _, w in seen[:4]]
    assert steps[:2] == ["Grad-CAM", "Saliency"]
    assert steps[2].startswith("deletion/insertion of Grad-CAM → ") and steps[3].startswith("deletion/insertion of Saliency → ")
    per_model = 2 + 2 * FAITHFULNESS_COST
    assert fractions[3] == pytest.approx(0.5 * (2 + FAITHFULNESS_COST) / per_model)  # faithfulness: the long part
    assert fractions[4] == pytest.approx(0.5)  # the second model starts half-way


def test_a_nearly_constant_map_is_called_flat_where_its_own_colour_range_would_hide_it():
    from ferx.explain.overlay import flat_range

    rng = np.random.default_rng(0)
    gate = 0.157 + 0.003 * rng.standard_normal((32, 32))  # a MassAtt gate at about 0.16 everywhere
    assert flat_range(gate).startswith("nearly flat: 0.14") and flat_range(np.outer(np.hanning(8), np.hanning(8))) is None
    assert flat_range(np.zeros((4, 4))) is None and flat_range(-gate) is not None  # all zero: nothing to call flat


def test_a_conv_cut_sized_model_takes_the_smaller_deletion_budget():
    """``ferx explain --deletion-steps`` says "32; 16 for Conv-cut-sized models" and 3 / 1 random maps: Conv-cut
    (parameters counted here) gets 16 and 1, mini-Xception and LANMSFF 32 and 3."""
    from ferx.explain.faithfulness import deletion_budget
    from ferx.models import create_model

    budgets = {}
    for name in ("mini_xception", "lanmsff", "convcut"):
        model = create_model(name, num_classes=8)
        budgets[name] = (sum(p.numel() for p in model.parameters()) > 5_000_000, deletion_budget(model))
    assert budgets == {"mini_xception": (False, (32, 3)), "lanmsff": (False, (32, 3)), "convcut": (True, (16, 1))}


def test_score_cam_keeps_the_activations_of_its_face_not_of_every_masked_pass(mini, faces, monkeypatch):
    """Score-CAM scores the face masked by each of the target layer's 128 channels; the library's hooks kept
    every masked batch's activations to the end of the call (Conv-cut: 512 of them, 51 MB a request)."""
    from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients

    held, save = [], ActivationsAndGradients.save_activation

    def counting(self, module, inputs, output):
        save(self, module, inputs, output)
        held.append(sum(a.shape[0] for a in self.activations))

    monkeypatch.setattr(ActivationsAndGradients, "save_activation", counting)
    before = cam_maps(mini.model, faces[:1], "scorecam", batch_size=16)[0]
    assert max(held) == 1  # the face's own activations, read once
    assert before.raw.shape == (4, 4) and before.values.max() > 0
