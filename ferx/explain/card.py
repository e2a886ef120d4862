"""The explanation card: one PNG (and a PDF) of an explanation as it was shown, with what it takes
to trust and reproduce it.

:func:`write_card` draws the panel of ``ferx explain`` (:func:`ferx.explain.panel.panel_figure`: the
photo and its faces, the crop each model scored, every model's probabilities, every map with its colour
bar, faithfulness beside it) and adds a footer: the scale mode and overlay settings, the target, each
map's method parameters, the faithfulness test's parameters, every checkpoint's sha256, the library
versions and — where the view can be restored — a link to it. The same facts go into a JSON beside the
images (the JSON of ``ferx explain`` plus a ``card`` section). ``ferx explain --card`` and the app's
Explain tab both call it.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ferx.explain.overlay import ALPHA, CLIP_PERCENTILE

FOOTER_PT = 7.5  # the footer's font size: legible in the PNG (ferx.explain.panel.DPI)

# the distributions whose versions decide what a card shows (models, maps, faces, drawing)
LIBRARIES = ("ferx", "torch", "torchvision", "timm", "grad-cam", "captum", "numpy", "opencv-python-headless",
             "matplotlib", "pillow", "gradio")


def library_versions() -> dict[str, str]:
    """Installed version of each of :data:`LIBRARIES` ("not installed" where absent)."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def checkpoints(models) -> dict[str, dict]:
    """Per model (display name): its checkpoint folder, the one sha256 of its weights and each file's."""
    out = {}
    for em in models:
        if not em.trained:
            out[em.display] = {"checkpoint": None, "sha256": None, "note": "untrained: random weights"}
            continue
        out[em.display] = {"checkpoint": em.path.name, "sha256": em.sha256, "files": dict(em.card["weights"]["sha256"])}
    return out


@dataclass
class CardFiles:
    png: Path
    pdf: Path
    json: Path

    def __iter__(self):
        return iter((self.png, self.pdf, self.json))

    @classmethod
    def beside(cls, out: Path) -> "CardFiles":
        """The three files of a card written as ``out`` (its suffix replaced)."""
        return cls(out.with_suffix(".png"), out.with_suffix(".pdf"), out.with_suffix(".json"))


def card_facts(result, models, *, scale: str, clip_percentile: float, alpha: float, cmap: str | None,
               target=None, contrast=None, link: str | None = None) -> dict:
    """Everything the footer says, as data (the JSON's ``card`` section)."""
    # per model: its steps, random maps and blur follow its input size and cost
    faith = {row.model: next((f for f in row.faithfulness if f is not None), None) for row in result.rows}
    return {
        "made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "view": {"scale": scale, "clip_percentile": clip_percentile, "opacity": alpha, "colormap": cmap or "auto",
                 "target": target or "predicted", "contrast": contrast},
        "methods": {row.model: {m.method: m.params for m in row.maps} for row in result.rows},
        "faithfulness": {model: {"baseline": f.baseline, "steps": f.n_steps, "random_maps": f.n_random,
                                 "score": f.score} for model, f in faith.items() if f is not None} or None,
        "checkpoints": checkpoints(models), "libraries": library_versions(), "link": link,
    }


def faithfulness_lines(per_model: dict | None) -> list[str]:
    """One line when every model's deletion/insertion ran with the same settings, else one per model."""
    if not per_model:
        return ["faithfulness: not computed"]

    def settings(f: dict) -> str:
        return f"{f['steps']} steps, {f['random_maps']} random map(s), baseline {f['baseline']}; score: {f['score']}"

    if len({settings(f) for f in per_model.values()}) == 1:
        return [f"faithfulness: deletion/insertion, {settings(next(iter(per_model.values())))}"]
    return ["faithfulness: deletion/insertion, settings per model:"] + [
        line for model, f in per_model.items() for line in textwrap.wrap(f"{model}: {settings(f)}", 170,
                                                                          initial_indent="    ", subsequent_indent="      ")]


