"""Shared fixtures. The Hub is never reached: a loopback fake (tests/fakehub.py)
serves checkpoints the tests make, into a Hub cache in a temporary folder."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fakehub import FakeHub, fast_retries, set_timeouts, use_hub  # noqa: E402


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
