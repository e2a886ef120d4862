"""Every failure a user can cause becomes a visible ``gr.Error``, never a traceback: not in the
browser, and not in the server log either (one line there; tracebacks are kept for bugs)."""

from __future__ import annotations

import functools
import inspect
import logging
import re

import gradio as gr

from ferx.checkpoint import CheckpointError
from ferx.data.archive import ArchiveError
from ferx.data.datasets import DatasetLayoutError

log = logging.getLogger(__name__)
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, CheckpointError, ArchiveError, DatasetLayoutError, OSError)
# an absolute path of two or more parts (not a URL's, not "cheeks/jaw" or "happy/"): the server's, shown by its last part
SERVER_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/:'\"]+/)+([^\s/:'\"]*)")


def without_server_paths(message: str) -> str:
    """``message`` with every absolute path cut to its last part: a user sees "fer2013", not where the server
    keeps it (the log line keeps the whole message)."""
    return SERVER_PATH.sub(lambda m: m.group(1) or m.group(0).rstrip("/").rsplit("/", 1)[-1], message)


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
    wrapper.refuses_user_errors = True  # tests/test_startup.py checks that every handler of the app has it
    return wrapper
