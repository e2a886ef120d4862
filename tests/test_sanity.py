"""The sanity check (cascading model-parameter randomisation) on a real checkpoint and a real face."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import CHECKPOINTS, DEVICE
from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split
from ferx.data.preprocess import to_model_input
from ferx.explain.maps import ExplanationMap
from ferx.explain.sanity import INDEPENDENT_SPEARMAN, SanityCheck, SanityStep, cascading_randomization


@pytest.fixture(scope="module")
def happy_face(data_root):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    return packed.images[int(np.flatnonzero(packed.targets == 3)[0])]


def test_randomising_the_model_changes_gradcam_and_leaves_the_model_as_it_was(happy_face):
    loaded = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", DEVICE)
    x = to_model_input(torch.as_tensor(happy_face[None]), loaded.input_spec).to(DEVICE)
    weights = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    with torch.inference_mode():
        logits = loaded.model(x).clone()
    rng = torch.random.get_rng_state()

    check = cascading_randomization(loaded.model, x, ["gradcam", "saliency"], n_steps=4, classes=loaded.classes)
    again = cascading_randomization(loaded.model, x, ["gradcam", "saliency"], n_steps=4, classes=loaded.classes)

    assert all(torch.equal(weights[k], v) for k, v in loaded.model.state_dict().items())  # the model is untouched
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), logits)
    assert torch.equal(torch.random.get_rng_state(), rng)
    frame = check.frame()
    assert frame.equals(again.frame())  # seeded: the same call gives the same numbers
    assert check.target_label == "happy" and len(check.steps) == 5 and check.steps[0].label == "trained"
    assert np.allclose(frame[frame["step"] == 0][["spearman", "ssim"]], 1.0)
    # mini-Xception's Grad-CAM of a happy face is its own: with random layers it looks elsewhere
    assert check.mean_similarity()["gradcam"] < INDEPENDENT_SPEARMAN
    assert check.independent() == {"gradcam": False, "saliency": False}
    assert check.to_dict()["independent_of_model"] == {"gradcam": False, "saliency": False}


def test_the_check_draws_its_weights_from_its_own_seed_not_the_callers_random_state(happy_face):
    """The same face and seed give the same numbers whatever torch's random stream held before (the app's server draws
    from it between requests); another seed draws other weights, so other numbers."""
    loaded = load_checkpoint(CHECKPOINTS / "mini_xception_fer2013", DEVICE)
    x = to_model_input(torch.as_tensor(happy_face[None]), loaded.input_spec).to(DEVICE)
    frames = []
    for stream, seed in ((1, 0), (2, 0), (1, 1)):
        torch.manual_seed(stream)
        frames.append(cascading_randomization(loaded.model, x, ["gradcam", "saliency"], n_steps=2, seed=seed).frame())
    assert frames[0].equals(frames[1]) and not frames[0].equals(frames[2])


def _steps(maps_per_step: list[np.ndarray]) -> list[SanityStep]:
    return [SanityStep(i, [] if i == 0 else [f"layer{i}"],
                       {"edges": ExplanationMap(raw=m, values=m, method="edges", kind="attribution", model="m",
                                                target=0, signed=False)})
            for i, m in enumerate(maps_per_step)]


def test_a_map_that_ignores_the_model_is_flagged(happy_face):
    """What the check exists for: a map that stays the same whatever the weights (here the face's own
    edges, as some gradient methods nearly are) is flagged; one that changes is not."""
    face = happy_face.astype(np.float32)
    edges = np.abs(np.gradient(face)[0]) + np.abs(np.gradient(face)[1])
    rng = np.random.default_rng(0)
    same = SanityCheck("m", 0, _steps([edges] + [edges + rng.normal(0, 2, edges.shape) for _ in range(4)]))
    changed = SanityCheck("m", 0, _steps([edges] + [rng.random(edges.shape) for _ in range(4)]))
    assert same.independent() == {"edges": True}
    assert changed.independent() == {"edges": False}
    # at the threshold (mean rho 0.5: the map itself, shifted, then a flat map, which ranks nothing): flagged
    at = SanityCheck("m", 0, _steps([edges, edges + 1.0, np.zeros_like(edges)]))
    assert at.mean_similarity()["edges"] == INDEPENDENT_SPEARMAN == 0.5 and at.independent() == {"edges": True}


def test_cli_writes_the_figure_and_json(happy_face, tmp_path, capsys):
    import json

    from PIL import Image

    from ferx.cli import main

    photo = tmp_path / "happy.png"
    Image.fromarray(happy_face).resize((192, 192)).save(photo)
    out = tmp_path / "sanity.png"
    assert main(["sanity", str(photo), "--model", str(CHECKPOINTS / "lanmsff_ferplus"), "--whole-image",
                 "--steps", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    assert Image.open(out).size[0] > 600
    # LANMSFF has native maps: the default methods check them beside Grad-CAM and saliency
    assert {"massatt_block4_spatial", "gradcam", "saliency"} <= set(report["independent_of_model"])
    assert report["target_label"] == "happy" and len(report["steps"]) == 4
    assert "gradcam: mean rho" in printed and "depends on the model" in printed
    assert printed.startswith("lanmsff (lanmsff_ferplus) loaded on cpu\n")


def test_the_figure_says_when_a_randomised_map_is_flat(happy_face):
    """A fully randomised Grad-CAM can be 0 everywhere (every ReLU'd weight negative): drawn on its own range
    it was a solid blue square with nothing to say why."""
    face = happy_face.astype(np.float32)
    flat = np.zeros_like(face)
    check = SanityCheck("m", 0, _steps([face, face + 1.0, flat]))
    fig = check.figure(face=happy_face)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["flat: every\nvalue 0"]  # the flat map only


def test_the_figure_says_what_each_number_under_a_map_is(happy_face):
    """Under every map the figure gives ρ and SSIM; its title said what ρ is, nowhere what SSIM is, nor which end of
    a map's colours is high (product.md: the app explains what every map means)."""
    face = happy_face.astype(np.float32)
    fig = SanityCheck("m", 0, _steps([face, face + 1.0, np.flipud(face)])).figure(face=happy_face)
    labels = {ax.get_xlabel().split(" ")[0] for ax in fig.axes if ax.get_xlabel()}
    title = " ".join(fig._suptitle.get_text().split())
    assert labels == {"ρ"} and "· SSIM" in fig.axes[1].get_xlabel()
    assert "ρ = Spearman" in title and "SSIM = structural similarity" in title
    assert "dark = low, bright = high" in title


def test_cli_refuses_more_steps_than_the_model_has_layers_before_any_map(tmp_path, monkeypatch, capsys):
    """--steps 99 on mini-Xception was cut to its 37 layers with weights, silently; now it is refused, naming the
    maximum, before the photo is read or any map computed."""
    from ferx.cli import main
    from ferx.explain.sanity import max_steps

    def never(*args, **kwargs):
        raise AssertionError("the maps were computed for a refused check")

    monkeypatch.setattr("ferx.explain.sanity.cascading_randomization", never)
    mini = CHECKPOINTS / "mini_xception_fer2013"
    assert max_steps(load_checkpoint(mini).model) == 37
    assert main(["sanity", str(tmp_path / "missing.png"), "--model", str(mini), "--steps", "38"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("ferx sanity: error: --steps 38: mini_xception (mini_xception_fer2013) has 37 layers with weights, "
                   "so at most 37 steps (one layer each)")


def test_an_early_blocks_attention_is_judged_on_the_steps_that_reach_it(happy_face):
    """LANMSFF's block-2 attention is computed before the layers the cascade randomises first: it was the trained
    map itself (ρ 1.00) at 3 of the 6 default steps, then 0.14 at each step that randomised its block, and the
    mean over all six (0.57) flagged it as not depending on the model, on every face. The mean is over the steps
    from the first that changes a map; a map no step changes is still flagged."""
    loaded = load_checkpoint(CHECKPOINTS / "lanmsff_ferplus", DEVICE)
    x = to_model_input(torch.as_tensor(happy_face[None]), loaded.input_spec).to(DEVICE)
    check = cascading_randomization(loaded.model, x, ["native"])  # the app's default 6 steps
    name = "massatt_block2_spatial"
    block2 = check.frame().set_index(["map", "step"]).loc[name]
    trained = check.steps[0].maps[name].values
    untouched = [s.index for s in check.steps[1:] if np.array_equal(s.maps[name].values, trained)]
    assert untouched == [1, 2, 3] and (block2.loc[untouched, "spearman"] > 0.999).all()  # the trained map itself
    reached = block2.loc[4:, "spearman"]
    assert check.mean_similarity()[name] == pytest.approx(reached.mean())
    assert check.independent()[name] is False, block2

    face = happy_face.astype(np.float32)
    rng = np.random.default_rng(0)
    late = SanityCheck("m", 0, _steps([face, face, face] + [rng.random(face.shape) for _ in range(3)]))
    never = SanityCheck("m", 0, _steps([face] * 5))
    assert late.mean_similarity()["edges"] < 0.1 and late.independent() == {"edges": False}
    # in any units: the same maps a billion times smaller (a gradient through a confident softmax is tiny) change at
    # the same step, so they get the same mean
    tiny = SanityCheck("m", 0, _steps([step.maps["edges"].values * 1e-9 for step in late.steps]))
    assert tiny.mean_similarity()["edges"] == pytest.approx(late.mean_similarity()["edges"])
    assert never.mean_similarity()["edges"] == pytest.approx(1.0) and never.independent() == {"edges": True}


def test_the_figure_is_legible_in_the_app_on_a_projector(happy_face):
    """The app shows the default check (the face, the trained model, 6 steps) 958 px wide in a 1,024-px window: its
    6–8 pt text came out 6–8 px high there. Every text is now at least 10 px high at that width, none overlaps
    another or leaves the figure (the longest layer names of ferx's models, four levels deep)."""
    from ferx.explain.sanity import DEFAULT_STEPS

    face = happy_face.astype(np.float32)
    names = ["trained", "backbone.stages.2.blocks.20", "backbone.blocks.14.norm", "backbone.stages.1.blocks",
             "massatt_block4.spatial.conv", "backbone.stem.0", "features.0.conv"]
    rng = np.random.default_rng(0)
    # the widest numbers under a map: both negative ("ρ -1.00 · SSIM -0.97")
    maps = [face, -face] + [rng.random(face.shape) for _ in range(DEFAULT_STEPS - 1)]
    steps = [SanityStep(i, [] if i == 0 else [names[i]],
                        {m: ExplanationMap(raw=v, values=v, method=m, kind="attribution", model="m", target=0,
                                           signed=False) for m in ("native", "gradcam", "saliency")})
             for i, v in enumerate(maps)]
    fig = SanityCheck("convcut (convcut_ferplus)", 3, steps, classes=["a", "b", "c", "happy"]).figure(
        face=happy_face, photo="fer2013_test_1074_happy.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    shown = 958 / fig.bbox.width  # the app's plot width over the figure's own, at its 100 dpi
    texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_fontsize"))
             if t.get_visible() and t.get_text().strip()]
    assert min(t.get_fontsize() * fig.dpi / 72 * shown for t in texts) >= 10
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    assert all(b.x0 >= 0 and b.y0 >= 0 and b.x1 <= fig.bbox.width and b.y1 <= fig.bbox.height for _, b in boxes)
    overlapping = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
    assert not overlapping, overlapping
