import pytest
import torch
from safetensors.torch import save_file

from ferx.explain.cam import resolve_target_layers
from ferx.models import create_model, get_model_info, list_models
from ferx.models.convcut import ConvCut
from ferx.models.lanmsff import pwfs


def n_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_registry_lists_the_three_networks():
    assert list_models() == ["convcut", "lanmsff", "mini_xception"]
    with pytest.raises(KeyError, match="registered models"):
        get_model_info("resnet")


@pytest.mark.parametrize("classes, trainable", [(7, 356_294), (8, 356_451)])
def test_lanmsff_parameter_counts(classes, trainable):
    model = create_model("lanmsff", num_classes=classes)
    assert n_params(model) == trainable
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert running == 2_112


def test_lanmsff_block_shapes_and_attention_maps():
    model = create_model("lanmsff").eval()
    x = torch.randn(2, 1, 64, 64)
    f1 = model.block1(x)
    f2 = model.block2(f1)
    f3 = model.block3(f2)
    f4 = model.block4(f3)
    assert [tuple(f.shape[1:]) for f in (f1, f2, f3, f4)] == [(66, 32, 32), (72, 16, 16), (78, 8, 8), (84, 4, 4)]
    assert model.forward_features(x).shape == (2, 156)
    with torch.inference_mode():
        out = model.forward_attention(x)
        assert torch.allclose(out["logits"], model(x), atol=1e-6)  # same network, same numbers
    spatial, channel = out["maps"], out["channel_weights"]
    assert channel["block2"].shape == (2, 72) and spatial["massatt_block2_spatial"].shape == (2, 32, 32)
    assert channel["block4"].shape == (2, 84) and spatial["massatt_block4_spatial"].shape == (2, 8, 8)
    for m in [*spatial.values(), *channel.values()]:
        assert (m > 0).all() and (m < 1).all()  # sigmoid maps


def test_massatt_spatial_branch_has_281_parameters_and_needs_multiples_of_4():
    att = create_model("lanmsff").block2.att
    assert n_params(att.spatial) == 281
    with pytest.raises(ValueError, match="divisible by 4"):
        att(torch.randn(1, 72, 30, 30))


def test_pwfs_is_mean_of_max_and_median_of_channel_thirds():
    x = torch.randn(3, 66, 5, 5)
    a, b, c = x.chunk(3, dim=1)
    stacked = torch.stack([a, b, c])
    expected = 0.5 * (stacked.max(0).values + stacked.median(0).values)
    assert torch.allclose(pwfs(x), expected, atol=1e-6)


def test_mini_xception_parameter_count_matches_keras():
    model = create_model("mini_xception")
    stats = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    assert n_params(model) + stats == 58_423  # Keras counts moving means and variances as parameters


@pytest.fixture(scope="module")
def convcut():
    return create_model("convcut", num_classes=8).eval()


def test_convcut_truncation_and_det(convcut):
    assert n_params(convcut.backbone) == 51_640_448
    assert n_params(convcut.det) == 206_336
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        feats = convcut.backbone(x)
        assert feats.shape == (1, 512, 14, 14)
        assert convcut.det(feats).shape == (1, 256, 2, 2)
        assert convcut.forward_head(convcut.forward_features(x), pre_logits=True).shape == (1, 32)


def test_convcut_is_batch_independent_and_exposes_a_spatial_heatmap(convcut):
    torch.manual_seed(0)
    batch = torch.randn(4, 3, 224, 224)
    with torch.inference_mode():
        together = convcut(batch)
        alone = convcut(batch[2:3])
        out = convcut.forward_attention(batch[:2])
    assert torch.allclose(alone, together[2:3], atol=1e-4)
    assert not torch.allclose(together[0], together[1], atol=1e-4)  # different images, different logits
    assert torch.allclose(out["logits"], together[:2], atol=1e-4)
    heatmap = out["maps"]["convcut_attention"]
    assert heatmap.shape == (2, 14, 14)
    assert torch.allclose(heatmap.sum((1, 2)), torch.ones(2), atol=1e-4)


def test_convcut_backbone_weights_from_a_local_file(tmp_path):
    import timm

    reference = timm.create_model("convnext_base", pretrained=False)
    path = tmp_path / "convnext_base.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    model = ConvCut(num_classes=7, backbone_weights=str(path))
    assert torch.equal(model.backbone.stem[0].weight, reference.stem[0].weight)
    assert torch.equal(model.backbone.tail.conv_dw.weight, reference.stages[2].blocks[23].conv_dw.weight)


