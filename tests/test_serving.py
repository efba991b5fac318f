"""Serving a room: the shipped Streamlit config keeps the server on this machine, hides tracebacks
and the developer menu, and sends nothing to the internet; uploads of every malformed trace file
become a message; a visitor waits for another's kernel run with a limit, never forever."""
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kernels import trace_io
from tests import trace_corpus
from viz import state

ROOT = Path(__file__).resolve().parents[1]


def _toml(text: str) -> dict:
    """The flat TOML Streamlit's config uses: [section], key = "text" | number | true | false, # comments
    (tomllib needs Python 3.11; the app supports 3.10)."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, value = (x.strip() for x in line.split("=", 1))
        section[key] = (value.strip('"') if value.startswith('"') else value == "true" if value in ("true", "false")
                        else float(value) if "." in value else int(value))
    return out


CONFIG = _toml((ROOT / ".streamlit" / "config.toml").read_text())


def test_config_is_safe_for_a_room():
    assert CONFIG["server"]["address"] == "127.0.0.1"
    assert CONFIG["server"]["enableXsrfProtection"] is True
    assert CONFIG["browser"]["gatherUsageStats"] is False
    assert CONFIG["client"]["showErrorDetails"] == "none"
    assert CONFIG["client"]["toolbarMode"] == "viewer"
    # the largest trace file the loader accepts must fit through the uploader, and no more than that by much
    assert trace_io.MAX_FILE_BYTES / 1e6 <= CONFIG["server"]["maxUploadSize"] <= 2 * trace_io.MAX_FILE_BYTES / 1e6


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port` (Linux /proc/net/tcp{,6}), as hex as the kernel writes them."""
    found = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state_ = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and state_ == "0A":  # LISTEN
                found.append(addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_server_listens_on_loopback_only(server):
    port = int(server.rsplit(":", 1)[1])
    addrs = _listening(port)
    assert addrs, f"nothing listens on {port}"
    loopback = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1
    assert set(addrs) <= loopback, f"listening beyond this machine: {addrs}"


@pytest.fixture(scope="module")
def corpus():
    good_fwd = (ROOT / "scenes" / "causal.npz").read_bytes()
    good_bwd = (ROOT / "scenes" / "backward.npz").read_bytes()
    return trace_corpus.corpus(good_fwd, good_bwd)


def test_every_malformed_upload_is_a_message(corpus):
    """Each file of the corpus through the page's uploader: an error naming the file, no traceback."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("viz/pages/attention.py")
    at.query_params["scene"] = "causal"
    at.run()
    assert not at.exception
    for name, data, _ in corpus:
        at.sidebar.file_uploader[0].set_value((f"{name}.npz", data, "application/octet-stream")).run()
        assert not at.exception, (name, [e.value for e in at.exception])
        errors = [e.value for e in at.sidebar.error]
        assert errors and f"{name}.npz" in errors[0], (name, errors)
    assert len(corpus) >= 60


def test_a_busy_kernel_is_a_wait_with_a_limit(monkeypatch):
    monkeypatch.setattr(state, "LOCK_WAIT_SECONDS", 0.2)
    lock = state.kernel_lock()
    held = threading.Event()
    release = threading.Event()

    def other_visitor():
        with state.kernel_turn("FlashAttention capture (N 4096)"):
            held.set()
            release.wait(5)

    t = threading.Thread(target=other_visitor)
    t.start()
    held.wait(5)
    try:
        assert "another visitor's FlashAttention capture (N 4096), running for" in state.busy_note()
        with pytest.raises(TimeoutError, match="busy with other visitors' runs"):
            with state.kernel_turn():
                pass
    finally:
        release.set()
        t.join()
    assert state.busy_note() == ""
    with state.kernel_turn():  # free again: no wait
        assert lock.locked()
    assert not lock.locked()


def test_a_foreign_origin_is_refused_without_reaching_outside(monkeypatch):
    """Streamlit's origin check would look this machine's addresses up over the network (UDP to
    8.8.8.8, HTTP to checkip.amazonaws.com) on the serving thread: after no_outbound_lookups it
    refuses a foreign origin from the filled-in loopback addresses alone."""
    import socket

    from streamlit import net_util
    from streamlit.web.server import server_util

    from viz import serving

    monkeypatch.setattr(net_util, "_internal_ip", None)
    monkeypatch.setattr(net_util, "_external_ip", None)
    serving.no_outbound_lookups()
    calls = []
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(net_util, "_make_blocking_http_get", lambda *a, **k: calls.append(a))
    assert not server_util.is_url_from_allowed_origins("http://evil.example:8501")
    assert server_util.is_url_from_allowed_origins("http://localhost:8501")
    assert calls == [], f"the origin check reached outside: {calls}"
