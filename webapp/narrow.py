"""Phones: a column layout stacks the inputs above the results, so on a narrow screen the page
scrolls to what a click produced (the results of Compare, the faces of a tapped matrix cell)."""

from __future__ import annotations

import json

NARROW_PX = 900  # below this width gradio stacks a row's columns


def scroll_js(elem_id: str) -> str:
    """A client-side function (no server round trip) that brings ``elem_id`` into view on a narrow screen."""
    target = json.dumps(elem_id)
    return (f"() => {{ if (window.innerWidth < {NARROW_PX}) "
            f"document.getElementById({target})?.scrollIntoView({{behavior: 'smooth', block: 'start'}}); }}")


def scroll_to_on_narrow(trigger, elem_id: str) -> None:
    """On ``trigger`` (e.g. ``button.click``), a narrow screen scrolls to ``elem_id``."""
    trigger(None, None, None, js=scroll_js(elem_id), api_visibility="private", queue=False)
