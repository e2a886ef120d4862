"""The ferx web UI (Gradio). It composes :mod:`ferx`; it never re-implements it."""
