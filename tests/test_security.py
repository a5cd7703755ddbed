"""Issue 13: no server file leaves the machine, every input goes through one
gate (demo/gate.py), every argument is checked at the boundary.

One app per module (``python app.py`` on loopback, Hub offline, uploads
limited to 4 MB), called as an attacker and a careless client would: raw HTTP
(httpx) for what gradio_client would never send, gradio_client for the rest.
The endpoints with an image input are read from the app's API info, so a new
one (``/explain``) is covered without touching this file.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import logging
import os
import re
import time

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import corpus
from conftest import ROOT, assert_one_sentence, running_app
from demo import arguments, gate, images

EXAMPLES_DIR = ROOT / "assets" / "examples"
UPLOAD_LIMIT_MB = 4
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
SWIN_T = "swin_tiny_patch4_window7_224"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("security")
    with running_app(home, HF_HUB_OFFLINE="1", APP_MAX_UPLOAD_MB=str(UPLOAD_LIMIT_MB)) as server:
        server.home = home
        server.upload_folder = home / "gradio"
        server.api = server.url + "gradio_api/"
        # A private file outside every upload folder: a real PNG, so that reading it would classify it.
        private = home / "private" / "secret.png"
        private.parent.mkdir()
        Image.new("RGB", (64, 64), (10, 200, 10)).save(private)
        private.chmod(0o600)
        server.private = private
        yield server


@pytest.fixture(scope="module")
def uploaded_cat(app):
    """A small photo uploaded the ordinary way: its FileData."""
    buffer = io.BytesIO()
    Image.open(EXAMPLES_DIR / "cat.jpg").convert("RGB").resize((256, 192)).save(buffer, "JPEG", quality=90)
    return upload(app, "cat.jpg", buffer.getvalue())


def upload(app, name, data) -> dict:
    response = httpx.post(app.api + "upload", files={"files": (name, data)}, timeout=60)
    assert response.status_code == 200, response.text
    return {"path": response.json()[0], "orig_name": name, "meta": corpus.META}


def call(app, endpoint: str, body: bytes | dict) -> tuple[str, object]:
    """POST /gradio_api/call/<endpoint> and read the result: ("complete", outputs),
    ("error", message) from the event, or ("http <status>", message) when the gate answered at once."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(app.api + f"call{endpoint}", content=content,
                          headers={"content-type": "application/json"}, timeout=60)
    if response.status_code != 200:
        try:
            return f"http {response.status_code}", response.json().get("error")
        except ValueError:
            return f"http {response.status_code}", response.text
    events = httpx.get(app.api + f"call{endpoint}/{response.json()['event_id']}", timeout=300).text
    kind = re.findall(r"^event: (\w+)", events, re.M)[-1]
    data = json.loads(re.findall(r"^data: (.*)$", events, re.M)[-1])
    return kind, (data.get("error") if kind == "error" and isinstance(data, dict) else data)


def image_endpoints(app) -> dict[str, dict]:
    """Every API endpoint with an image input: {name: its parameters}."""
    info = httpx.get(app.api + "info", timeout=30).json()["named_endpoints"]
    return {name: endpoint["parameters"] for name, endpoint in info.items()
            if any(p.get("component") == "Image" for p in endpoint["parameters"])}


def request_with_image(parameters, image) -> dict:
    """The endpoint's defaults, ``image`` in its image slot(s)."""
    return {"data": [image if p.get("component") == "Image" else p.get("parameter_default")
                     for p in parameters]}


def assert_still_works(app, uploaded_cat):
    kind, outputs = call(app, "/classify", {"data": [uploaded_cat, "efficientnet_lite0", 3]})
    assert kind == "complete" and outputs[0]["label"] in CAT_CLASSES, (kind, outputs)


# ---------------------------------------------------------------- server files never leave

def test_every_image_endpoint_is_found(app):
    assert {"/classify", "/swin_views"} <= set(image_endpoints(app))


