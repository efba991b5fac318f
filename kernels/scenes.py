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
import string
from dataclasses import dataclass, field
from pathlib import Path

from kernels import limits

SCENES_DIR = Path(__file__).resolve().parents[1] / "scenes"
PAGES = ("attention", "backward", "softmax", "ring")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
MAX_MANIFEST_BYTES = 64 << 10
# the facts a scene's words may name, per page (viz/words.py fills them from the trace at each step)
WORD_FACTS = {
    "attention": {"q", "kv", "row", "m_old", "m_new", "rowmax", "alpha", "l_old", "l_new", "rowsum", "masked", "keys",
                  "split", "splits", "tile", "tiles", "err", "dtype", "merged_m"},
    "softmax": {"pass", "chunk", "chunks", "lo", "hi", "length", "m_new", "d_new", "cmax", "m_old", "d_old", "factor",
                "naive_bad", "safe_bad", "online_bad", "online_err"},
    "backward": {"kv", "q", "rows_lo", "rows_hi", "step", "steps", "row", "ds_max", "p_max", "dk_err", "D"},
    "ring": set(),  # the ring page says its own numbers; its scenes carry no templates
}


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
    # the speaker's words for some steps: {"N" (1-based) or "*": template naming WORD_FACTS in braces}
    words: dict = field(default_factory=dict, hash=False)
    recorded: str = ""  # what recorded this scene when it is not the manifest's GPU (the CPU ring scenes)


def _text(name: str, value, most: int) -> str:
    if not isinstance(value, str) or not value.isprintable() or not 0 < len(value) <= most:
        raise ValueError(f"scene {name}: must be printable text of 1 to {most} characters, got {value!r:.60}")
    return value


def check_words(name: str, page: str, words) -> dict:
    """A scene's words: at most 64 templates keyed by a step number or "*", each 1-400 printable
    characters naming only the page's facts in braces and holding no digit of its own (a number
    the speaker reads out is the kernel's); ValueError names the step and what is wrong."""
    if not isinstance(words, dict) or len(words) > 64:
        raise ValueError(f"scene {name}: words must be a mapping of at most 64 steps")
    out = {}
    for key, template in words.items():
        if not (key == "*" or (isinstance(key, str) and key.isdigit() and 0 < int(key) <= 1 << 20)):
            raise ValueError(f"scene {name}: words are keyed by a step number or '*', got {str(key)[:20]!r}")
        where = f"scene {name}: words for step {key}"
        _text(where, template, 400)
        try:
            names = {n for _, n, _, _ in string.Formatter().parse(template) if n is not None}
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        unknown = names - WORD_FACTS[page]
        if unknown:
            raise ValueError(f"{where} name facts the {page} page has not: {sorted(unknown)[:4]}")
        if re.search(r"\b\d", re.sub(r"\{[^{}]*\}", " ", template)):  # float32 is a name, 100 a number
            raise ValueError(f"{where} hold a number of their own: numbers come from the kernel's facts")
        out[key] = template
    return out


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
    optional = {"words", "recorded"}
    required = set(Scene.__dataclass_fields__) - optional
    if not isinstance(entry, dict) or not required <= set(entry) <= required | optional:
        raise ValueError(f"a scene must have exactly the fields {', '.join(sorted(required))} (and may carry words "
                         f"and say what recorded it)")
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
        words=check_words(name, entry["page"], entry.get("words", {})),
        recorded=_text(f"{name}: recorded", entry["recorded"], 160) if "recorded" in entry else "")


def order_pairs(shipped: list[Scene], config_of) -> dict[str, tuple]:
    """{fa1 scene name: (fa2 scene, fa1 scene)}: shipped attention scenes recorded with the same
    config in both loop orders (the FA1 vs FA2 page replays them side by side). config_of(scene)
    -> its TraceConfig, or None when its trace cannot be read."""
    configs = {}
    for s in shipped:
        if s.page == "attention":
            c = config_of(s)
            if c is not None:
                configs[s.name] = (s, c)
    pairs = {}
    for s1, c1 in configs.values():
        if c1.loop_order != "fa1":
            continue
        for s2, c2 in configs.values():
            if c2.loop_order == "fa2" and c2.kv_splits == 1 and dict(c2.fields()) | {"loop_order": "fa1"} == dict(c1.fields()):
                pairs[s1.name] = (s2, s1)
    return pairs


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
            rows = limits.check_int("rows", entry.get("rows", n), 1, limits.MAX_GROUP * limits.MAX_SEQ_LEN_GPU)
            counts = {}
            for variant, c in entry["counts"].items():
                model = traffic.softmax(variant, rows, n)
                got = {k: limits.check_int(k, c[k], 0) for k in ("loads", "stores")}
                if got != {k: model[k] for k in got}:
                    raise ValueError(f"{variant}: not the model's counts")
                counts[variant] = got
            out[str(name)[:40]] = counts
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return out
