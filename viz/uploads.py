"""Uploaded traces, held once per server in a bounded store that gives memory back.

A visitor's upload is checked (kernels/trace_io.py) and kept here, not in the visitor's session:
the session holds only its key. The store has one budget for the whole server (UPLOAD_BUDGET_MB,
overridable by FA_VIZ_UPLOAD_BUDGET_MB): a trace that does not fit after the oldest entries no
live visitor uses are freed is refused with a message naming its size and the budget; the same
file uploaded by several visitors is held once. Entries whose visitors have all left are freed by
`prune`, which runs at every upload and every PRUNE_SECONDS on a timer, so the memory of a room of
visitors comes back after they go.

Not for: reading files (kernels/trace_io.py) or the widgets (viz/page.py).
"""
import gc
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

UPLOAD_BUDGET_MB = int(os.environ.get("FA_VIZ_UPLOAD_BUDGET_MB", "1024"))
PRUNE_SECONDS = 30.0
IDLE_SECONDS = 1800.0  # when the server cannot say which sessions are live: free what no one used this long


def trace_bytes(trace) -> int:
    """The bytes of a trace's arrays, what holding it costs."""
    return sum(v.nbytes for v in vars(trace).values() if isinstance(v, np.ndarray))


@dataclass
class Entry:
    trace: object
    nbytes: int
    sessions: set = field(default_factory=set)
    last_used: float = field(default_factory=time.monotonic)


class UploadStore:
    """{key: Entry} within `budget` bytes; `active()` -> the ids of the sessions still connected."""

    def __init__(self, budget: int, active):
        self.budget, self.active = budget, active
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()

    @staticmethod
    def key(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def used(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def get(self, key: str, session: str):
        """The trace under `key` for this session, or None when it was freed."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            entry.sessions.add(session)
            entry.last_used = time.monotonic()
            return entry.trace

    def put(self, key: str, trace, session: str) -> None:
        """Hold `trace` for `session`; ValueError (a message for the visitor) when it does not fit."""
        size = trace_bytes(trace)
        with self.lock:
            self._prune_locked()
            if key in self.entries:
                self.entries[key].sessions.add(session)
                return
            if size > self.budget:
                raise ValueError(f"this trace takes {size >> 20} MiB; the server holds at most {self.budget >> 20} MiB "
                                 f"of uploaded traces: record a shorter sequence or fewer kept blocks")
            live = self.active() or set()
            for old in sorted(self.entries, key=lambda k: self.entries[k].last_used):  # the oldest first
                if self.used() + size <= self.budget:
                    break
                if not (self.entries[old].sessions & live) or self.entries[old].sessions <= {session}:
                    del self.entries[old]
            if self.used() + size > self.budget:
                raise ValueError(f"the server's memory for uploaded traces is in use by other visitors "
                                 f"({self.used() >> 20} of {self.budget >> 20} MiB; this trace needs {size >> 20} MiB): "
                                 "try again when they are done, or replay a scene")
            self.entries[key] = Entry(trace, size, {session})
        gc.collect()

    def release(self, key: str, session: str) -> None:
        """The session is done with `key` (it went back to the scenes, or loaded another file)."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                entry.sessions.discard(session)
        self.prune()

    def prune(self) -> int:
        """Free every entry no live session holds; the bytes freed."""
        with self.lock:
            freed = self._prune_locked()
        if freed:
            gc.collect()
        return freed

    def _prune_locked(self) -> int:
        live = self.active()
        now = time.monotonic()
        gone = [k for k, e in self.entries.items()
                if (not (e.sessions & live) if live is not None else now - e.last_used > IDLE_SECONDS)]
        freed = sum(self.entries[k].nbytes for k in gone)
        for k in gone:
            del self.entries[k]
        return freed


def active_sessions() -> set | None:
    """The ids of the sessions connected to this Streamlit server now; None when the server cannot
    say (no runtime, or its session manager changed): then entries are freed by idle time alone."""
    try:
        from streamlit.runtime import get_instance

        return {info.session.id for info in get_instance()._session_mgr.list_active_sessions()}
    except Exception:
        return None


def start_pruning(store: UploadStore, every: float = PRUNE_SECONDS) -> threading.Thread:
    """A daemon thread that prunes the store every `every` seconds."""
    def loop():
        while True:
            time.sleep(every)
            store.prune()

    thread = threading.Thread(target=loop, name="fa-viz-upload-prune", daemon=True)
    thread.start()
    return thread