def test_a_server_path_is_refused_in_one_sentence_on_every_image_endpoint(app, uploaded_cat):
    payloads = corpus.server_path_payloads(app.private, app.upload_folder, app.home)
    answers = {}
    for endpoint, parameters in image_endpoints(app).items():
        for label, payload in payloads.items():
            kind, message = call(app, endpoint, request_with_image(parameters, payload))
            answers[endpoint, label] = (kind, message)
            assert kind == "http 400", (endpoint, label, kind, message)
            assert message.startswith(corpus.SERVER_PATH_REFUSED), (endpoint, label, message)
            assert_one_sentence(message)
            assert str(app.private) not in message and "secret" not in message
            assert_still_works(app, uploaded_cat)
    # Without a content type FastAPI still parses the body as JSON: the gate reads it too.
    response = httpx.post(app.api + "call/classify", content=json.dumps(
        {"data": [{"path": str(app.private), "meta": corpus.META}, "efficientnet_lite0", 3]}).encode(), timeout=30)
    answers["/classify", "no content type"] = ("http %d" % response.status_code, response.json().get("error"))
    assert answers["/classify", "no content type"][0] == "http 400", response.text
    # The same sentence whether the file exists or not, on every route: nothing to learn about the server.
    assert len({message for _, message in answers.values()}) == 1


def test_the_page_s_own_route_refuses_a_server_path_too(app, uploaded_cat):
    """The page sends events to /gradio_api/queue/join with an fn_index (private events included)."""
    config = httpx.get(app.url + "config", timeout=30).json()
    images_ids = {c["id"] for c in config["components"] if c.get("type") == "image"}
    for index, dependency in enumerate(config["dependencies"]):
        slots = [i for i, component in enumerate(dependency["inputs"]) if component in images_ids]
        if not slots:
            continue
        for payload in ({"path": str(app.private)}, {"path": str(app.private), "meta": corpus.META}, str(app.private)):
            data = [None] * len(dependency["inputs"])
            for slot in slots:
                data[slot] = payload
            response = httpx.post(app.api + "queue/join", json={"data": data, "fn_index": dependency.get("id", index),
                                                                "session_hash": "attacker", "event_data": None,
                                                                "trigger_id": None}, timeout=30)
            assert response.status_code == 400, (index, payload, response.text)
            assert response.json()["error"].startswith(corpus.SERVER_PATH_REFUSED)
    assert_still_works(app, uploaded_cat)


def test_files_are_not_served_from_the_server_s_folders(app):
    for path in (app.private, ROOT / "app.py", "/etc/hostname"):
        response = httpx.get(app.api + f"file={path}", timeout=30)
        assert response.status_code in (403, 404), (path, response.status_code)


# ---------------------------------------------------------------- data: URLs meet the upload's rules

@pytest.mark.parametrize("name, make, says", corpus.DATA_URL_CASES, ids=[c[0] for c in corpus.DATA_URL_CASES])
def test_a_data_url_meets_the_same_rules_as_an_upload(app, uploaded_cat, name, make, says):
    start = time.perf_counter()
    kind, message = call(app, "/classify", {"data": [{"path": "", "url": make(), "meta": corpus.META},
                                                     "efficientnet_lite0", 3]})
    assert kind in ("error", "http 400"), (kind, message)
    assert says in message, message
    assert_one_sentence(message)
    assert time.perf_counter() - start < 10  # the 64-megapixel one is refused from its header, not decoded
    assert_still_works(app, uploaded_cat)


def test_a_good_data_url_is_classified_like_the_upload(app, uploaded_cat):
    data = (EXAMPLES_DIR / "cat.jpg").read_bytes()
    for value in (corpus.data_url(data, "image/jpeg"), {"path": "", "url": corpus.data_url(data, "image/jpeg")}):
        kind, outputs = call(app, "/classify", {"data": [value, "efficientnet_lite0", 3]})
        assert kind == "complete" and outputs[0]["label"] in CAT_CLASSES, (kind, outputs)


def test_a_request_body_over_the_limit_is_refused_before_it_is_read(app, uploaded_cat):
    limit = gate.Limits(UPLOAD_LIMIT_MB * 2**20).max_json_body
    body = b'{"data": ["' + b"A" * (limit + 10) + b'", "efficientnet_lite0", 3]}'
    kind, message = call(app, "/classify", body)
    assert kind == "http 413" and "larger than the" in message, (kind, message)
    assert_one_sentence(message)
    assert_still_works(app, uploaded_cat)


