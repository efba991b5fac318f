"""The talk's script: for each stop of the talk (viz/talk.py STOPS), its title, how many steps it
has, the step it opens at, and the speaker's words at each step (viz/words.py, from the scene's
recorded trace), as the speaker console and the offline deck read them.

Not for: the pages' own stepping (they read their traces themselves) or navigation (viz/talk.py).
"""
import math
from collections.abc import Callable
from dataclasses import dataclass

from kernels import results, scenes, steps
from viz import talk, words


@dataclass(frozen=True)
class Loader:
    """Where the scenes come from: the app's caches (`app_loader`), or the files (`file_loader`, the deck)."""
    scene: Callable  # name -> Scene or None
    trace: Callable  # name -> trace (ValueError when it cannot be read)
    pairs: Callable  # () -> {fa1 scene name: (fa2 scene, fa1 scene)}


def app_loader() -> Loader:
    from viz import state

    return Loader(state.scene_by_name, state.scene_trace, state.scene_pairs)


def file_loader(directory=scenes.SCENES_DIR) -> Loader:
    """Scenes read from `directory` once each, with no Streamlit (python -m viz.deck)."""
    shipped, _ = scenes.read_manifest(directory)
    by_name, cache = {s.name: s for s in shipped}, {}

    def trace(name):
        if name not in by_name:
            raise ValueError(f"there is no scene called {name!r}")
        if name not in cache:
            cache[name] = scenes.load_scene(by_name[name], directory)
        return cache[name]

    def config_of(s):
        try:
            return trace(s.name).config
        except ValueError:
            return None

    return Loader(by_name.get, trace, lambda: scenes.order_pairs(shipped, config_of))


@dataclass(frozen=True)
class Script:
    title: str  # what the stop is: "Chapter 2 · ..." or the scene's title
    notes: str  # the speaker's notes: the chapter's point, or the scene's narration
    steps: int
    opening: int  # 0-based: where the stop opens going forward
    say: Callable[[int], str]  # words at step k (0-based)
    kind: str = "card"  # what draws it: "card", "bench", "attention", "softmax", "backward", "orders", "ring", "missing"
    data: tuple = ()  # what the drawing needs: (trace, walk, row), (fa2 trace, fa1 trace, walks), (run,)


def bench_words(result: dict | None = None) -> str:
    """The benchmarks' headline: from `result`, else the run the Benchmarks page opens on (the
    newest with forward ratios)."""
    from viz.figures.benchmarks import ordered_runs

    recorded = results.recorded()
    runs = [result] if result is not None else [recorded[name] for name in ordered_runs(recorded)]
    for run in runs:
        rows = [r for r in results.ratios(run) if r["kind"] == "attention" and r.get("vs_sdpa_flash_attention")]
        if rows:
            gm = math.exp(sum(math.log(r["vs_sdpa_flash_attention"]) for r in rows) / len(rows))
            best = max(rows, key=lambda r: r["ours_tflops"] or 0)
            gpu = run["env"]["gpu"]
            return (f"On the {gpu}, the kernel you just stepped through (TRACE off) runs the forward at "
                    f"{gm:.2f}× PyTorch's FlashAttention-2 backend (geometric mean of {len(rows)} cases, timed in the "
                    f"same run), up to {best['ours_tflops']:.0f} TFLOP/s (head_dim {best['head_dim']}, N "
                    f"{best['seq_len']}{', causal' if best['causal'] else ''}).")
    return "No recorded benchmark run ships with this copy: python -m bench on a GPU records one."


def script(index: int, loader: Loader | None = None) -> Script:
    """Stop `index`'s script; a scene that cannot be read says so in its words (one step)."""
    loader = loader or app_loader()
    stop = talk.STOPS[index]
    title, point, _, _ = talk.STORY[stop.chapter]
    if stop.card:
        return Script(title, point, 1, 0, lambda k: point)
    if stop.scene is None:  # the Benchmarks page
        text = bench_words()
        return Script(f"{title}: Benchmarks", point, 1, 0, lambda k: text, "bench")
    scene = loader.scene(stop.scene)
    try:
        if scene is None:
            raise ValueError(f"there is no scene called {stop.scene!r}")
        trace = loader.trace(scene.name)
    except ValueError as e:
        return Script(stop.scene, point, 1, 0, lambda k, e=e: f"This scene cannot be read: {e}", "missing")
    if stop.page == talk.ORDERS:
        from viz.figures import orders as fo

        pair = loader.pairs().get(scene.name)
        t2, t1 = (loader.trace(pair[0].name), trace) if pair else (trace, trace)
        w2, w1 = fo.walk(t2), fo.walk(t1)
        return Script(f"{scene.title} + FA2", scene.narration, len(w2), 0,
                      lambda k: words.orders(t2, t1, k, w2, w1), "orders", (t2, t1, w2, w1))
    if scene.page == "ring":
        row = trace.nearest_row(scene.row)
        n = trace.config.world_size
        return Script(scene.title, scene.narration, n, min(scene.step - 1, n - 1), lambda k: words.ring(trace, k, row),
                      "ring", (trace, row))
    if scene.page == "softmax":
        n = steps.softmax_step_count(trace.config.length, trace.config.block)
        return Script(scene.title, scene.narration, n, min(scene.step - 1, n - 1), lambda k: words.softmax(trace, k, scene),
                      "softmax", (trace,))
    if scene.page == "backward":
        walk = steps.backward_steps(trace, scene.follow)
        return Script(scene.title, scene.narration, len(walk), min(scene.step - 1, len(walk) - 1),
                      lambda k: words.backward(trace, walk[k], scene.row, scene), "backward", (trace, walk, scene.row))
    walk = steps.steps(trace, scene.follow)
    row = min(scene.row, len(walk[0].rows) - 1)
    return Script(scene.title, scene.narration, len(walk), min(scene.step - 1, len(walk) - 1),
                  lambda k: words.attention(trace, walk[k], row, scene), "attention", (trace, walk, row))
