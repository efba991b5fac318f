"""The shipped scenes (recorded on a GPU): every one loads through the trace loader, matches its
float64 reference within its dtype's bound, and opens at a step and a block it has. The recorder's
command refuses the interpreter unless asked, and records scenes that load back."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import ring_verify, scenes
from kernels.record import check
from kernels.ring_trace import RingTrace
from kernels.softmax_trace import SoftmaxTrace
from kernels.trace_backward import BackwardTrace
from tests.helpers import n_rows, walk_blocks

ROOT = Path(__file__).resolve().parents[1]
SHIPPED, RECORDED = scenes.read_manifest()


def test_the_scenes_ship_and_say_what_recorded_them():
    assert len(SHIPPED) >= 8, "at least 8 scenes ship under scenes/"
    assert {"gpu", "torch", "triton", "date"} <= set(RECORDED) and "compiled" in RECORDED["mode"]
    size = sum(p.stat().st_size for p in scenes.SCENES_DIR.glob("*.npz"))
    assert size < 36e6, f"the scenes take {size / 1e6:.1f} MB"  # a clone stays small: 19 scenes are 32.2 MB
    assert {s.page for s in SHIPPED} == set(scenes.PAGES)


@pytest.mark.parametrize("scene", SHIPPED, ids=lambda s: s.name)
def test_every_scene_loads_and_matches_float64(scene):
    trace = scenes.load_scene(scene)
    if scene.recorded:  # a scene that says what recorded it (the ring's, on CPU for now) says it truly
        assert trace.device in scene.recorded and trace.transport in scene.recorded, (scene.recorded, trace.device)
    else:
        assert "compiled" in trace.device, f"{scene.name} was not recorded on a GPU: {trace.device}"
    if isinstance(trace, RingTrace):  # the ring's own bound: the kernel's plus its merges (tests/test_ring.py)
        assert trace.max_abs_err <= ring_verify.bound(trace.config) * max(1.0, float(abs(trace.ref_out).max()))
        assert scene.step <= trace.config.world_size and scene.row in trace.rows
        return
    check(scene.name, trace)  # the kernel's output against the float64 reference in the file
    if isinstance(trace, SoftmaxTrace):
        return
    c = trace.config
    if isinstance(trace, BackwardTrace):
        assert trace.tile_slot(scene.follow) is not None and scene.step <= len(walk_blocks(trace, scene.follow))
        assert scene.row < c.seq_len
    else:
        assert trace.tile_slot(scene.follow) is not None, f"{scene.name} follows a q-block it did not keep"
        # FA1 order: one program per head, whose walk over every tile is the step
        steps = int(trace.visited.sum()) if c.loop_order == "fa1" else len(walk_blocks(trace, scene.follow))
        assert scene.step <= steps and scene.row < n_rows(trace, scene.follow)


def test_a_bad_manifest_entry_says_why(tmp_path):
    good = json.loads((scenes.SCENES_DIR / "manifest.json").read_text())
    import shutil

    shutil.copy(scenes.SCENES_DIR / good["scenes"][0]["file"], tmp_path / good["scenes"][0]["file"])
    for change, match in [
        ({"name": "../../etc"}, "scene names are unique"),
        ({"file": "../outside.npz"}, "file must be"),
        ({"page": "admin"}, "page must be one of"),
        ({"step": 0}, "step must be between 1"),
        ({"title": "<img src=x onerror=alert(1)>" * 10}, "printable text of 1 to 80"),
    ]:
        bad = {**good, "scenes": [{**good["scenes"][0], **change}]}
        (tmp_path / "manifest.json").write_text(json.dumps(bad))
        shipped, _, notes = scenes.read_manifest_notes(tmp_path)
        assert shipped == [] and len(notes) == 1 and re.search(match, notes[0]), (change, notes)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable scene manifest"):
        scenes.read_manifest(tmp_path)
    assert scenes.read_manifest(tmp_path / "nowhere") == ([], {})


def test_record_refuses_the_interpreter_and_records_when_asked(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kernels.record", str(tmp_path / "s")], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "records the shipped scenes on a GPU" in out.stderr
    out = subprocess.run([sys.executable, "-m", "kernels.record", str(tmp_path / "s"), "--allow-cpu", "--only",
                          "fa1-order", "softmax-overflow"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got, recorded = scenes.read_manifest(tmp_path / "s")
    assert [s.name for s in got] == ["fa1-order", "softmax-overflow"] and "interpreter" in recorded["mode"]
    for s in got:
        check(s.name, scenes.load_scene(s, tmp_path / "s"))
    shutil.rmtree(tmp_path / "s")


def test_a_bad_manifest_entry_is_left_out_the_others_stay(tmp_path):
    import json
    import shutil

    from kernels import scenes as ks

    data = json.loads((ks.SCENES_DIR / "manifest.json").read_text())
    good = data["scenes"][:3]
    for e in good:
        shutil.copy(ks.SCENES_DIR / e["file"], tmp_path / e["file"])
    lying = [dict(good[0], name="ghost", file="ghost.npz"),  # no such file
             dict(good[1], page="nowhere"), dict(good[2], step="3"), {"name": "x"}, "not an entry",
             dict(good[0], title="[click](http://evil.example) " + "x" * 100)]
    data["scenes"] = lying + good
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    shipped, _, notes = ks.read_manifest_notes(tmp_path)
    assert [s.name for s in shipped] == [e["name"] for e in good], "the good entries stay"
    assert len(notes) == len(lying) and all(str(tmp_path) not in n for n in notes), notes