def test_an_upload_without_a_file_name_gets_one_sentence_not_http_500(app, uploaded_cat):
    response = httpx.post(app.api + "upload", files={"files": ("", b"\x89PNG")}, timeout=30)
    assert response.status_code == 400, response.text
    assert_one_sentence(response.json()["error"])
    assert_still_works(app, uploaded_cat)


# ---------------------------------------------------------------- colour management

def test_a_display_p3_photo_is_classified_like_its_srgb_copy(app, tmp_path, capsys):
    """cat.jpg converted to Display P3 (a profile built from the P3 primaries,
    tests/corpus.py) and saved with the profile embedded, as a phone saves it;
    its colour-managed sRGB copy is the same pixels converted back to sRGB with
    ImageCms and saved without a profile. The gate converts the first to sRGB:
    the two must agree. Read as if it were sRGB (the profile stripped), the P3
    file differs more."""
    from PIL import ImageCms

    cat = Image.open(EXAMPLES_DIR / "cat.jpg").convert("RGB")
    p3_bytes = corpus.in_profile(cat, corpus.DISPLAY_P3, quality=95)
    p3 = Image.open(io.BytesIO(p3_bytes))
    srgb_copy = ImageCms.profileToProfile(p3, ImageCms.ImageCmsProfile(io.BytesIO(corpus.DISPLAY_P3)),
                                          ImageCms.createProfile("sRGB"), outputMode="RGB",
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    files = {"p3": p3_bytes, "srgb copy": corpus.encoded(srgb_copy, "JPEG", quality=95),
             "p3 read as srgb": corpus.encoded(p3.convert("RGB"), "JPEG", quality=95)}
    client = Client(app.url, verbose=False)
    results = {}
    for name, data in files.items():
        path = tmp_path / f"{name.replace(' ', '-')}.jpg"
        path.write_bytes(data)
        result = client.predict(handle_file(str(path)), "efficientnet_lite0", 20, api_name="/classify")
        results[name] = {c["label"]: c["confidence"] for c in result["confidences"]}

    def difference(a, b):
        return max(abs(results[a].get(label, 0) - results[b].get(label, 0)) for label in results[a] | results[b])

    managed, unmanaged = difference("p3", "srgb copy"), difference("p3 read as srgb", "srgb copy")
    with capsys.disabled():
        print(f"\n[P3] top-1 {max(results['p3'], key=results['p3'].get)}; largest probability difference from the "
              f"sRGB copy: {managed:.4f} colour-managed, {unmanaged:.4f} with the profile ignored")
    assert max(results["p3"], key=results["p3"].get) == max(results["srgb copy"], key=results["srgb copy"].get)
    assert managed <= 0.03 and managed < unmanaged


# ---------------------------------------------------------------- arguments at the boundary

@pytest.mark.parametrize("endpoint, argument, literal, says", corpus.BAD_ARGUMENTS,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in corpus.BAD_ARGUMENTS])
def test_a_malformed_argument_gets_one_sentence_naming_it(app, uploaded_cat, endpoint, argument, literal, says):
    values = {"/classify": {"image": uploaded_cat, "architecture": "efficientnet_lite0", "top_k": 3},
              "/swin_views": {"image": uploaded_cat, "architecture": SWIN_T, "stage": 0, "block": 1, "head": "mean",
                              "query_x": 112, "query_y": 112},
              "/explain": {"image": uploaded_cat, "architecture": "efficientnet_lite0", "method": "gradcam",
                           "target": "top1"}}[endpoint]
    # JSON by hand: NaN and 1e400 are what a careless client's encoder writes, and what json.dumps refuses to.
    encoded = [literal if name == argument else json.dumps(value) for name, value in values.items()]
    kind, message = call(app, endpoint, ('{"data": [' + ", ".join(encoded) + "]}").encode())
    assert kind == "error", (kind, message)
    assert says in message, message
    assert_one_sentence(message)
    assert_still_works(app, uploaded_cat)


