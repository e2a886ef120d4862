"""Every failure a user can cause becomes a visible ``gr.Error``, never a traceback: not in the
browser, and not in the server log either (one line there; tracebacks are kept for bugs)."""

from __future__ import annotations

import functools
import inspect
import logging
import re
import tempfile
from pathlib import Path

import gradio as gr

from ferx.checkpoint import CheckpointError
from ferx.data.archive import ArchiveError
from ferx.data.datasets import DatasetLayoutError
from ferx.paths import PROJECT_ROOT, cache_root, default_checkpoints, default_data_root

log = logging.getLogger(__name__)
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, CheckpointError, ArchiveError, DatasetLayoutError, OSError)
SERVER_FOLDERS: set[Path] = set()  # the app's own data root and checkpoints (webapp.app.build_app adds them)


def server_folders() -> list[str]:
    """Folders whose place on the server is nobody else's business, longest first: the project's, the data root,
    checkpoints, cache, temporary files, the home folder (and any the app was pointed at)."""
    folders = {PROJECT_ROOT, default_data_root(), default_checkpoints(), cache_root(), Path(tempfile.gettempdir()),
               Path.home(), *SERVER_FOLDERS}
    paths = {p for f in folders if f is not None for p in (f, f.resolve()) if p.is_absolute() and p != Path("/")}
    return sorted(map(str, paths), key=len, reverse=True)  # the longest first: /srv/ferx/datasets before /srv/ferx


def without_server_paths(message: str) -> str:
    """``message`` with every path inside a server folder (:func:`server_folders`) cut to its last part: a user
    sees "fer2013", not where the server keeps it (the log line keeps the whole message). Other slashes — a zip's
    own entries, "cheeks/jaw", "ferplus/test", URLs — are left as they are."""
    for folder in server_folders():
        message = re.sub(re.escape(folder) + r"(?![^/\s'\"])(/[^\s'\"]*)?",  # the folder, or a path in it
                         lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], message)
    return message


def user_errors(fn):
    """Turn known user-caused errors into ``gr.Error`` with their message (one log line, no
    traceback); log anything else with its traceback and show a short message instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as err:
            err.print_exception = False  # gradio would print a traceback for every refused input
            log.info("%s refused: %s", fn.__name__, err.message)
            err.message = without_server_paths(err.message)
            raise
        except USER_ERRORS as err:
            message = str(err).strip("'\"")
            log.info("%s refused: %s", fn.__name__, message)
            raise gr.Error(without_server_paths(message), print_exception=False) from None
        except Exception as err:  # a bug: keep the server up, log the trace, tell the user
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(err).__name__}); the server log has details.") from None

    wrapper.__signature__ = inspect.signature(fn)  # gradio reads it (gr.Progress defaults)
    wrapper.refuses_user_errors = True  # tests/test_webapp_handlers.py checks that every handler of the app has it
    return wrapper


def given(fn, *args, **kwargs):
    """``functools.partial(fn, *args, **kwargs)`` as gradio reads a handler: it passes ``gr.Request`` (or event data)
    to a parameter annotated so, and finds the annotations of a function, not of a partial (whose ``request`` stayed
    None)."""

    @functools.wraps(fn)
    def bound(*more, **named):
        return fn(*args, *more, **kwargs, **named)

    bound.__signature__ = inspect.signature(functools.partial(fn, *args, **kwargs))
    return bound


def at_least_one(chosen, what: str) -> None:
    """The one refusal of a handler run with nothing ticked: "Choose at least one model." (or method)."""
    if not chosen:
        raise gr.Error(f"Choose at least one {what}.")
