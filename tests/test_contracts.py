"""Contracts over the registries, as timm's tests iterate ``list_models()``: every registered model,
explanation method and dataset is checked here, so an addition is tested without editing tests.
And the module graph of ferx/ and webapp/ has no import circle."""

from __future__ import annotations

import ast

import numpy as np
import pytest
import torch
import torch.nn as nn

from ferx.checkpoint import load_checkpoint, save_checkpoint
from ferx.data import available_datasets, get_dataset_info, get_label_set, list_datasets, load_split
from ferx.explain import MethodOptions, get_method, list_methods, native_attention
from ferx.explain.methods import method_help, reading
from ferx.explain.native import NoNativeAttention, has_native_attention
from ferx.memory_format import SMALL_MODEL
from ferx.models import NativeMap, create_model, get_model_info, list_models
from ferx.models._registry import MODELS, InputSpec, register_model

from conftest import REPO, SHARED
from test_explain_cli import one_thread  # noqa: F401  (autouse: one thread, durations independent of neighbours)

KIND = {"native": "native", "cam": "cam", "captum": "attribution"}


@pytest.fixture(scope="module")
def models():
    """Every registered model with random (seeded) weights, built once."""
    out = {}
    for name in list_models():
        torch.manual_seed(0)
        out[name] = create_model(name, num_classes=len(get_label_set(get_model_info(name).default_labels))).eval()
    return out


def small_input(name: str, model: nn.Module) -> torch.Tensor:
    """Two images: at the registered size, or 96 px for models too big to explain at 224 px in a test."""
    spec = get_model_info(name).input_spec
    size = 96 if sum(p.numel() for p in model.parameters()) >= SMALL_MODEL else spec.size
    return torch.randn(2, spec.channels, size, size, generator=torch.Generator().manual_seed(1))


def leftovers(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(m._backward_pre_hooks) for m in model.modules())
    return hooks, sum(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- models

@pytest.mark.parametrize("name", list_models())
def test_every_model_honours_its_registration(name, models, tmp_path):
    info, model = get_model_info(name), models[name]
    spec = info.input_spec
    x = torch.randn(2, spec.channels, spec.size, spec.size)
    captured = {}
    handles = [model.get_submodule(layer).register_forward_hook(lambda m, i, o, k=layer: captured.__setitem__(k, o))
               for layer in info.cam_target_layers]
    with torch.inference_mode():
        logits = model(x)
        emb = model.forward_head(model.forward_features(x), pre_logits=True)
    for h in handles:
        h.remove()
    assert logits.shape == (2, model.num_classes) and emb.ndim == 2 and emb.shape[0] == 2
    for layer in info.cam_target_layers:  # every declared CAM layer gives an NCHW map
        assert captured[layer].ndim == 4 and captured[layer].shape[-1] > 1, layer
    if info.native_maps:
        with torch.inference_mode():
            out = model.forward_attention(x)
        assert set(out) == {"logits", "maps", "channel_weights", "params"}
        assert torch.allclose(out["logits"], logits, atol=1e-4)
        assert list(out["maps"]) == [m.name for m in info.native_maps]
        for m in info.native_maps:
            assert tuple(out["maps"][m.name].shape) == (2, *m.shape) and m.reading
            if m.channel_weights:
                assert out["channel_weights"][m.channel_weights].shape[0] == 2
    else:
        assert not has_native_attention(model)
    ckpt = save_checkpoint(model, tmp_path / name, labels=get_label_set(info.default_labels))
    loaded = load_checkpoint(ckpt)
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), logits, atol=1e-5)
    assert loaded.trained and loaded.display == f"{name} ({name})"


# ---------------------------------------------------------------- explanation methods

@pytest.mark.parametrize("method", list_methods())
@pytest.mark.parametrize("name", list_models())
def test_every_method_on_every_model(name, method, models):
    record, model = get_method(method), models[name]
    x = small_input(name, model)
    big = sum(p.numel() for p in model.parameters()) >= SMALL_MODEL
    if big and record.cost == "heavy":
        pytest.skip(f"{method} on {name}: minutes on CPU (bench/bench_explain.py times it)")
    if record.family == "native" and not get_model_info(name).native_maps:
        with pytest.raises(NoNativeAttention):
            record(model, x)
        return
    maps = record(model, x, targets=[1, 2], options=MethodOptions(ig_steps=4))
    per_image = len(get_model_info(name).native_maps) if record.family == "native" else 1
    assert len(maps) == 2 * per_image
    for m in maps:
        assert m.values.shape == x.shape[-2:] and np.isfinite(m.values).all()
        assert m.kind == KIND[record.family] and m.signed == record.signed
        assert record.signed or m.values.min() >= -1e-6
        if record.class_agnostic:
            assert m.target is None
    if not record.class_agnostic:
        assert [m.target for m in maps] == [1, 2]
    assert leftovers(model) == (0, 0) and all(p.requires_grad for p in model.parameters())


