"""Start the real app in-process on a free loopback port (for the API and browser tests)."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from conftest import CHECKPOINTS
from ferx.background import THREAD_NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(data_root: Path):
    from webapp.app import build_app, launch_options
    from webapp.config import AppConfig

    port = free_port()
    cfg = AppConfig(data_root=data_root, checkpoints=CHECKPOINTS, device="cpu", host="127.0.0.1", port=port)
    app = build_app(cfg)
    app.launch(**launch_options(cfg), prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()
        # a batch job a test stopped or left running ends at its next chunk: let it, or the interpreter's exit
        # tears torch's thread pool down under it ("terminate called without an active exception", exit 134)
        for worker in threading.enumerate():
            if worker.name == THREAD_NAME:
                worker.join(timeout=600)
