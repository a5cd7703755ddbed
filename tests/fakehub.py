"""A loopback fake of the Hugging Face Hub *download* protocol, for tests.

`FakeHub` serves ``HEAD``/``GET {endpoint}/{repo_id}/resolve/{revision}/{filename}`` the way the real Hub does,
well enough for the real ``huggingface_hub.hf_hub_download`` (2.4.0) to download from it:

* regular (git) files: ``200`` with ``ETag: "<git blob sha1>"``, ``X-Repo-Commit``, ``Content-Length``;
* LFS files (``*.safetensors``, ``*.bin``, ... or ``lfs=True``): ``302`` to a "CDN" with ``X-Linked-Etag:
  "<sha256>"``, ``X-Linked-Size``, ``X-Repo-Commit``. The CDN is a second listener on another port of 127.0.0.1,
  i.e. another origin, so the client treats it like the real CDN: it reads the metadata from the 302 itself and
  downloads from the ``Location`` (``/cdn-lfs/<sha256>?...``);
* ``Range: bytes=a-b`` is honoured (``206`` + ``Content-Range``), so the client can resume;
* missing repo -> ``401`` + ``X-Error-Code: RepoNotFound`` (``404`` if an Authorization header was sent), missing
  revision -> ``404`` + ``RevisionNotFound``, missing file -> ``404`` + ``EntryNotFound`` + ``X-Repo-Commit``;
* no Xet headers are ever sent, so the plain HTTP path is used even with ``hf_xet`` installed.

Faults can be injected per file or per repo at any time, see `FakeHub.set_fault`. Everything binds 127.0.0.1 only.

The helpers `use_hub`, `set_offline`, `set_timeouts` and `fast_retries` point a *plain*
``hf_hub_download(repo_id, filename)`` (no endpoint/cache_dir arguments) at a FakeHub through pytest's
``monkeypatch``: in huggingface_hub 2.4.0 ``HF_ENDPOINT``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
``HF_HUB_ETAG_TIMEOUT`` and ``HF_HUB_DOWNLOAD_TIMEOUT`` are read from the environment once, at import of
``huggingface_hub.constants``; the download code reads the ``constants`` attributes at call time. So the helpers set
both the env vars (for subprocesses / code that reads them) and the module attributes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import struct
import threading
import types
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = [
    "FAULT_KINDS",
    "FakeHub",
    "RequestRecord",
    "fast_retries",
    "git_blob_sha1",
    "set_offline",
    "set_timeouts",
    "use_hub",
]

HOST = "127.0.0.1"

FAULT_KINDS = ("not_found", "server_error", "drop", "truncate", "timeout", "bad_checksum")
_BODY_FAULTS = ("drop", "truncate", "bad_checksum")  # only act on a GET that carries the file's bytes
_FAULT_ON = ("any", "head", "get")

# Extensions tracked by git-lfs in the Hub's default .gitattributes (subset).
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".npy", ".npz",
    ".pkl", ".pickle", ".tflite", ".pb", ".joblib", ".model", ".gguf", ".zip", ".gz", ".tar", ".7z",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

_INVERT = bytes(255 - i for i in range(256))
_EMPTY_AGENT_REGISTRY = {"standardEnvVars": [], "harnesses": {}}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub sends as ETag for a regular (non-LFS) file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class _File:
    data: bytes
    lfs: bool
    sha256: str
    git_sha1: str  # of the data (regular file) or of the LFS pointer file (LFS file)

    @property
    def etag(self) -> str:
        """What hf_hub_download will use as etag (= blob file name in the cache)."""
        return self.sha256 if self.lfs else self.git_sha1


@dataclass
class _Fault:
    kind: str
    on: str
    remaining: int | None  # None = until cleared


@dataclass
class RequestRecord:
    """One request as seen by the hub (`FakeHub.log`)."""

    method: str
    path: str  # raw request path, query included
    server: str  # "hub" or "cdn"
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    range: str | None = None
    status: int | None = None  # None: no response was sent (stall / aborted)
    fault: str | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, port: int, hub: "FakeHub", role: str):
        self.hub = hub
        self.role = role
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request, client_address):
        t = threading.Thread(target=self._work, args=(request, client_address), daemon=True)
        with self._lock:
            self._conns.add(request)
            self._workers.add(t)
        t.start()

    def _work(self, request, client_address):
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._conns.discard(request)
                self._workers.discard(threading.current_thread())

    def handle_error(self, request, client_address):  # client went away etc.: expected, keep test output clean
        pass

    def workers(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._workers)

    def close_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - silence stderr logging
        pass

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        try:
            self.server.hub._handle(self, method, self.server.role)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True


class FakeHub:
    """Loopback fake Hub. Use as ``with FakeHub() as hub:`` (or `start` / `stop`).

    Args:
        stall_seconds: how long a "timeout" fault stalls a request before the server closes the connection
            without answering (interrupted at once by `stop`). It must exceed the client's timeouts: if the server
            gives up first, the client gets `httpx2.RemoteProtocolError` ("Server disconnected without sending a
            response"), not a timeout. None (default): at each request, 0.5 s more than the largest of
            huggingface_hub's current ``constants.HF_HUB_ETAG_TIMEOUT``, ``constants.HF_HUB_DOWNLOAD_TIMEOUT`` and
            ``file_download._ETAG_RETRY_TIMEOUT`` (see `stall_time`), capped at 120 s.
    """

    def __init__(self, *, stall_seconds: float | None = None):
        self.stall_seconds = stall_seconds
        self.requests: list[tuple[str, str]] = []  # (method, raw path) of every request, hub and CDN
        self.log: list[RequestRecord] = []
        self._lock = threading.RLock()
        # repo_id -> {"branches": {name: commit}, "commits": {commit: {filename: _File}}}
        self._repos: dict[str, dict] = {}
        self._faults: dict[tuple[str, str | None], _Fault] = {}
        self._hub: _Server | None = None
        self._cdn: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._ports: tuple[int, int] | None = None
        self._busy = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakeHub":
        """Start listening (again: on the same ports as before, so `endpoint` stays valid)."""
        if self._hub is not None:
            return self
        self._stopping = threading.Event()
        hub_port, cdn_port = self._ports or (0, 0)
        self._hub = _Server(hub_port, self, "hub")
        self._cdn = _Server(cdn_port, self, "cdn")
        self._ports = (self._hub.server_address[1], self._cdn.server_address[1])
        self._threads = []
        for srv in (self._hub, self._cdn):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening: afterwards every request fails with "connection refused". Open connections are closed
        and stalled requests are woken up. `start` brings the hub back on the same endpoint."""
        if self._hub is None:
            return
        servers = (self._hub, self._cdn)
        self._hub = self._cdn = None
        self._stopping.set()
        for srv in servers:
            srv.shutdown()
            srv.server_close()
            srv.close_connections()
        for t in self._threads:
            t.join(timeout)
        for srv in servers:
            for w in srv.workers():
                w.join(timeout)

    @property
    def running(self) -> bool:
        return self._hub is not None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` (available after the first `start`, and still the same after `stop`)."""
        if self._ports is None:
            raise RuntimeError("FakeHub not started")
        return f"http://{HOST}:{self._ports[0]}"

    @property
    def cdn_endpoint(self) -> str:
        if self._ports is None:
            raise RuntimeError("FakeHub not started")
        return f"http://{HOST}:{self._ports[1]}"

    def busy_handlers(self) -> int:
        """Number of requests being handled right now (stalled ones included; idle keep-alive connections not)."""
        with self._lock:
            return self._busy

    def reset_log(self) -> None:
        """Empty `requests` and `log`."""
        with self._lock:
            self.requests.clear()
            self.log.clear()

    # ------------------------------------------------------------------ content
    def add_file(self, repo_id: str, filename: str, data: bytes, revision: str = "main", *,
                 lfs: bool | None = None) -> str:
        """Add (or replace) a file; creates a new commit on branch `revision`. Returns the commit sha.

        `lfs=None`: LFS if the name has a usual LFS extension (.safetensors, .bin, ...) or the file is > 10 MiB.
        """
        return self._commit(repo_id, revision, {filename: self._make_file(filename, bytes(data), lfs)})

    def add_folder(self, repo_id: str, folder_path: str | os.PathLike, revision: str = "main") -> str:
        """Add every file under `folder_path` (recursively, posix relative names) in one commit."""
        root = Path(folder_path)
        changes = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                name = p.relative_to(root).as_posix()
                changes[name] = self._make_file(name, p.read_bytes(), None)
        if not changes:
            raise ValueError(f"no file in {root}")
        return self._commit(repo_id, revision, changes)

    def remove_file(self, repo_id: str, filename: str, revision: str = "main") -> str:
        """Delete a file in a new commit (the file then answers EntryNotFound). Returns the commit sha."""
        return self._commit(repo_id, revision, {filename: None})

    def commit_sha(self, repo_id: str, revision: str = "main") -> str:
        with self._lock:
            return self._repos[repo_id]["branches"][revision]

    def file_sha256(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return self._file(repo_id, filename, revision).sha256

    def etag(self, repo_id: str, filename: str, revision: str = "main") -> str:
        """sha256 for LFS files, git blob sha1 for regular files: the name of the blob in the HF cache."""
        return self._file(repo_id, filename, revision).etag

    def is_lfs(self, repo_id: str, filename: str, revision: str = "main") -> bool:
        return self._file(repo_id, filename, revision).lfs

    def url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(filename)}"

    def _file(self, repo_id, filename, revision) -> _File:
        with self._lock:
            repo = self._repos[repo_id]
            return repo["commits"][repo["branches"].get(revision, revision)][filename]

    @staticmethod
    def _make_file(filename: str, data: bytes, lfs: bool | None) -> _File:
        if lfs is None:
            lfs = filename.lower().endswith(LFS_SUFFIXES) or len(data) > LFS_SIZE_THRESHOLD
        sha256 = hashlib.sha256(data).hexdigest()
        if lfs:
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n"
            git_sha = git_blob_sha1(pointer.encode())
        else:
            git_sha = git_blob_sha1(data)
        return _File(data=data, lfs=lfs, sha256=sha256, git_sha1=git_sha)

    def _commit(self, repo_id: str, revision: str, changes: dict[str, _File | None]) -> str:
        if not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", repo_id):
            raise ValueError(f"bad repo_id {repo_id!r}")
        with self._lock:
            repo = self._repos.setdefault(repo_id, {"branches": {}, "commits": {}})
            parent = repo["branches"].get(revision)
            files = dict(repo["commits"][parent]) if parent else {}
            h = hashlib.sha1(f"fakehub\0{repo_id}\0{revision}\0{parent or ''}\0".encode())
            for name in sorted(changes):
                f = changes[name]
                if f is None:
                    files.pop(name, None)
                else:
                    files[name] = f
                h.update(f"{name}\0{f.sha256 if f else '-'}\0".encode())
            sha = h.hexdigest()
            repo["commits"][sha] = files
            repo["branches"][revision] = sha
            return sha

    # ------------------------------------------------------------------ faults
    def set_fault(self, repo_id: str, filename: str | None, kind: str, *, on: str = "any",
                  times: int | None = None) -> None:
        """Inject a fault for one file (or for the whole repo when `filename` is None).

        kind:
          * "not_found": file -> 404 EntryNotFound (client: RemoteEntryNotFoundError); filename=None -> the repo
            answers RepoNotFound (RepositoryNotFoundError);
          * "server_error": 500;
          * "drop": the connection is reset (RST) in the middle of the file body;
          * "truncate": the body stops at half the file (absolute offset, so a resumed Range request gets nothing
            new), shorter than Content-Length, then the connection is closed normally (FIN);
          * "timeout": the server stalls `stall_seconds` without answering, then closes the connection;
          * "bad_checksum": the metadata announces the real sha256 / git sha1 and size, the body is other bytes of
            the same length.
        on: "any" (every request for the file), "head" (the metadata HEAD only), "get" (only the GET that carries
            the bytes: the resolve GET of a regular file, the CDN GET of an LFS file). drop/truncate/bad_checksum
            only ever act on that GET.
        times: fire that many times, then disappear (None: until `clear_faults`).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}, expected one of {FAULT_KINDS}")
        if on not in _FAULT_ON:
            raise ValueError(f"on must be one of {_FAULT_ON}")
        with self._lock:
            self._faults[(repo_id, filename)] = _Fault(kind, on, times)

    def clear_faults(self, repo_id: str | None = None, filename: str | None = None) -> None:
        """Remove all faults, or those of one repo, or the one of one file."""
        with self._lock:
            for key in list(self._faults):
                if repo_id is None or (key[0] == repo_id and (filename is None or key[1] == filename)):
                    del self._faults[key]

    def _take_fault(self, repo_id: str, filename: str | None, body_get: bool, method: str) -> str | None:
        with self._lock:
            for key in ((repo_id, filename), (repo_id, None)):
                f = self._faults.get(key)
                if f is None:
                    continue
                if f.kind in _BODY_FAULTS:
                    applies = body_get
                elif f.on == "head":
                    applies = method == "HEAD"
                elif f.on == "get":
                    applies = body_get
                else:
                    applies = True
                if not applies:
                    continue
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        del self._faults[key]
                if f.kind == "not_found" and key[1] is None:
                    return "repo_not_found"
                return f.kind
        return None

    # ------------------------------------------------------------------ HTTP
    def _handle(self, req: _Handler, method: str, role: str) -> None:
        rec = RequestRecord(method=method, path=req.path, server=role, range=req.headers.get("Range"))
        with self._lock:
            self.requests.append((method, req.path))
            self.log.append(rec)
            self._busy += 1
        try:
            self._route(req, method, role, rec)
        finally:
            with self._lock:
                self._busy -= 1

    def _route(self, req: _Handler, method: str, role: str, rec: RequestRecord) -> None:
        if role == "cdn":
            return self._handle_cdn(req, method, rec)

        raw_path = urlsplit(req.path).path
        if raw_path == "/api/agent-harnesses":  # fetched once per process by huggingface_hub's user-agent code
            return self._send(req, method, rec, 200, {"Content-Type": "application/json"},
                              json.dumps(_EMPTY_AGENT_REGISTRY).encode())
        if "/resolve/" not in raw_path:
            return self._send(req, method, rec, 404, {"Content-Type": "text/plain"}, b"Not Found")

        left, right = raw_path.split("/resolve/", 1)
        repo_id = unquote(left.lstrip("/"))
        raw_rev, _, raw_file = right.partition("/")
        revision, filename = unquote(raw_rev), unquote(raw_file)
        rec.repo_id, rec.filename, rec.revision = repo_id, filename, revision

        with self._lock:
            repo = self._repos.get(repo_id)
            commit = None
            if repo is not None:
                commit = repo["branches"].get(revision) or (revision if revision in repo["commits"] else None)
            f = repo["commits"][commit].get(filename) if commit else None
        body_get = method == "GET" and f is not None and not f.lfs
        fault = self._take_fault(repo_id, filename, body_get, method) if repo is not None else None
        rec.fault = fault

        if repo is None or fault == "repo_not_found":
            authed = req.headers.get("Authorization") is not None
            return self._error(req, method, rec, 404 if authed else 401, "RepoNotFound",
                               "Repository not found" if authed else "Invalid username or password.")
        if commit is None:
            return self._error(req, method, rec, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if fault == "timeout":
            return self._stall(req, rec)
        if fault == "server_error":
            return self._error(req, method, rec, 500, None,
                               "Internal Error - We're working hard to fix this as soon as possible!")
        if f is None or fault == "not_found":
            return self._error(req, method, rec, 404, "EntryNotFound", "Entry not found",
                               {"X-Repo-Commit": commit})

        common = {
            "X-Repo-Commit": commit,
            "Accept-Ranges": "bytes",
            "Access-Control-Expose-Headers": "X-Repo-Commit,X-Linked-Size,X-Linked-ETag,ETag,Content-Range",
        }
        if f.lfs:
            query = urlencode({"repo": repo_id, "commit": commit, "file": filename})
            location = f"{self.cdn_endpoint}/cdn-lfs/{f.sha256}/{quote(filename)}?{query}"
            body = f"Found. Redirecting to {location}".encode()
            headers = {
                **common,
                "ETag": f'"{f.git_sha1}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(len(f.data)),
                "Location": location,
                "Content-Type": "text/plain; charset=utf-8",
            }
            return self._send(req, method, rec, 302, headers, body)
        return self._send_file(req, method, rec, f, {**common, "ETag": f'"{f.git_sha1}"'}, fault)

    def _handle_cdn(self, req: _Handler, method: str, rec: RequestRecord) -> None:
        parts = urlsplit(req.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        rec.repo_id, rec.filename, rec.revision = q.get("repo"), q.get("file"), q.get("commit")
        with self._lock:
            repo = self._repos.get(rec.repo_id or "")
            files = repo["commits"].get(rec.revision, {}) if repo else {}
            f = files.get(rec.filename or "")
        if f is None or not parts.path.startswith(f"/cdn-lfs/{f.sha256}/"):
            return self._send(req, method, rec, 404, {"Content-Type": "application/xml"},
                              b"<Error><Code>NoSuchKey</Code></Error>")
        fault = self._take_fault(rec.repo_id, rec.filename, method == "GET", method)
        rec.fault = fault
        if fault == "timeout":
            return self._stall(req, rec)
        if fault == "server_error":
            return self._send(req, method, rec, 500, {"Content-Type": "text/plain"}, b"Internal Server Error")
        if fault in ("not_found", "repo_not_found"):
            return self._send(req, method, rec, 404, {"Content-Type": "application/xml"},
                              b"<Error><Code>NoSuchKey</Code></Error>")
        name = quote(rec.filename.rsplit("/", 1)[-1])
        headers = {
            "ETag": f'"{f.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{name}; filename=\"{name}\";",
        }
        return self._send_file(req, method, rec, f, headers, fault)

    def _send_file(self, req, method, rec, f: _File, headers: dict, fault: str | None) -> None:
        data = f.data
        total = len(data)
        start, end = 0, total - 1
        status = 200
        rng = req.headers.get("Range")
        if rng and method == "GET":
            m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", rng)
            if m is None or (not m.group(1) and not m.group(2)):
                return self._send(req, method, rec, 416, {"Content-Range": f"bytes */{total}"}, b"")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), total - 1) if m.group(2) else total - 1
            else:
                start = max(total - int(m.group(2)), 0)
            if start >= total or start > end:
                return self._send(req, method, rec, 416, {"Content-Range": f"bytes */{total}"}, b"")
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
        headers = {"Content-Type": "application/octet-stream", **headers, "Content-Length": str(end - start + 1)}

        if method == "HEAD" or fault not in _BODY_FAULTS:
            return self._send(req, method, rec, status, headers, data[start:end + 1])
        if fault == "bad_checksum":
            return self._send(req, method, rec, status, headers, data[start:end + 1].translate(_INVERT))

        # drop / truncate: stop at an absolute offset (half the file), so resuming never gets further.
        cut = max(start, total // 2)
        self._send(req, method, rec, status, headers, data[start:cut])
        req.wfile.flush()
        req.close_connection = True
        if fault == "drop":
            threading.Event().wait(0.05)  # let the client read what was sent, then reset the connection
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            req.connection.close()

    def stall_time(self) -> float:
        """Seconds a "timeout" fault stalls a request right now."""
        if self.stall_seconds is not None:
            return self.stall_seconds
        from huggingface_hub import constants, file_download

        client = max(float(constants.HF_HUB_ETAG_TIMEOUT), float(constants.HF_HUB_DOWNLOAD_TIMEOUT),
                     float(getattr(file_download, "_ETAG_RETRY_TIMEOUT", 0)))
        return min(client + 0.5, 120.0)

    def _stall(self, req: _Handler, rec: RequestRecord) -> None:
        self._stopping.wait(self.stall_time())  # bounded; `stop` wakes it up at once
        req.close_connection = True  # then close without an answer

    def _error(self, req, method, rec, status, code, message, extra=None) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        headers.update(extra or {})
        self._send(req, method, rec, status, headers, json.dumps({"error": message}).encode())

    @staticmethod
    def _send(req: _Handler, method: str, rec: RequestRecord, status: int, headers: dict, body: bytes) -> None:
        rec.status = status
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        if "Content-Length" not in headers:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if method != "HEAD" and body:
            req.wfile.write(body)


# ---------------------------------------------------------------------- pytest helpers
def use_hub(monkeypatch, endpoint: str, cache_dir: str | os.PathLike, *, offline: bool = False) -> None:
    """Make a plain ``hf_hub_download(repo_id, filename)`` use `endpoint` and `cache_dir` (and no token).

    Sets HF_ENDPOINT / HF_HUB_CACHE / HF_HUB_OFFLINE in the environment AND patches the import-time copies in
    ``huggingface_hub.constants`` (ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE, HF_HUB_CACHE, HF_HUB_OFFLINE, ...), and
    the Hub-origin allowlist of ``huggingface_hub.utils._http``. Also pins huggingface_hub's AI-agent registry to
    empty: otherwise the first request of the process makes an extra ``GET {ENDPOINT}/api/agent-harnesses``.
    Everything is undone by monkeypatch at test teardown.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent, _http

    endpoint = endpoint.rstrip("/")
    cache_dir = os.fspath(cache_dir)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", cache_dir)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache_dir)
    monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", cache_dir)
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(endpoint).hostname})
    monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(endpoint)})
    # No token from ~/.cache/huggingface/token, no agent-registry file written to the real HF_HOME.
    nowhere = os.path.join(cache_dir, ".fakehub-nonexistent")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", os.path.join(nowhere, "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", os.path.join(nowhere, "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", os.path.join(nowhere, "agent_harnesses.json"))
    monkeypatch.setattr(_detect_agent, "_registry", _EMPTY_AGENT_REGISTRY)
    set_offline(monkeypatch, offline)
    _http.close_session()  # drop pooled connections to a previous endpoint


def set_offline(monkeypatch, offline: bool = True) -> None:
    """Switch HF_HUB_OFFLINE on/off (env var + ``huggingface_hub.constants.HF_HUB_OFFLINE``, read at call time)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", bool(offline))


def set_timeouts(monkeypatch, etag: float | None = None, download: float | None = None) -> None:
    """Set hf_hub_download's timeouts (seconds, floats allowed).

    ``constants.HF_HUB_ETAG_TIMEOUT`` (the metadata HEAD; overrides the `etag_timeout` argument whenever it differs
    from 10) and ``constants.HF_HUB_DOWNLOAD_TIMEOUT`` (the GET) are read at call time; the env vars of the same
    names are read only at import and must be integers, so they get the value rounded up.
    """
    from huggingface_hub import constants

    if etag is not None:
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", str(max(1, math.ceil(etag))))
        monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", etag)
    if download is not None:
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", str(max(1, math.ceil(download))))
        monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", download)


def fast_retries(monkeypatch, etag_retry_timeout: float | None = None) -> None:
    """Remove huggingface_hub's retry sleeps, and shorten its second metadata attempt.

    Without this, when the metadata HEAD fails (5xx, timeout, connection error) and the file is not cached,
    hf_hub_download retries it with `http_backoff` (up to 5 retries, sleeping 1+2+4+8+8 s) and a hard-coded 60 s
    timeout (``file_download._ETAG_RETRY_TIMEOUT``); a body download that breaks is resumed up to 5 times with a
    1 s sleep each. This makes the sleeps no-ops (only in those two modules) and sets the retry timeout to
    `etag_retry_timeout` (default: the current ``constants.HF_HUB_ETAG_TIMEOUT``). Retry *counts* are unchanged.
    """
    import time as _time

    from huggingface_hub import constants, file_download
    from huggingface_hub.utils import _http

    shim = types.SimpleNamespace(**{k: getattr(_time, k) for k in dir(_time) if not k.startswith("_")})
    shim.sleep = lambda seconds: None
    monkeypatch.setattr(_http, "time", shim)
    monkeypatch.setattr(file_download, "time", shim)
    monkeypatch.setattr(file_download, "_ETAG_RETRY_TIMEOUT",
                        etag_retry_timeout if etag_retry_timeout is not None else constants.HF_HUB_ETAG_TIMEOUT)