def test_arguments_module():
    assert arguments.whole_number("top_k", 3.0, 1, 20) == 3
    assert arguments.whole_number("top_k", None, 1, 20, default=5) == 5
    assert arguments.number("alpha", 0.25, 0, 1) == 0.25
    assert arguments.choice("mode", "a", ["a", "b"]) == "a"
    for value in (float("nan"), float("inf"), "3", True, [3], 0, 21, 2.5):
        with pytest.raises(arguments.ArgumentError, match=r"^top_k must be a whole number from 1 to 20, not "):
            arguments.whole_number("top_k", value, 1, 20)
    with pytest.raises(arguments.ArgumentError, match="alpha is missing"):
        arguments.number("alpha", None, 0, 1)
    with pytest.raises(arguments.ArgumentError, match=r"^mode must be one of a, b; not 'c'\.$"):
        arguments.choice("mode", "c", ["a", "b"])


# ---------------------------------------------------------------- the upload folder stays bounded

def folder_megabytes(folder) -> float:
    return gate.folder_bytes(folder) / 2**20


@pytest.mark.slow  # 120 uploads; the sweeper's rules are tested in-process by default
def test_the_upload_folder_stays_under_its_bound_after_120_uploads_of_2_mb(app, uploaded_cat, capsys):
    """Each upload is a small PNG with 2 MB of other bytes after its end (PIL
    stops at the image's end), all different: 240 MB uploaded, answered."""
    small = corpus.encoded(Image.new("RGB", (64, 64), (200, 100, 50)), "PNG")
    peak = 0.0

    def one(i):
        data = small + os.urandom(2 * 2**20 - len(small))
        with httpx.Client(timeout=120) as client:
            response = client.post(app.api + "upload", files={"files": (f"photo-{i}.png", data)})
            path = response.json()[0]
        kind, outputs = call(app, "/classify", {"data": [{"path": path, "meta": corpus.META},
                                                         "efficientnet_lite0", 1]})
        assert kind == "complete", outputs
        return folder_megabytes(app.upload_folder)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for size in pool.map(one, range(120)):
            peak = max(peak, size)
    final = folder_megabytes(app.upload_folder)
    with capsys.disabled():
        print(f"\n[uploads] 120 x 2 MB answered in {time.perf_counter() - start:.1f} s; upload folder "
              f"{final:.1f} MB after, {peak:.1f} MB at most (bound 100 MB, APP_UPLOAD_CACHE_MB)")
    assert final < 128 and peak < 128
    # The photo uploaded before them, unused since, went first: the client is told to upload it again...
    kind, message = call(app, "/classify", {"data": [uploaded_cat, "efficientnet_lite0", 3]})
    assert kind == "http 400" and message.startswith(corpus.SERVER_PATH_REFUSED), (kind, message)
    # ...and uploading it again works (the same bytes land on the same path).
    buffer = io.BytesIO()
    Image.open(EXAMPLES_DIR / "cat.jpg").convert("RGB").resize((256, 192)).save(buffer, "JPEG", quality=90)
    assert upload(app, "cat.jpg", buffer.getvalue())["path"] == uploaded_cat["path"]
    assert_still_works(app, uploaded_cat)
    # The examples Gradio keeps there are never swept.
    client = Client(app.url, verbose=False)
    assert client.predict(handle_file(str(EXAMPLES_DIR / "cat.jpg")), "efficientnet_lite0", 1,
                          api_name="/classify")["label"] in CAT_CLASSES


def test_the_sweeper_deletes_least_recently_used_first_and_spares_protected_files(tmp_path):
    folder = tmp_path / "uploads"
    kept = folder / "example" / "cat.jpg"
    files = [folder / f"h{i}" / "photo.png" for i in range(5)]
    for age, path in enumerate([kept] + files):
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes(1000))
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))
    os.utime(files[0])  # just used
    sweeper = gate.UploadSweeper(folder, max_bytes=3500, protected=lambda: {str(kept)})
    assert sweeper.sweep(incoming=1000) == 3000
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == sorted([kept, files[0], files[4]])
    assert not files[1].parent.exists()  # its emptied folder too
    gate.UploadSweeper(folder, max_age_s=50, protected=lambda: {str(kept)}).sweep()
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == [kept, files[0]]


# ---------------------------------------------------------------- the gate in the process