def footer_lines(facts: dict) -> list[str]:
    v, f = facts["view"], facts["faithfulness"]
    lines = [f"ferx explanation card · {facts['made']}",
             f"view: {v['scale']} colour scale, clipped at the {v['clip_percentile']:g}th percentile; colormap "
             f"{v['colormap']}; opacity {v['opacity']:g}; target {v['target']}"
             + (f" over {v['contrast']}" if v["contrast"] else ""),
             *faithfulness_lines(f)]
    for model, methods in facts["methods"].items():
        params = "; ".join(f"{m} {json.dumps(p, separators=(',', ':'))}" if p else m for m, p in methods.items())
        lines += textwrap.wrap(f"{model} maps: {params}", 170, subsequent_indent="    ")
    for model, ck in facts["checkpoints"].items():
        lines.append(f"{model}: " + (f"checkpoint {ck['checkpoint']}, sha256 {ck['sha256']}" if ck["sha256"]
                                     else ck["note"]))
    lines += textwrap.wrap("libraries: " + ", ".join(f"{k} {v}" for k, v in facts["libraries"].items()), 170)
    return lines


LINK_SHOWN = 90  # characters of the link printed on the card; the whole link is a hyperlink in the PDF


def link_line(link: str | None) -> str:
    """The card's last line: where the view's link is (a link is never wrapped: a copied wrapped link is broken)."""
    if not link:
        return ("link: none (not a photo the app can reopen: uploads are not stored; the JSON's settings redo this "
                "view on the same photo)")
    shown = link if len(link) <= LINK_SHOWN else link[:LINK_SHOWN - 1] + "…"
    return f"link to this view (click it in the PDF; whole in the JSON's card.link): {shown}"


def write_card(out: str | Path, result, models, *, scale: str = "per-map", clip_percentile: float = CLIP_PERCENTILE,
               alpha: float = ALPHA, cmap: str | None = None, target=None, contrast=None,
               link: str | None = None) -> CardFiles:
    """``out``.png, ``out``.pdf and ``out``.json for ``result`` (a :class:`~ferx.explain.report.PhotoExplanation`)
    explained by ``models`` (the :class:`~ferx.checkpoint.LoadedModel` of each row, in order)."""
    import matplotlib
    from matplotlib.text import Annotation

    from ferx.explain.panel import panel_figure

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    facts = card_facts(result, models, scale=scale, clip_percentile=clip_percentile, alpha=alpha, cmap=cmap,
                       target=target, contrast=contrast, link=link)
    fig = panel_figure(result.search, result.face, result.rows, scale=scale, clip_percentile=clip_percentile,
                       alpha=alpha, cmap=cmap)
    footer = fig.text(0.01, 0.0, "\n".join(footer_lines(facts)), va="top", ha="left", fontsize=FOOTER_PT,
                      family="monospace")
    # the link on its own line just under the footer (placed on the footer's drawn box), a hyperlink in the PDF
    fig.add_artist(Annotation(link_line(link), xy=(0, 0), xycoords=footer, xytext=(0, -2), textcoords="offset points",
                              va="top", ha="left", fontsize=FOOTER_PT, family="monospace",
                              color="#1a4fa0" if link else "black", url=link))
    files = CardFiles.beside(out)
    fig.savefig(files.png, bbox_inches="tight", pad_inches=0.25)  # a margin round the footer's long lines
    # TrueType fonts in the PDF, not Type 3 (print shops refuse those): set for good, not in an rc_context, whose
    # restore at the end of one request's card would give a card saved at the same time Type 3 fonts
    matplotlib.rcParams["pdf.fonttype"] = 42
    fig.savefig(files.pdf, bbox_inches="tight", pad_inches=0.25)
    numbers = result.to_dict(scale)
    numbers["photo"]["name"] = Path(numbers["photo"]["name"]).name  # the photo's own name, never a folder
    files.json.write_text(json.dumps({**numbers, "card": facts}, indent=2) + "\n")
    return files
