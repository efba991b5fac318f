"""The talk (viz/talk.py, viz/script.py, the start page's title cards, the speaker console): the
nine chapters as stops, a press past a scene's end going on to the next stop, chapter keys, the
console driving a room that followers go to, and every stop's script readable at every step."""
import logging
import warnings
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kernels import scenes
from viz import script, talk
from viz.stepper import ACTIONS, apply_presses

ROOT = Path(__file__).resolve().parents[1]
SHIPPED, _ = scenes.read_manifest()
warnings.filterwarnings("ignore", message=".*ScriptRunContext.*")
logging.getLogger("streamlit").setLevel(logging.ERROR)


def _app(page: str, state: dict | None = None, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page(page)
    for k, v in query.items():
        at.query_params[k] = str(v)
    for k, v in (state or {}).items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _press(at, move: tuple) -> dict:
    """The stepper's record of a press past an end or a chapter key, then a run: the query the app
    switched to (AppTest runs the page it was given again; the browser would open the new one)."""
    at.session_state["talk.move"] = move
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return dict(at.query_params)


def _html(at) -> str:
    return " ".join(" ".join(str(h.proto.body).split()) for h in at.get("html"))


def test_the_story_is_nine_cards_and_every_scene_once():
    cards = [s for s in talk.STOPS if s.card]
    assert [s.chapter for s in cards] == list(range(9))
    named = [s.scene for s in talk.STOPS if s.scene]
    assert len(named) == len(set(named))
    shipped = {s.name for s in SHIPPED}
    assert set(named) <= shipped, set(named) - shipped
    for k, stop in enumerate(talk.STOPS):
        assert talk.stop_of(stop.page, stop.scene, stop.chapter) == k
    assert talk.card_of(-3) == 0 and talk.card_of(99) == talk.stop_of(talk.START, None, 8)
    assert talk.query_of(talk.STOPS[0], step=None, present=1) == {"chapter": 1, "talk": 1, "present": 1}


def test_every_stop_has_a_script_at_every_step():
    for k in range(len(talk.STOPS)):
        s = script.script(k)
        assert s.steps >= 1 and 0 <= s.opening < s.steps, (k, s.title)
        assert s.steps == 1 or s.opening < s.steps - 1, f"{s.title} opens at its last step"
        for step in range(s.steps):
            text = s.say(step)
            assert text and "(not at this step)" not in text and "cannot be read" not in text, (k, step, text)
    assert "PyTorch's FlashAttention-2" in script.script(talk.last()).say(0)


def test_presses_past_the_ends_and_chapter_keys_are_moves():
    seen = {"nonce": "a", **dict.fromkeys(ACTIONS, 0)}
    press = lambda **d: {"nonce": "a", **dict.fromkeys(ACTIONS, 0), **d}  # noqa: E731
    assert apply_presses(4, 5, False, press(next=1), seen)[4] == ("beyond", 1)
    assert apply_presses(0, 5, False, press(prev=1), seen)[4] == ("beyond", -1)
    assert apply_presses(2, 5, False, press(next=1), seen)[4] is None
    step, _, _, _, move = apply_presses(2, 5, False, press(chapter_next=1), seen)
    assert (step, move) == (2, ("chapter", 1))
    assert apply_presses(2, 5, False, press(chapter_prev=1), seen)[4] == ("chapter", -1)


def test_a_card_leads_on_to_its_first_scene_and_back():
    at = _app("viz/pages/start.py", chapter=2, talk=1)
    assert "One q-block, tile by tile" in _html(at) and "Chapter 2 of 9" in _html(at)
    assert _press(at, ("beyond", 1)) == {"scene": "first-look", "talk": "1", "q_block": "3", "row": "197", "step": "3"}
    scene = _app("viz/pages/attention.py", scene="first-look", talk=1)
    assert _press(scene, ("beyond", -1)) == {"chapter": "2", "talk": "1"}  # the card (one step)
    assert "talk.to_last" not in scene.session_state
    card = _app("viz/pages/start.py", chapter=2, talk=1)
    assert _press(card, ("chapter", 1))["chapter"] == "3"  # ] : the next chapter's card
    assert _press(_app("viz/pages/start.py", chapter=3, talk=1), ("chapter", -1))["chapter"] == "2"


def test_going_back_opens_the_previous_scene_at_its_last_step():
    at = _app("viz/pages/start.py", chapter=3, talk=1)
    back = _press(at, ("beyond", -1))
    assert back["scene"] == "scores-x100" and back["step"] == "6"  # its last step (6 of 6)
    assert not at.warning, [w.value for w in at.warning]  # no "past the last step" warning


def test_outside_talk_mode_the_ends_stay_put():
    at = _app("viz/pages/attention.py", scene="first-look")
    assert _press(at, ("beyond", 1))["scene"] == "first-look"
    assert _press(at, ("chapter", 1)) == {"chapter": "3", "talk": "1"}  # a chapter key opens the talk anywhere


def test_the_console_drives_a_room_and_a_follower_goes_there():
    room = "test-room-1"
    console = _app("viz/pages/console.py", room=room)
    assert "Naive softmax overflows" in _html(console)
    for _ in range(2):  # Next past the card's one step, then past the first scene's last
        console.session_state["talk.move"] = ("beyond", 1)
        console.run()
    r = talk.room(room)
    assert r.stop == 2 and talk.STOPS[2].scene == "softmax-rescales", r
    assert r.step == script.script(2).opening  # a stop opens where its narration starts
    went = dict(_app("viz/pages/start.py", follow=room, present=1).query_params)
    assert went["scene"] == "softmax-rescales" and went["follow"] == room and went["step"] == str(r.step + 1)
    follower = _app("viz/pages/softmax.py", {"talk.seen_version": r.version}, **went)
    assert "following room" in " ".join(c.value for c in follower.caption)  # read-only: the console steps it
    at_step = r.step
    talk.set_room(room, r.stop, at_step + 1)  # the console's Next
    follower.run()  # the follower's look at its room (every second in a browser)
    assert follower.query_params["step"] == str(at_step + 2)
    console.session_state["talk.move"] = ("chapter", 1)
    console.run()
    assert talk.room(room).stop == talk.card_of(1)


@pytest.mark.parametrize("bad", ["UPPER", "a" * 25, "sp ace", ""])
def test_room_names_are_checked(bad):
    with pytest.raises(ValueError, match="lowercase letters"):
        talk.room_name(bad)
    at = _app("viz/pages/start.py", follow=bad or "x y")
    assert any("follow" in w.value for w in at.warning)


def test_a_cuda_build_without_a_gpu_is_named(monkeypatch):
    """pip's silent fallback to PyPI's CUDA build on a machine without a GPU: the install check
    exits 1 and the start page says what to do."""
    import subprocess
    import sys

    import torch

    from kernels import backend

    assert backend.torch_build_problem() is None  # this machine: the CPU build
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problem = backend.torch_build_problem()
    assert "CUDA 12.8 build" in problem and "download.pytorch.org/whl/cpu" in problem
    at = _app("viz/pages/start.py")
    assert any("CUDA 12.8 build" in w.value.replace("\\", "") for w in at.warning)
    ok = subprocess.run([sys.executable, "-m", "kernels.install_check"], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0 and "interpreter" in ok.stdout.lower()