def test_the_gate_accepts_only_regular_files_inside_the_upload_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    inside = tmp_path / "uploads" / "abc" / "photo.png"
    inside.parent.mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(inside)
    outside = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(outside)
    (tmp_path / "uploads" / "abc" / "link.png").symlink_to(outside)
    assert gate.uploaded_file(str(inside)) == inside
    assert gate.open_image({"path": str(inside)}).size == (8, 8)
    for path in (str(outside), "secret.png", str(tmp_path / "uploads" / "abc" / "link.png"),
                 str(tmp_path / "uploads" / "abc" / ".." / ".." / "secret.png"), "file://" + str(inside),
                 str(tmp_path / "uploads" / "abc"), str(tmp_path / "uploads"), str(inside) + "\x00", None, 3):
        with pytest.raises(gate.GateError) as caught:
            gate.check_reference({"path": path})
        assert str(caught.value) == gate.SERVER_PATH_REFUSED
    with pytest.raises(gate.GateError, match="^This app reads only"):
        gate.open_image(str(inside))  # a bare path is a server path, even one inside


def test_a_data_url_over_the_limit_is_refused_before_decoding(monkeypatch):
    import base64

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(base64, "b64decode", no_decoding)
    url = "data:image/png;base64," + "A" * (gate.Limits(1000).max_data_url_chars + 8)
    with pytest.raises(gate.GateError, match="larger than the"):
        gate.decode_data_url(url, gate.Limits(1000))


def test_repeated_refusals_are_logged_once_a_window():
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    handler.addFilter(gate.RepeatFilter(window=60, burst=3))
    log = logging.getLogger("test.repeat")
    log.addHandler(handler)
    log.propagate = False
    try:
        for _ in range(100):
            log.warning("top_k: top_k must be a whole number from 1 to 20, not nan.")
        for i in range(10):
            log.warning("different %d", i)
    finally:
        log.removeHandler(handler)
    assert len(records) == 3, records  # the first of the run, then at most 3 lines a window in all
    assert records[1].startswith("different 0 (99 similar refusals not logged")


# ---------------------------------------------------------------- decoding (item 6)

def test_pathological_png_chunk_counts_are_refused_quickly():
    data = corpus.png_of_many_chunks(2_000_000)  # 30 MB of 15-byte chunks: PIL took 11 s
    start = time.perf_counter()
    with pytest.raises(images.ImageInputError, match="chunks"):
        images.load_image(data)
    assert time.perf_counter() - start < 1


def test_float_tiff_and_large_text_chunks_are_read(tmp_path):
    for name in ("float-rgb.tif", "float-rgb-deflate.tif", "1-mb-ztxt-chunk.png", "1-mb-text-chunk.png"):
        case = corpus.by_name(name)
        case.check(np.asarray(images.load_image(case.make(tmp_path))))


def test_a_profile_is_converted_to_srgb():
    for name in ("display-p3.jpg", "prophoto-like.png"):
        case = corpus.by_name(name)
        case.check(np.asarray(images.load_image(case.make(None))))


# ---------------------------------------------------------------- the log

def test_the_log_has_one_line_per_refusal_and_no_traceback(app, uploaded_cat):
    call(app, "/classify", b'{"data": [null, "efficientnet_lite0", NaN]}')
    call(app, "/classify", {"data": [{"path": str(app.private)}, "efficientnet_lite0", 3]})
    log = app.output()
    assert "Traceback" not in log
    assert re.search(r"refused: POST /gradio_api/call/classify: This app reads only images", log)
    assert re.search(r"refused: top_k: top_k must be a whole number from 1 to 20, not nan\.", log)


# ---------------------------------------------------------------- review fixes

def _fill(folder, count, size=1000):
    paths = []
    for i in range(count):
        path = folder / f"h{i}" / "photo.png"
        path.parent.mkdir(parents=True)
        path.write_bytes(bytes(size))
        paths.append(path)
    return paths


