"""A plotly figure that reports lasso and box selections back to Python.

``gr.Plot`` sends no plotly selection back and ``gr.ScatterPlot.select`` reports only an x-range,
so this is a ``gr.HTML`` component that draws the figure with the plotly.js shipped inside the
``plotly`` Python package (served as a static file, no CDN, no npm build) and, on plotly's
``plotly_selected`` event, calls ``trigger('select', {index: [...], value: n})``: a ``.select``
handler receives a ``gr.SelectData`` whose ``index`` is the list of the selected points'
``customdata[0]`` (sample ids, deduplicated; negative ids, such as a placed photo's star, are left out). A double click (plotly's deselect) sends an empty list.
The modebar's camera button saves the figure as a PNG in the browser.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import plotly

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
gr.set_static_paths([str(PLOTLY_JS)])  # only this one file is served

_HEAD = f'<script src="gradio_api/file={PLOTLY_JS}"></script>'
_TEMPLATE = '<div class="ferx-plot" style="width:100%;min-height:80px"></div>'
_JS = """
const draw = () => {
  if (!window.Plotly) { setTimeout(draw, 50); return; }
  const el = element.querySelector('.ferx-plot');
  if (!el) return;
  if (!props.value) { window.Plotly.purge(el); el.innerHTML = ''; el.style.height = ''; el.dataset.ready = ''; return; }
  const fig = JSON.parse(props.value);
  // the box as high as the figure: plotly's responsive resize takes the box's height, which was the plot's own
  // until a window resize (1024 x 768, a zoom) shrank it to the 80-px minimum for good
  el.style.height = fig.layout.height ? `${fig.layout.height}px` : '';
  window.Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false,
    toImageButtonOptions: {format: 'png', scale: 2, filename: 'ferx_embedding'}}).then(() => {
    if (!el._ferxBound) {
      el._ferxBound = true;
      el.on('plotly_selected', ev => {
        if (!ev || !ev.points) return;
        const ids = [...new Set(ev.points.map(p => Number(p.customdata[0])).filter(i => i >= 0))];
        trigger('select', {index: ids, value: ids.length});
      });
      el.on('plotly_deselect', () => trigger('select', {index: [], value: 0}));
    }
    el.dataset.ready = String(Date.now());
  });
};
draw();
watch('value', draw);
"""


def selectable_plot(elem_id: str, label: str = "") -> gr.HTML:
    """An HTML component whose value is a plotly figure's JSON (``fig.to_json()``); bind ``.select``."""
    return gr.HTML(None, html_template=_TEMPLATE, js_on_load=_JS, head=_HEAD, elem_id=elem_id, label=label,
                   show_label=bool(label), min_height=80)
