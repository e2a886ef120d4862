"""The explanation card on a real FER-2013 test face: PNG, PDF and JSON with what it takes to trust and
reproduce the explanation (probabilities, maps, faithfulness, method parameters, sha256s, versions, link)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import CHECKPOINTS, DEVICE
from ferx.checkpoint import load_checkpoint, sha256_file
from ferx.cli import main
from ferx.data import load_fer2013, pack_split
from ferx.explain.card import footer_lines, link_line, write_card
from ferx.explain.report import explain_photo
from ferx.faces import find_faces, load_photo


@pytest.fixture(scope="module")
def happy_png(data_root, tmp_path_factory):
    packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    path = tmp_path_factory.mktemp("card") / "happy_face.png"
    Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).resize((192, 192)).save(path)
    return path


def test_the_card_carries_the_view_and_its_provenance(happy_png, tmp_path):
    models = [load_checkpoint(CHECKPOINTS / name, DEVICE) for name in ("mini_xception_fer2013", "lanmsff_ferplus")]
    search = find_faces(load_photo(happy_png), whole_image=True)
    result = explain_photo(models, search, 0, ["native", "gradcam"], faithfulness=True, deletion_steps=8, n_random=1)
    link = ("http://127.0.0.1:7860/?view=explain&dataset=fer2013&sample=3173&models=%5B%22lanmsff_ferplus%22%2C"
            "%22mini_xception_fer2013%22%5D&methods=%5B%22gradcam%22%5D&colormap_name=%22viridis%22&clip_pct=98")
    files = write_card(tmp_path / "card", result, models, scale="shared", clip_percentile=98, alpha=0.6, cmap="viridis",
                       link=link)
    with Image.open(files.png) as png:
        assert png.width > 1000 and png.height > 800
        pixels = np.asarray(png.convert("RGB"))
    assert (pixels.std(axis=(0, 1)) > 10).all()  # a drawn panel, not a blank page
    pdf = files.pdf.read_bytes()
    assert pdf[:5] == b"%PDF-"
    assert f"/URI ({link})".encode() in pdf  # the whole link, clickable: printed whole it would wrap and break
    assert b"/Subtype /CIDFontType2" in pdf and b"/Type3" not in pdf  # TrueType outlines, which print shops accept
    facts = json.loads(files.json.read_text())
    card = facts["card"]
    assert card["view"] == {"scale": "shared", "clip_percentile": 98, "opacity": 0.6, "colormap": "viridis",
                            "target": "predicted", "contrast": None}
    for em in models:  # each sha256 is the weights' own: recomputed from the files here
        ck = card["checkpoints"][em.display]
        assert ck["files"] == {f: sha256_file(em.path / f) for f in em.card["weights"]["files"]}
        assert ck["sha256"] == em.sha256
    assert card["libraries"]["torch"] == torch.__version__ and card["libraries"]["grad-cam"] != "not installed"
    assert card["methods"][models[0].display]["gradcam"]["target_layers"]  # the CAM's layers, as used
    assert [f["steps"] for f in card["faithfulness"].values()] == [8, 8] and card["link"] == link
    assert [m["predicted"] for m in facts["models"]] == ["happy", "happy"] and facts["scale"] == "shared"
    assert all(m["faithfulness"]["deletion_auc"] >= 0 for row in facts["models"] for m in row["maps"])
    footer = "\n".join(footer_lines(card))
    assert models[1].sha256 in footer and f"torch {torch.__version__}" in footer
    shown = link_line(link)
    assert "\n" not in shown and link[:60] in shown and shown.endswith("…") and len(shown) < 170
    assert "shared colour scale, clipped at the 98th percentile" in footer
    assert "faithfulness: deletion/insertion, 8 steps, 1 random map(s), baseline blur" in footer  # the same for both
    # models whose deletions ran differently (the app sizes steps and blur to each model): each its own line
    card["faithfulness"][models[1].display] |= {"steps": 32, "random_maps": 3}
    footer = "\n".join(footer_lines(card))
    assert "settings per model:" in footer and f"{models[0].display}: 8 steps, 1 random map(s)" in footer
    assert f"{models[1].display}: 32 steps, 3 random map(s)" in footer


def test_ferx_explain_card_from_the_command_line(happy_png, tmp_path, capsys):
    out = tmp_path / "cli_card.png"
    assert main(["explain", str(happy_png), "--model", str(CHECKPOINTS / "mini_xception_fer2013"), "--whole-image",
                 "--method", "gradcam", "--deletion-steps", "8", "--random-maps", "1", "--card", "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".pdf").is_file()
    card = json.loads(out.with_suffix(".json").read_text())["card"]
    assert card["checkpoints"]["mini_xception (mini_xception_fer2013)"]["sha256"]
    assert card["link"] is None  # a photo on disk has no app view to link to
    assert f"wrote {out}, {out.with_suffix('.pdf')}, {out.with_suffix('.json')}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["k.svg", "k.pdf", "k.jpg"])
def test_ferx_explain_card_refuses_a_format_it_does_not_write(happy_png, tmp_path, monkeypatch, capsys, name):
    """--card --out k.svg wrote k.png, k.pdf and k.json and no SVG, without a word: refused before the work."""
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(happy_png), "--model", "mini_xception_fer2013", "--whole-image", "--card",
                 "--out", name]) == 1
    assert capsys.readouterr().err.strip() == (f"ferx explain: error: --out {name}: a card is written as PNG, PDF and "
                                               "JSON: give a .png path (the .pdf and .json go beside it)")
    assert list(tmp_path.iterdir()) == []