class FakeUploads:
    """RequestGate in front of a fake Gradio that stores each /upload body as
    it arrives (as Gradio streams an upload into a file in the folder), and
    the largest size the folder reached after any stored chunk."""

    def __init__(self, folder, max_bytes=10_000):
        import anyio

        self.folder, self.peak, self.anyio = folder, 0, anyio
        folder.mkdir(parents=True, exist_ok=True)
        self.sweeper = gate.UploadSweeper(folder, max_bytes=max_bytes)
        self.sweeper.start = lambda *a, **k: None  # no background thread in a test
        self.middleware = gate.RequestGate(self.gradio, limits=gate.Limits(4000), sweeper=self.sweeper)

    async def gradio(self, scope, receive, send):
        path = self.folder / f"u{scope['index']}" / "photo.png"
        path.parent.mkdir(parents=True)
        with open(path, "wb") as out:
            while True:
                message = await receive()
                out.write(message.get("body", b""))
                out.flush()
                self.peak = max(self.peak, gate.folder_bytes(self.folder))
                await self.anyio.sleep(0)
                if not message.get("more_body"):
                    break

    async def upload(self, index, chunks, claimed=None, hold=None):
        """One upload of ``chunks`` (bytes each), with a Content-Length of
        ``claimed`` (none if None); ``hold``: an event to wait for before the first chunk."""
        headers = [(b"content-type", b"multipart/form-data")]
        if claimed is not None:
            headers.append((b"content-length", str(claimed).encode()))
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/upload", "index": index, "headers": headers}
        pending = list(chunks)

        async def receive():
            if hold is not None and len(pending) == len(chunks):
                await hold.wait()
            body = pending.pop(0) if pending else b""
            return {"type": "http.request", "body": body, "more_body": bool(pending)}

        async def send(message):
            pass

        await self.middleware(scope, receive, send)


def test_claimed_lengths_never_sent_do_not_empty_the_folder(tmp_path):
    """Three uploads at once each claim far more than the bound and send
    nothing (they hold the connection), then one claims a huge length: the
    others' files all stay."""
    fake = FakeUploads(tmp_path / "uploads")
    others = _fill(fake.folder, 6)
    anyio = fake.anyio

    async def scenario():
        hold = anyio.Event()
        async with anyio.create_task_group() as group:
            for i in range(3):
                group.start_soon(lambda i=i: fake.upload(100 + i, [b"x" * 10], claimed=4000, hold=hold))
            await anyio.sleep(0.05)
            await fake.upload(200, [b""], claimed=99999999999)
            assert all(p.exists() for p in others)
            hold.set()

    anyio.run(scenario)
    assert all(p.exists() for p in others)


def test_uploads_faster_than_one_a_second_cannot_outrun_the_bound(tmp_path):
    """40 uploads of 1,000 bytes in 4 chunks, 4 at a time, into a folder
    bounded at 10,000, half of them without a Content-Length, then 3 of
    9,000 bytes at once: the folder never holds more than the bound, and the
    newest uploads stay."""
    fake = FakeUploads(tmp_path / "uploads")
    anyio = fake.anyio

    async def burst():
        for start in range(0, 40, 4):
            async with anyio.create_task_group() as group:
                for i in range(start, start + 4):
                    group.start_soon(fake.upload, i, [bytes(250)] * 4, 1000 if i % 2 else None)
        assert fake.peak <= 10_000 and gate.folder_bytes(fake.folder) <= 10_000, fake.peak
        # A walk clears down to 90 % of the bound: the last 4 uploads and most before them stay.
        assert all((fake.folder / f"u{i}").exists() for i in range(36, 40))
        assert len(list(fake.folder.iterdir())) >= 8
        async with anyio.create_task_group() as group:  # several files' worth in one request each
            for i in range(3):
                group.start_soon(fake.upload, 50 + i, [bytes(3000)] * 3)

    anyio.run(burst)
    assert fake.peak <= 10_000 and gate.folder_bytes(fake.folder) <= 10_000, fake.peak


