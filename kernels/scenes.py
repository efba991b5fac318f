"""Scenes: traces a GPU recorded, shipped under scenes/ with a manifest, replayed anywhere.

A scene is one trace file (kernels/trace_io.py format) plus what a speaker needs to open it: a
title, a one-line narration, the page and the step it opens at, the block or row it follows. The
manifest says which GPU, torch, triton and date recorded them (kernels/record.py writes it); a
scene recorded by something else says so itself (`recorded`: the ring scenes, kernels/ring_local.py).
Loading needs no triton: a laptop without a GPU replays them. The manifest is checked like a
trace file: unknown pages, names or files outside scenes/ are refused with a ValueError.

Not for: recording (kernels/record.py, on a GPU) or drawing (viz/).
"""
import json
import re
from dataclasses import dataclass
from pathlib import Path

from kernels import limits

SCENES_DIR = Path(__file__).resolve().parents[1] / "scenes"
PAGES = ("attention", "backward", "softmax", "ring")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
MAX_MANIFEST_BYTES = 64 << 10


@dataclass(frozen=True)
class Scene:
    name: str  # the URL's scene=NAME
    title: str
    narration: str
    page: str  # one of PAGES
    step: int  # 1-based, as displayed
    follow: int  # the q-block (attention), kv-block (backward) or row (softmax page: 0) it follows
    row: int  # the row within the q-block (attention) or the query row (backward) it shows
    file: str  # under scenes/
    recorded: str = ""  # what recorded this scene when it is not the manifest's GPU (the CPU ring scenes)


def _text(name: str, value, most: int) -> str:
    if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= most:
        raise ValueError(f"scene {name}: must be printable text of 1 to {most} characters, got {value!r:.60}")
    return value


def read_manifest(directory: Path = SCENES_DIR) -> tuple[list[Scene], dict]:
    """(scenes, recorded-with) from directory/manifest.json; ([], {}) when there is none. A scene
    entry that does not hold is left out (read_manifest_notes says which and why)."""
    scenes, recorded, _ = read_manifest_notes(directory)
    return scenes, recorded


def read_manifest_notes(directory: Path = SCENES_DIR) -> tuple[list[Scene], dict, list[str]]:
    """(scenes, recorded-with, notes): each entry checked on its own, a bad one skipped with a note
    (plain text, no path), so one broken entry never hides the others. ValueError only when the
    manifest as a whole cannot be read."""
    path = Path(directory) / "manifest.json"
    where = "scenes/manifest.json"
    if not path.exists():
        return [], {}, []
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{where} is larger than {MAX_MANIFEST_BYTES >> 10} KiB: not a scene manifest")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{where} is not a readable scene manifest: {str(e)[:120]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), list) or not isinstance(data.get("recorded"), dict):
        raise ValueError(f"{where} must hold {{'recorded': {{...}}, 'scenes': [...]}}")
    recorded = {}
    for k, v in list(data["recorded"].items())[:16]:
        try:
            recorded[_text("recorded", str(k), 40)] = _text(f"recorded.{k}", str(v), 120)
        except ValueError:
            continue
    scenes, names, notes = [], set(), []
    for n, entry in enumerate(data["scenes"][:64]):
        try:
            scene = _entry(entry, names, Path(directory))
        except (ValueError, TypeError, KeyError) as e:
            notes.append(f"scene entry {n + 1} left out: {str(e)[:160]}")
            continue
        names.add(scene.name)
        scenes.append(scene)
    if len(data["scenes"]) > 64:
        notes.append(f"{len(data['scenes']) - 64} scene entries past the 64th left out")
    return scenes, recorded, notes


def _entry(entry, names: set, directory: Path) -> Scene:
    required = set(Scene.__dataclass_fields__) - {"recorded"}
    if not isinstance(entry, dict) or not required <= set(entry) <= required | {"recorded"}:
        raise ValueError(f"a scene must have exactly the fields {', '.join(sorted(required))} (and may say what "
                         f"recorded it)")
    name = entry["name"]
    if not isinstance(name, str) or not NAME.match(name) or name in names:
        raise ValueError(f"scene names are unique lowercase words with dashes, got {str(name)[:40]!r}")
    if entry["file"] != f"{name}.npz":
        raise ValueError(f"scene {name}'s file must be {name}.npz, got {str(entry['file'])[:60]!r}")
    if not (directory / entry["file"]).is_file():
        raise ValueError(f"scene {name}'s file is not in scenes/")
    return Scene(
        name=name, title=_text(name, entry["title"], 80), narration=_text(name, entry["narration"], 240),
        page=limits.check_choice(f"scene {name}: page", entry["page"], PAGES),
        step=limits.check_int(f"scene {name}: step", entry["step"], 1, 1 << 20),
        follow=limits.check_int(f"scene {name}: follow", entry["follow"], 0, 1 << 20),
        row=limits.check_int(f"scene {name}: row", entry["row"], 0, 1 << 20), file=entry["file"],
        recorded=_text(f"{name}: recorded", entry["recorded"], 160) if "recorded" in entry else "")


def scene_path(scene: Scene, directory: Path = SCENES_DIR) -> Path:
    return Path(directory) / scene.file


def load_scene(scene: Scene, directory: Path = SCENES_DIR):
    """The scene's trace (trace_io.load checks it)."""
    from kernels import trace_io

    return trace_io.load(scene_path(scene, directory), scene.file)


COUNTS_FILE = "softmax_counts.json"


def softmax_counts(directory: Path = SCENES_DIR) -> dict:
    """{scene name: {variant: {"loads", "stores"}}}: what the softmax kernels counted over each
    attention scene's N x N scores (kernels/record.py writes the file). An entry whose counts are
    not the traffic model's for its sequence length, or that is not a whole number, is left out."""
    from kernels import traffic

    path = Path(directory) / COUNTS_FILE
    if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for name, entry in (data.get("scenes", {}) if isinstance(data, dict) else {}).items():
        try:
            n = limits.check_int("seq_len", entry["seq_len"], 1, limits.MAX_SEQ_LEN_GPU)
            counts = {}
            for variant, c in entry["counts"].items():
                model = traffic.softmax(variant, n, n)
                got = {k: limits.check_int(k, c[k], 0) for k in ("loads", "stores")}
                if got != {k: model[k] for k in got}:
                    raise ValueError(f"{variant}: not the model's counts")
                counts[variant] = got
            out[str(name)[:40]] = counts
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return out