def test_convcut_backbone_weights_errors_are_clear(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        ConvCut(backbone_weights=str(tmp_path / "missing.safetensors"))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(ValueError, match="not a convnext_base state dict"):
        ConvCut(backbone_weights=str(wrong))
    ConvCut(backbone_weights="hub")  # offline in tests: warns and falls back to random init
    assert "not available from the hub" in caplog.text


@pytest.mark.parametrize("name, size, channels", [("lanmsff", 64, 1), ("mini_xception", 64, 1), ("convcut", 224, 3)])
def test_every_model_declares_input_embedding_and_cam_layers(name, size, channels):
    info = get_model_info(name)
    assert (info.input_spec.size, info.input_spec.channels) == (size, channels)
    assert len(info.input_spec.mean) == len(info.input_spec.std) == channels
    model = create_model(name).eval()
    captured = []
    (layer,), _ = resolve_target_layers(model)  # the registry's default
    handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.inference_mode():
        emb = model.forward_head(model.forward_features(torch.randn(2, channels, size, size)), pre_logits=True)
    handle.remove()
    assert emb.ndim == 2 and emb.shape[0] == 2
    assert captured[0].ndim == 4 and captured[0].shape[-1] > 1  # an NCHW map, ready for Grad-CAM
    rows = {p.shape[0] for p in model.get_submodule(info.classifier).parameters()}
    assert rows == {7}  # the declared classifier has one row per class (what --init-from maps by name)


@pytest.mark.parametrize("name", ["mini_xception", "lanmsff"])
def test_fast_forward_gives_the_models_outputs_and_follows_weight_changes(name):
    """The frozen channels-last twin that scores a few faces gives the model's own logits, is remade
    when a weight changes in place (training, a sanity-check randomisation), and leaves the model as it was."""
    from ferx.memory_format import fast_forward, is_channels_last

    torch.manual_seed(0)
    info = get_model_info(name)
    model = create_model(name, num_classes=7).eval()
    x = torch.randn(2, info.input_spec.channels, info.input_spec.size, info.input_spec.size)
    with torch.inference_mode():
        expected = model(x)
    torch.testing.assert_close(fast_forward(model, x), expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        next(model.parameters()).mul_(-3.0)  # in place: same storage, new values
    with torch.inference_mode():
        changed = model(x)
    assert not torch.allclose(changed, expected, atol=1e-3)
    torch.testing.assert_close(fast_forward(model, x), changed, atol=1e-4, rtol=1e-4)
    assert not is_channels_last(model) and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("checkpoint", ["mini_xception_fer2013", "lanmsff_fer2013"])
def test_prepared_twin_runs_on_opencv_and_scores_real_faces_as_the_model_does(checkpoint, data_root):
    """prepare_fast_forward (the app at start-up) puts the one-face twin on OpenCV's DNN engine: on 40 FER-2013
    test faces it gives the model's logits (1e-4) and top class, also from four threads at once, three faces at
    once get an OpenCV twin of their own, and it is remade on OpenCV's engine when a weight changes."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import CHECKPOINTS
    from ferx.checkpoint import load_checkpoint
    from ferx.data import load_split, pack_split
    from ferx.data.preprocess import to_model_input
    from ferx.memory_format import _TWINS, fast_forward, prepare_fast_forward
    from ferx.opencv_twin import OpenCVTwin

    loaded = load_checkpoint(CHECKPOINTS / checkpoint, "cpu")
    model, spec = loaded.model, loaded.input_spec
    faces = pack_split(load_split("fer2013", "test", data_root), progress=False).images[:40]
    xs = [to_model_input(face[None], spec) for face in faces]
    assert prepare_fast_forward(model, xs[0])
    assert isinstance(_TWINS[model][tuple(xs[0].shape)].twin, OpenCVTwin)
    with torch.inference_mode():
        expected = [model(x) for x in xs]
    got = [fast_forward(model, x) for x in xs]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    assert [int(g.argmax()) for g in got] == [int(e.argmax()) for e in expected]
    with ThreadPoolExecutor(4) as pool:
        at_once = list(pool.map(lambda x: fast_forward(model, x), xs))
    assert all(torch.equal(a, g) for a, g in zip(at_once, got))
    three = torch.cat(xs[:3])  # a photo with three faces: an OpenCV twin of its own, made on first use
    torch.testing.assert_close(fast_forward(model, three), torch.cat(expected[:3]), atol=1e-4, rtol=1e-4)
    assert isinstance(_TWINS[model][tuple(three.shape)].twin, OpenCVTwin)
    with torch.no_grad():
        next(model.parameters()).mul_(-3.0)
    with torch.inference_mode():
        changed = model(xs[0])
    torch.testing.assert_close(fast_forward(model, xs[0]), changed, atol=1e-4, rtol=1e-4)
    assert isinstance(_TWINS[model][tuple(xs[0].shape)].twin, OpenCVTwin)


def test_opencv_twin_is_refused_where_it_cannot_give_the_models_outputs():
    """No OpenCV twin for a model with two outputs or an operation OpenCV's engine lacks: torch keeps it."""
    from ferx.opencv_twin import opencv_twin

    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    class Determinant(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.det(x)

    x = torch.randn(1, 1, 8, 8)
    assert opencv_twin(TwoOutputs(), x) is None
    assert opencv_twin(Determinant(), x) is None
    assert opencv_twin(torch.nn.Conv2d(1, 2, 3), x) is not None


def test_twin_survives_a_batch_round_trip_and_is_made_in_fp32_under_an_autocast():
    """A batch through the model (channels-last and back: every weight moved, none changed) keeps the one-face
    twin instead of remaking it; a twin prepared under a bf16 autocast still runs in fp32 outside it."""
    from ferx.inference import predict_logits
    from ferx.memory_format import _TWINS, fast_forward, prepare_fast_forward
    from ferx.models import get_model_info

    torch.manual_seed(0)
    spec = get_model_info("mini_xception").input_spec
    model = create_model("mini_xception", num_classes=7).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert prepare_fast_forward(model, x)
    twin = _TWINS[model][(1, 1, 64, 64)].twin
    with torch.inference_mode():
        expected = model(x)
    got = fast_forward(model, x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    predict_logits(model, spec, torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8), precision="fp32")
    fast_forward(model, x)
    assert _TWINS[model][(1, 1, 64, 64)].twin is twin
