"""Uploads leave the server: the sweeper deletes old files, keeps examples and never dies of
concurrent uploads (gradio's own delete_cache task did: "Set changed size during iteration")."""

import os
import threading

import gradio as gr
import numpy as np

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


def test_sweep_removes_the_folder_ferx_made_for_a_download_once_it_is_empty(tmp_path):
    with gr.Blocks() as blocks:
        files = gr.File()
    root = tmp_path / "ferx-cards-someone"
    card, other = root / "a1" / "face_card.png", root / "b2" / "face_card.png"
    gradio_own = tmp_path / "gradio" / "0f3c" / "upload.png"
    for f in (card, other, gradio_own):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
    (root / "b2" / "face_card.pdf").write_bytes(b"not swept yet")
    files.temp_files.update(map(str, (card, other, gradio_own)))
    sweep(blocks, max_age_s=-1)
    assert not card.parent.exists() and root.is_dir()  # the download's folder goes, ferx's root stays
    assert other.parent.is_dir() and gradio_own.parent.is_dir()  # a file still in it; gradio's own folder


def test_session_keeps_slider_tiles_small_and_exact():
    """Explain keeps its map tiles in the session PNG-encoded (what bounds memory per session); the slider
    gets back exactly the tiles that were drawn."""
    from webapp.explain_tab import compare_two
    from webapp.explaining import png_bytes

    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8), 8, 0), 8, 1)  # map-like tile
    other = smooth[::-1].copy()
    kept = [(png_bytes(smooth), "a · gradcam"), (png_bytes(other), "b · saliency")]
    assert sum(len(data) for data, _ in kept) < smooth.nbytes  # two encoded tiles weigh less than one array
    a, b = compare_two(kept, "a · gradcam", "b · saliency")
    assert np.array_equal(a, smooth) and np.array_equal(b, other)


def test_sweep_deletes_the_files_of_an_output_a_session_rebuilt(tmp_path):
    """A handler's update of an output, even gr.skip() (Compare's answer to a face number past the last), makes
    gradio rebuild that output for the session, and the session's copy lists the files it writes in a set of its
    own: the sweep never saw them. After one such answer, 7 of Compare's 9 images of every later photo stayed on
    disk for good (faces the app says are deleted within two minutes)."""
    from gradio_client import Client

    from webapp_server import free_port

    def draw(shade):
        if shade is None or shade < 0:
            return gr.skip()
        return np.full((8, 8, 3), int(shade), np.uint8)

    with gr.Blocks() as blocks:
        shade, image = gr.Number(), gr.Image(format="png")
        shade.submit(draw, shade, image, api_name="draw")
    blocks.launch(server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(blocks.local_url, verbose=False)
        client.predict(-1, api_name="/draw")  # gr.skip(): the session's own copy of the image
        for shade in (10, 20):
            client.predict(shade, api_name="/draw")
        copy = blocks.state_holder.session_data[client.session_hash].blocks_config.blocks[image._id]
        written = set(copy.temp_files)
        assert copy is not image and len(written) == 2 and all(os.path.exists(f) for f in written), written
        sweep(blocks, max_age_s=-1)
        assert not any(os.path.exists(f) for f in written)
    finally:
        blocks.close()