def test_images_sent_inline_are_counted_like_uploads(tmp_path, monkeypatch):
    """40 different images as data: URLs, 8 requests at once, into a folder
    bounded at 100 KB: each is written only after room is made for it."""
    import base64

    import anyio

    folder = tmp_path / "uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    sweeper = gate.UploadSweeper(folder, max_bytes=100_000)
    sweeper.start = lambda *a, **k: None
    peak, stored = 0, []

    async def gradio(scope, receive, send):
        nonlocal peak
        body = json.loads((await receive())["body"])
        stored.append(body["data"][0]["path"])
        peak = max(peak, gate.folder_bytes(folder))

    middleware = gate.RequestGate(gradio, limits=gate.Limits(), sweeper=sweeper,
                                  image_slots=lambda path, payload: {0})
    rng = np.random.default_rng(0)
    urls = ["data:image/png;base64," + base64.b64encode(corpus.encoded(Image.fromarray(
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")).decode() for _ in range(40)]
    assert all(len(url) > 12_000 for url in urls)  # each image over a tenth of the bound

    async def one(url):
        body = json.dumps({"data": [url]}).encode()
        scope = {"type": "http", "method": "POST", "path": "/gradio_api/call/classify",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            pass

        await middleware(scope, receive, send)

    async def burst():
        for start in range(0, 40, 8):
            async with anyio.create_task_group() as group:
                for url in urls[start:start + 8]:
                    group.start_soon(one, url)

    folder.mkdir()
    anyio.run(burst)
    assert len(stored) == 40
    assert peak <= 100_000 and gate.folder_bytes(folder) <= 100_000, peak


def test_huge_integers_are_refused_in_a_short_sentence():
    for check in (lambda v: arguments.number("alpha", v, 0, 1), lambda v: arguments.whole_number("top_k", v, 1, 20),
                  lambda v: arguments.choice("mode", v, ["a"])):
        for value in (10**400, -10**400, 10**5000 if hasattr(__import__("sys"), "set_int_max_str_digits") else 10**400):
            with pytest.raises(arguments.ArgumentError) as caught:
                check(value)
            assert len(str(caught.value)) < 200, str(caught.value)
            assert_one_sentence(str(caught.value))


def test_guard_turns_any_exception_from_a_check_into_one_sentence():
    import gradio as gr

    def broken(value):
        raise OverflowError("int too large to convert to float")

    component = gate.guard(gr.Number(), broken, "epochs")
    with pytest.raises(gr.Error) as caught:
        component.preprocess(10**400)
    assert_one_sentence(caught.value.message)
    assert caught.value.print_exception is False
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_file_reference_with_an_extra_key_is_still_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    marked = {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}, "foo": 1}
    with pytest.raises(gate.GateError) as caught:
        gate.check_request({"data": [marked]})
    assert str(caught.value) == gate.SERVER_PATH_REFUSED
    with pytest.raises(gate.GateError):
        gate.check_request({"data": [{"nested": [{"url": "/etc/passwd", "meta": {"_type": "gradio.FileData"},
                                                  "x": None}]}]})
    # A dict that is not marked and has other keys is someone's data, not a file.
    assert gate.check_request({"data": [{"path": "a/b", "label": "cat"}]}) is False


def test_an_approved_upload_is_touched_so_a_sweep_spares_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    old, other = _fill(tmp_path / "uploads", 2)
    for path in (old, other):
        os.utime(path, (time.time() - 600, time.time() - 600))
    os.utime(other, (time.time() - 300, time.time() - 300))
    assert gate.check_reference({"path": str(old)}) == old
    # Room for one file: the least recently used goes, and that is no longer the one just approved.
    gate.UploadSweeper(tmp_path / "uploads", max_bytes=1500).sweep()
    assert old.exists() and not other.exists()


def test_a_refused_path_cannot_forge_log_lines():
    import anyio

    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    gate.logger.addHandler(handler)
    scope = {"type": "http", "method": "POST", "path": "/x\n2026-01-01 refused: forged\u2028",
             "headers": [(b"content-length", b"999999999")]}

    async def send(message):
        pass

    try:
        anyio.run(gate.RequestGate(None, limits=gate.Limits(1000)), scope, None, send)
    finally:
        gate.logger.removeHandler(handler)
    assert records and all("\n" not in r and "\u2028" not in r for r in records), records
    assert "/x\\n2026" in records[-1]


def test_the_repeat_filter_s_table_stays_bounded():
    repeat = gate.RepeatFilter(window=3600, burst=5, max_keys=100)
    for i in range(5000):
        repeat.filter(logging.LogRecord("x", logging.INFO, "", 0, f"bad request {i}", (), None))
    assert len(repeat._last) <= 100
