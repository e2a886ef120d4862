"""The Hugging Face Space as it is deployed: the folder spaces/prepare.py assembles, with a bundle
built by ferx, pushed through git and started by its own app.py in a separate process."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CHECKPOINTS, REPO
from ferx.checkpoint import read_card
from webapp_server import free_port

pytestmark = pytest.mark.slow


def _prepare_module():
    spec = importlib.util.spec_from_file_location("space_prepare", REPO / "spaces" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def space(data_root, tmp_path_factory) -> Path:
    from ferx.analysis.bundle import build_bundle

    tmp = tmp_path_factory.mktemp("space")
    bundle = build_bundle([CHECKPOINTS / "mini_xception_fer2013"], "ckplus", "test", tmp / "bundle",
                          data_root=data_root, methods=("pca",))
    return _prepare_module().prepare(tmp / "space", bundle=bundle)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and ".git" not in p.relative_to(folder).parts)


def test_every_binary_file_of_the_space_goes_through_git_lfs(space):
    """The Hub refuses a push holding a binary file outside LFS/Xet, whatever its size: the folder's
    .gitattributes must route every one of them (weights, curves, the bundle's faces) through LFS."""
    subprocess.run(["git", "init", "-q"], cwd=space, check=True)
    files = _files(space)
    out = subprocess.run(["git", "check-attr", "--stdin", "filter"], cwd=space, input="\n".join(files),
                         capture_output=True, text=True, check=True).stdout
    lfs = {line.removesuffix(": filter: lfs") for line in out.splitlines() if line.endswith(": filter: lfs")}
    binary = {f for f in files if b"\0" in (space / f).read_bytes()}
    assert binary - lfs == set()
    assert {"checkpoints/convcut_ferplus/model-00001-of-00008.safetensors",
            "checkpoints/mini_xception_fer2013/model.safetensors", "bundle/faces/ckplus-test.npz"} <= lfs
    assert not [f for f in lfs if f.endswith((".py", ".json", ".md", ".txt"))]  # text stays text


def test_the_prepared_space_imports_its_own_copy_of_ferx(space):
    """app.py puts the folder first on sys.path: the Space runs the copied ferx and webapp, not an
    installed one (a file prepare.py forgot would otherwise pass here and fail on the Hub)."""
    code = ("import runpy, sys; sys.argv = ['app.py']; g = runpy.run_path('app.py', run_name='space');"
            "import ferx, webapp.app; print(ferx.__file__); print(webapp.app.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=space, capture_output=True, text=True, check=True)
    paths = [Path(line) for line in out.stdout.split()]
    assert len(paths) == 2 and all(p.is_relative_to(space) for p in paths)


def test_the_prepared_space_serves_predictions_and_its_bundle(space, data_root, tmp_path):
    from gradio_client import Client, handle_file

    from ferx.data import load_fer2013, pack_split

    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    face = tmp_path / "happy_face.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).resize((192, 192)).save(face)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("FERX_CACHE_DIR", "FERX_DATA_ROOT", "SPACE_ID")}
    env.update(FERX_PORT=str(port), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = tmp_path / "space.log"
    with open(log, "w") as sink:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"the Space exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if urllib.request.urlopen(url, timeout=5).status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, f"the Space did not answer in 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(1)

        client = Client(url, verbose=False)
        out = client.predict(path=handle_file(str(face)), whole_image=True, index=0, api_name="/predict")
        offered = [p.parent.name for p in CHECKPOINTS.glob("*/card.json") if read_card(p.parent).get("metrics")]
        assert "scoring face 0 (whole image)" in out[0]
        assert len(out) == 3 + 4 * len(offered)  # every committed model, side by side
        assert all(out[i]["label"] for i in range(3, len(out), 4))

        # no dataset on a Space: the Dataset tab answers from the bundle, computing nothing
        out = client.predict(name="bundle:ckplus/test", split_name="test", zip_file=None,
                             chosen=["mini_xception_fer2013"], calib=False, api_name="/analyze")
        faces = len(np.load(space / "bundle" / "faces" / "ckplus-test.npz")["targets"])
        assert out[0] == f"**ckplus/test**: {faces} faces — mini_xception_fer2013 (from cache)"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
