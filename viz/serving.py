"""Serving a room: what the Streamlit server must not do on its own.

Streamlit checks a WebSocket's Origin against this machine's addresses, which it finds by opening a
UDP socket towards 8.8.8.8 and by HTTP requests to checkip.amazonaws.com, on the thread that serves
every visitor, again for each refused connection while the lookups fail (no network: DNS timeouts).
`no_outbound_lookups()` fills those addresses in with loopback's before any visitor arrives, so a
foreign-origin connection is refused without the server ever reaching outside. Origins still
allowed: localhost and 127.0.0.1, and `browser.serverAddress` / `server.corsAllowedOrigins` where
the room's setup names them (README, "Serving a room").

Not for: the app's pages (viz/pages) or its limits (kernels/limits.py).
"""


def no_outbound_lookups() -> None:
    try:
        from streamlit import net_util
    except ImportError:
        return
    if getattr(net_util, "_internal_ip", None) is None:
        net_util._internal_ip = "127.0.0.1"
    if getattr(net_util, "_external_ip", None) is None:
        net_util._external_ip = "127.0.0.1"
