"""Phones: a column layout stacks the inputs above the results, so on a narrow screen the page
scrolls to what a click produced (the results of Compare, the faces of a tapped matrix cell)."""

from __future__ import annotations

import json

NARROW_PX = 900  # below this width gradio stacks a row's columns


# below this window width gradio's page is 960 px wide (1,216 from here up): a row whose columns need more (the
# Dataset tab's matrices beside its gallery) stacks them
WIDE_PAGE_PX = 1280


def scroll_js(elem_id: str, below: int = NARROW_PX) -> str:
    """A client-side function (no server round trip) that brings ``elem_id`` into view in a window narrower than
    ``below`` px (where its row is stacked)."""
    target = json.dumps(elem_id)
    return (f"() => {{ if (window.innerWidth < {below}) "
            f"document.getElementById({target})?.scrollIntoView({{behavior: 'smooth', block: 'start'}}); }}")


def scroll_to_on_narrow(trigger, elem_id: str, below: int = NARROW_PX) -> None:
    """On ``trigger`` (e.g. ``button.click``), a window narrower than ``below`` px scrolls to ``elem_id``."""
    trigger(None, None, None, js=scroll_js(elem_id, below), api_visibility="private", queue=False)
