"""Shared fixtures. The Hub is never reached: a loopback fake (tests/fakehub.py)
serves checkpoints the tests make, into a Hub cache in a temporary folder."""
import os
import sys
import tempfile
from pathlib import Path

import pytest

# Models a developer trained (user_models/) are no part of the tests: an empty
# folder, set before the model package is imported (it registers them then).
os.environ["APP_USER_MODELS"] = tempfile.mkdtemp(prefix="no-user-models-")

from fakehub import FakeHub, fast_retries, set_timeouts, use_hub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A running fake Hub that plain ``hf_hub_download`` calls reach, with an
    empty Hub cache at ``hub.cache_dir``. Retries are made fast."""
    with FakeHub() as hub:
        hub.cache_dir = tmp_path / "hub-cache"
        hub.cache_dir.mkdir()
        use_hub(monkeypatch, hub.endpoint, hub.cache_dir)
        set_timeouts(monkeypatch, etag=2.0, download=2.0)
        fast_retries(monkeypatch)
        yield hub


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's training tests: on the shared
    2-core test machine two threads per process oversubscribe the cores and
    small models train several times slower (tests/test_training.py)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# The app under test (tests/test_app.py, tests/test_browser.py)
# ---------------------------------------------------------------------------

import contextlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass  # noqa: E402

APP_UPLOAD_LIMIT_MB = 4


@dataclass
class AppServer:
    url: str
    port: int
    log: Path
    process: subprocess.Popen
    hub_cache: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(home: Path, **env_overrides: str):
    """``python app.py`` in a subprocess, the way Spaces runs it: on loopback
    and a free port, with a Hub cache under ``home``; no ``HF_*``, ``GRADIO_*``
    or ``APP_*`` setting of the test's own environment leaks in, only
    ``env_overrides``. Yields an :class:`AppServer` once the page answers."""
    hub_cache = home / "hf" / "hub"
    hub_cache.mkdir(parents=True)
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "GRADIO_", "APP_", "HUGGING_FACE_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(home / "gradio"), HF_HOME=str(home / "hf"), HF_HUB_CACHE=str(hub_cache),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.update(env_overrides)
    log = home / "app.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = AppServer(f"http://127.0.0.1:{port}/", port, log, process, hub_cache)
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"python app.py exited with {process.returncode}:\n{server.output()}")
            try:
                with urllib.request.urlopen(server.url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"python app.py did not answer on {server.url} within 120 s:\n{server.output()}")
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The app with the Hub offline and an empty cache (so it never tries the
    network and Swin weights are unavailable), uploads limited to
    ``APP_UPLOAD_LIMIT_MB``."""
    with running_app(tmp_path_factory.mktemp("app"), HF_HUB_OFFLINE="1",
                     APP_MAX_UPLOAD_MB=str(APP_UPLOAD_LIMIT_MB)) as server:
        yield server


def assert_one_sentence(message) -> None:
    """What every message to a user must be: one sentence, no stack trace."""
    assert isinstance(message, str) and message, message
    assert message.endswith(".") and ". " not in message.rstrip(".") and "\n" not in message, message
    assert "Traceback" not in message and "Error" not in message, message
