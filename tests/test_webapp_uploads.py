"""Uploads leave the server: the sweeper deletes old files, keeps examples and never dies of
concurrent uploads (gradio's own delete_cache task did: "Set changed size during iteration")."""

import threading

import gradio as gr

from webapp.uploads import sweep


def test_sweep_deletes_old_uploads_keeps_examples_and_survives_concurrent_uploads(tmp_path):
    with gr.Blocks() as blocks:
        image = gr.Image()
    old = [tmp_path / f"old{i}.png" for i in range(50)]
    for f in old:
        f.write_bytes(b"face")
    blocks.upload_file_set.update(map(str, old))
    gone = {str(tmp_path / f"gone{i}.png") for i in range(20_000)}  # deleted elsewhere: a long set to iterate
    blocks.upload_file_set.update(gone)
    example = tmp_path / "example.png"
    example.write_bytes(b"example")
    image.temp_files.add(str(example))
    image.keep_in_cache.add(str(example))

    stop, added = threading.Event(), []

    def uploads():  # a busy server: new uploads arrive while the sweep iterates
        i = 0
        while not stop.is_set():
            path = tmp_path / f"new{i}.png"
            path.write_bytes(b"new")
            blocks.upload_file_set.add(str(path))
            added.append(path)
            i += 1

    thread = threading.Thread(target=uploads)
    thread.start()
    try:
        for _ in range(20):
            sweep(blocks, max_age_s=-1)  # everything counts as old
    finally:
        stop.set()
        thread.join()
    assert added and not any(f.exists() for f in old) and example.exists()
    assert not gone & blocks.upload_file_set  # forgotten, not iterated for ever
    fresh = tmp_path / "fresh.png"
    fresh.write_bytes(b"x")
    blocks.upload_file_set.add(str(fresh))
    sweep(blocks)  # the default age: a file just uploaded stays (it is being analysed)
    assert fresh.exists()
    sweep(blocks, None)  # shutdown: everything but the examples
    assert not fresh.exists() and not any(f.exists() for f in added) and example.exists()
