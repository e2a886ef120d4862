"""Read-only result tables that say, until a result fills them, what will.

gradio draws an empty ``gr.Dataframe`` with the headers "1 2 3"; here the one header of an empty
table names the button that fills it and what its rows will be. A result's own columns replace it.
"""

from __future__ import annotations

import gradio as gr


def result_table(label: str, until: str, **kwargs) -> gr.Dataframe:
    """A read-only table labelled ``label`` whose empty state reads ``until`` ("Run an analysis: ...")."""
    return gr.Dataframe(label=label, headers=[until], interactive=False, **kwargs)
