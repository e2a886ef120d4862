"""Start-up: what each entry point imports before it needs it (``bench/bench_startup.py`` times them).

Each check runs in a fresh interpreter, since this one has imported everything already.
"""

import json
import os
import subprocess
import sys

from conftest import REPO

HEAVY = ("torch", "torch._dynamo", "torchvision", "timm", "pytorch_grad_cam", "captum", "sklearn", "gradio")


def imported_after(code: str) -> dict:
    """Run ``code`` in a new interpreter; which of :data:`HEAVY` it imported, and what it printed as ``result``."""
    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps({{'modules': [m for m in {HEAVY!r} if m in sys.modules], "
             f"'result': globals().get('result')}}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pytorch_grad_cam_imports_without_torch_dynamo_and_scikit_learn():
    """The hook `import ferx` installs (ferx/_deferred_imports.py) keeps torchvision from importing torch._dynamo
    and pytorch-grad-cam from importing scikit-learn; the functions that need them still work, importing them."""
    before = imported_after("import ferx, pytorch_grad_cam")
    assert "torchvision" in before["modules"] and not {"torch._dynamo", "sklearn"} & set(before["modules"])
    after = imported_after("import ferx, pytorch_grad_cam\n"
                           "from pytorch_grad_cam.utils.svd_on_activations import KernelPCA\n"
                           "result = [sys.modules['torchvision.ops.roi_align'].is_compile_supported('cpu'),\n"
                           "          type(KernelPCA(n_components=1)).__module__]")
    assert after["result"] == [True, "sklearn.decomposition._kernel_pca"]
    assert {"torch._dynamo", "sklearn"} <= set(after["modules"])


def test_cli_help_imports_none_of_them():
    assert imported_after("from ferx.cli import build_parser\nbuild_parser().format_help()")["modules"] == []


def test_explanation_methods_are_registered_without_their_libraries():
    out = imported_after("from ferx.explain import list_methods\nresult = list_methods()")
    assert {"gradcam", "integrated_gradients"} <= set(out["result"])
    assert not {"pytorch_grad_cam", "captum", "torchvision"} & set(out["modules"])


def test_explain_prints_its_first_line_before_torch_and_imports_only_what_its_methods_need(tmp_path):
    """The first line (the faces found) comes before torch loads; Grad-CAM alone imports neither Captum nor
    torch._dynamo nor scikit-learn."""
    photo = tmp_path / "astronaut.png"
    code = f"""
from PIL import Image
from skimage import data

Image.fromarray(data.astronaut()).save({str(photo)!r})

class FirstWrite:
    def __init__(self, out):
        self.out, self.modules = out, None

    def write(self, text):
        if self.modules is None:
            self.modules = [m for m in {HEAVY!r} if m in sys.modules]
        return self.out.write(text)

    def flush(self):
        self.out.flush()

sys.stdout = first = FirstWrite(sys.stdout)
from ferx.cli import main

assert main(["explain", {str(photo)!r}, "--model", {str(REPO / "checkpoints" / "mini_xception_fer2013")!r},
             "--method", "gradcam", "--no-faithfulness", "--out", {str(tmp_path / "panel.png")!r}]) == 0
result = first.modules
"""
    out = imported_after(code)
    assert out["result"] == []  # at the first line
    assert "pytorch_grad_cam" in out["modules"]
    assert not {"captum", "torch._dynamo", "sklearn", "timm"} & set(out["modules"])
    assert (tmp_path / "panel.json").is_file()


def test_the_app_serves_before_its_models_are_built_and_builds_them_on_request():
    """`ferx app` builds its page from the checkpoints' cards (ModelBank.load(defer=True)): no model is built and
    neither timm (Conv-cut's backbone, which imports torch._dynamo) nor the explanation libraries are imported
    until ModelBank.build, which the app runs once the server answers; scikit-learn waits for an analysis."""
    code = f"""
from pathlib import Path
from webapp.app import build_app
from webapp.config import AppConfig
from webapp.model_bank import ModelBank

checkpoints = Path({str(REPO / "checkpoints")!r})
bank = ModelBank.load(checkpoints, "cpu", defer=True)
build_app(AppConfig(checkpoints=checkpoints, device="cpu"), bank)
built = [m.built for m in bank.models.values()]
modules = [m for m in {HEAVY!r} if m in sys.modules]
bank.build()
from ferx.memory_format import _TWINS, SMALL_MODEL
twins = {{n: [list(k) + [type(t.twin).__name__] for k, t in _TWINS.get(m.model, {{}}).items()]
         for n, m in bank.models.items()}}
small = [n for n, m in bank.models.items() if sum(p.numel() for p in m.model.parameters()) < SMALL_MODEL]
with bank.using(bank.names[0]) as loaded:
    result = [built, modules, [m.built for m in bank.models.values()], type(loaded.model).__name__, twins, small]
"""
    built, modules, after, model, twins, small = imported_after(code)["result"]
    assert len(built) >= 2 and not any(built) and all(after) and model
    assert len(small) >= 2  # each small model's twin for one face is made while the app starts, not at a first Compare
    assert all(len(twins[n]) == 1 and twins[n][0][0] == 1 for n in small)
    assert all(twins[n][0][-1] == "OpenCVTwin" for n in small)  # one face on OpenCV's DNN engine
    assert not any(twins[n] for n in twins if n not in small)
    assert "gradio" in modules and not {"timm", "torch._dynamo", "pytorch_grad_cam", "captum", "sklearn"} & set(modules)