def test_every_method_and_native_map_can_be_read_and_named():
    help_text = method_help()
    for method in list_methods():
        record = get_method(method)
        assert record.reading and record.title and method in help_text
        assert all(get_method(alias) is record for alias in record.aliases)
    for name in list_models():
        for native in get_model_info(name).native_maps:
            assert reading(native.name) == native.reading
    with pytest.raises(ValueError, match="unknown method"):
        get_method("magic")


# ---------------------------------------------------------------- a model with attention, added in one place

class TinyAttention(nn.Module):
    """A throw-away model with its own spatial gate: what a new attention model has to provide."""

    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.gate = nn.Conv2d(8, 1, 1)
        self.head = nn.Linear(8, num_classes)

    def _gated(self, x):
        f = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.gate(f))
        return f * gate, gate[:, 0]

    def forward_features(self, x):
        return self._gated(x)[0].mean((2, 3))

    def forward_head(self, x, pre_logits: bool = False):
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def forward_attention(self, x):
        f, gate = self._gated(x)
        return {"logits": self.head(f.mean((2, 3))), "maps": {"tiny_gate": gate}, "channel_weights": {},
                "params": {}}


def test_a_new_model_with_attention_needs_only_its_registration():
    register_model("tiny_attention", input_spec=InputSpec(32, 1, (0.5,), (0.5,)), default_labels="fer2013",
                   description="test-only", cam_target_layers=("conv",),
                   native_maps=(NativeMap("tiny_gate", (16, 16), "Tiny gate", "The tiny model's gate (native)."),))(TinyAttention)
    try:
        model = create_model("tiny_attention").eval()
        x = torch.randn(1, 1, 32, 32)
        (native,) = native_attention(model, x)
        assert [m.method for m in native.maps] == ["tiny_gate"] and native.maps[0].raw.shape == (16, 16)
        assert reading("tiny_gate") == "The tiny model's gate (native)."
        assert get_method("gradcam")(model, x)[0].params["target_layers"] == ["conv"]
    finally:
        MODELS.remove("tiny_attention")
    assert "tiny_attention" not in list_models()


# ---------------------------------------------------------------- datasets

@pytest.mark.parametrize("dataset", list_datasets())
def test_every_dataset_registration_prepares_loads_and_is_offered(dataset, data_root):
    info = get_dataset_info(dataset)
    assert (SHARED / "datasets" / info.archive).is_file() and (data_root / info.folder).is_dir()
    assert dataset in available_datasets(data_root)
    splits = {s: load_split(dataset, s, data_root) for s in ("train", "val", "test")}
    assert all(len(s) > 0 for s in splits.values())
    paths = [set(s.paths) for s in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])  # no file in two splits
    assert len(info.loader(data_root / info.folder, "test")) == len(splits["test"])  # root or its own folder
    from ferx.cli import build_parser

    prepare = build_parser()._subparsers._group_actions[0].choices["data"]._subparsers._group_actions[0]
    assert dataset in prepare.choices["prepare"].format_help()


# ---------------------------------------------------------------- the module graph

def module_imports(packages=("ferx", "webapp")) -> dict[str, set[str]]:
    """Every import statement (top-level or inside a function) of every module, as edges between
    the modules of ``packages``."""
    files = {}
    for pkg in packages:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    edges.add(sub if sub in files else base)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_a_module_that_imports_it_back():
    graph = module_imports()
    assert "ferx.paths" in graph["ferx.data.datasets"] and "ferx.cache" in graph["ferx.data.packed"]  # it sees edges
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # and it sees circles
    assert cycles(graph) == []


def test_the_command_line_offers_the_choices_and_defaults_the_library_declares():
    """ferx's parser imports no torch (``ferx --help`` starts in 0.4 s), so a few choices and defaults of modules
    that do are written out again in ferx/cli.py: they must stay the library's."""
    from ferx.cli import build_parser
    from ferx.device import PRECISIONS
    from ferx.explain.overlay import SCALES
    from ferx.inference import BATCH_SIZE

    commands = build_parser()._subparsers._group_actions[0].choices

    def option(command: str, flag: str):
        return next(a for a in commands[command]._actions if flag in a.option_strings)

    assert option("explain", "--scale").choices == list(SCALES) and option("explain", "--scale").default == SCALES[0]
    for command in ("evaluate", "analyze", "train"):
        assert option(command, "--precision").choices == list(PRECISIONS), command
    for command in ("evaluate", "analyze"):
        assert option(command, "--batch-size").default == BATCH_SIZE, command
