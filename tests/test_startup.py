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


def test_torchvision_imports_without_torch_dynamo():
    """The hook `import ferx` installs keeps torchvision (which pytorch-grad-cam imports) from importing
    torch._dynamo; the compile check roi_align makes still answers, importing it then."""
    before = imported_after("import ferx, pytorch_grad_cam")
    assert "torchvision" in before["modules"] and "torch._dynamo" not in before["modules"]
    after = imported_after("import ferx, torchvision\n"
                           "result = sys.modules['torchvision.ops.roi_align'].is_compile_supported('cpu')")
    assert after["result"] is True and "torch._dynamo" in after["modules"]
