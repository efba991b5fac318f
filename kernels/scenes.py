"""Scenes: traces a GPU recorded, shipped under scenes/ with a manifest, replayed anywhere.

A scene is one trace file (kernels/trace_io.py format) plus what a speaker needs to open it: a
title, a one-line narration, the page and the step it opens at, the block or row it follows. The
manifest says which GPU, torch, triton and date recorded them (kernels/record.py writes it).
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
PAGES = ("attention", "backward", "softmax")
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


def _text(name: str, value, most: int) -> str:
    if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= most:
        raise ValueError(f"scene {name}: must be printable text of 1 to {most} characters, got {value!r:.60}")
    return value


def read_manifest(directory: Path = SCENES_DIR) -> tuple[list[Scene], dict]:
    """(scenes, recorded-with) from directory/manifest.json; ([], {}) when there is none."""
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return [], {}
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 10} KiB: not a scene manifest")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable scene manifest: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), list) or not isinstance(data.get("recorded"), dict):
        raise ValueError(f"{path} must hold {{'recorded': {{...}}, 'scenes': [...]}}")
    recorded = {k: _text(f"recorded.{k}", str(v), 120) for k, v in data["recorded"].items()}
    scenes, names = [], set()
    for entry in data["scenes"]:
        if not isinstance(entry, dict) or set(entry) != set(Scene.__dataclass_fields__):
            raise ValueError(f"{path}: a scene must have exactly the fields {sorted(Scene.__dataclass_fields__)}")
        name = entry["name"]
        if not isinstance(name, str) or not NAME.match(name) or name in names:
            raise ValueError(f"{path}: scene names are unique lowercase words with dashes, got {name!r:.40}")
        names.add(name)
        if entry["file"] != f"{name}.npz":
            raise ValueError(f"{path}: scene {name}'s file must be {name}.npz, got {entry['file']!r:.60}")
        scenes.append(Scene(
            name=name, title=_text(name, entry["title"], 80), narration=_text(name, entry["narration"], 240),
            page=limits.check_choice(f"scene {name}: page", entry["page"], PAGES),
            step=limits.check_int(f"scene {name}: step", entry["step"], 1, 1 << 20),
            follow=limits.check_int(f"scene {name}: follow", entry["follow"], 0, 1 << 20),
            row=limits.check_int(f"scene {name}: row", entry["row"], 0, 1 << 20), file=entry["file"]))
    return scenes, recorded


def scene_path(scene: Scene, directory: Path = SCENES_DIR) -> Path:
    return Path(directory) / scene.file


def load_scene(scene: Scene, directory: Path = SCENES_DIR):
    """The scene's trace (trace_io.load checks it)."""
    from kernels import trace_io

    return trace_io.load(scene_path(scene, directory), scene.file)
