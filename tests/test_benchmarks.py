"""The benchmark CLI and the Benchmarks page on the committed results (no GPU needed): the ratios
are ours over theirs, the charts and tables draw exactly the recorded numbers, the timing is
interleaved, the page's live run works through a stand-in GPU."""
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bench import report
from kernels import backend, results, tuning
from tests import browser as b
from viz import state
from viz.figures import benchmarks as fbench

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "viz" / "pages" / "benchmarks.py")
RECORDED = results.recorded()
WITH_ATTENTION = {k: r for k, r in RECORDED.items() if r.get("attention")}
WITH_BACKWARD = {k: r for k, r in RECORDED.items() if r.get("backward")}


def test_recorded_runs_are_complete():
    assert WITH_ATTENTION and WITH_BACKWARD
    for name, r in RECORDED.items():
        assert {"gpu", "torch", "triton", "date"} <= set(r["env"]), name
        assert r["ceilings"]["copy_TBps"] > 0 and r["ceilings"]["matmul_fp16_TFLOPs"] > 0, name
        for kind in ("attention", "backward"):
            ours = [x for x in r.get(kind, []) if x["impl"] == "ours" and x.get("tflops")]
            errs = [x.get("max_err_vs_sdpa_efficient", x.get("max_grad_err_vs_sdpa_efficient")) for x in ours]
            assert all(e is not None and e < 0.1 for e in errs), f"{name}: ours was wrong when timed"


@pytest.mark.parametrize("name", sorted(WITH_ATTENTION) + sorted(WITH_BACKWARD))
def test_ratios_tables_and_charts_are_the_recorded_numbers(name):
    r = RECORDED[name]
    kind = "attention" if r.get("attention") else "backward"
    rows = r[kind]
    table = {(t["head_dim"], t["causal"], t["seq_len"]): t for t in fbench.bench_ratio_table(r, kind)}
    for x in rows:
        if x["impl"] == "ours" or not x.get("tflops"):
            continue
        ours = next(o for o in rows if o["impl"] == "ours" and all(o[k] == x[k] for k in ("head_dim", "causal", "seq_len")))
        label = fbench.IMPL_LABELS[x["impl"]].replace("SDPA ", "").replace("_ATTENTION", "")
        assert table[(x["head_dim"], x["causal"], x["seq_len"])][f"ours / {label}"] == round(
            ours["tflops"] / x["tflops"], 2)
    assert all(v is not None for t in table.values() for k, v in t.items() if k == "ours TFLOP/s")
    fig = fbench.bench_attention_figure(r, kind)
    drawn = sorted(y for t in fig.data if t.name == fbench.IMPL_LABELS["ours"] for y in t.y)
    assert drawn == pytest.approx(sorted(x["tflops"] for x in rows if x["impl"] == "ours" and x.get("tflops")))
    assert report.table(r)


def test_softmax_table_and_chart():
    r = next(r for r in RECORDED.values() if r.get("softmax"))
    for t, x in zip(fbench.bench_softmax_ratio_table(r), results.softmax_ratios(r["softmax"], r["ceilings"]["copy_TBps"]),
                    strict=True):
        assert t["best"] == x["best"] and t["best / torch.softmax"] == round(x["best_vs_torch"], 2)
        assert None not in t.values()
    fig = fbench.bench_softmax_figure(r)
    single = [t for t in fig.data if t.name == "single-pass"]
    assert max(max(t.y) for t in single) == pytest.approx(max(x["GBps"] for x in r["softmax"] if x["impl"] == "single_pass"))


def _row(impl, tf, gtf=None):
    return {"impl": impl, "head_dim": 64, "causal": True, "seq_len": 1024, "tflops": tf, "ms": 1.0,
            **({"graph_tflops": gtf, "graph_ms": tf / gtf} if gtf else {})}


def test_graph_replay_ratios_table_and_dashed_line():
    """Synthetic rows: ours 200 TFLOP/s eager but 400 replayed, FLASH 250 and 300."""
    base = {"env": {"gpu": "g", "torch": "t", "triton": "3", "date": "2026-11-30T00:00:00"}, "ceilings": {}}
    result = {**base, "backward": [_row("ours", 200.0, 400.0), _row("sdpa_flash_attention", 250.0, 300.0)]}
    (r,) = results.vs_ours(result["backward"], "backward")
    assert r["vs_sdpa_flash_attention"] == pytest.approx(0.8) and r["gpu_vs_sdpa_flash_attention"] == pytest.approx(4 / 3)
    (t,) = fbench.bench_ratio_table(result, "backward")
    assert t["ours / FLASH"] == 0.8 and t["ours / FLASH, GPU only"] == 1.33
    assert "gpu sdpa_flash_attention" in report.table(result)
    dashed = [t for t in fbench.bench_attention_figure(result, "backward").data if t.line.dash == "dash"]
    assert [t.name for t in dashed] == ["ours, GPU time alone (CUDA graph replay)"]
    assert "1000 µs a call against 500 µs of GPU work" in fbench.host_bound_note(result)
    close = {**result, "backward": [_row("ours", 200.0, 210.0), _row("sdpa_flash_attention", 250.0, 260.0)]}
    assert fbench.host_bound_note(close).endswith("In every case the eager call takes within 10% of that.")
    plain = {**result, "backward": [_row("ours", 200.0), _row("sdpa_flash_attention", 250.0)]}
    assert not any(k.startswith("gpu_") for k in results.vs_ours(plain["backward"], "backward")[0])
    assert fbench.host_bound_note(plain) is None


def test_interleaved_timing_is_fair_on_a_heating_gpu():
    """A stand-in GPU that runs 4% slower with every timing: b truly takes 1.10x a. Interleaved
    rounds report it within one step of drift; a's rounds and then b's would say ~1.24x."""
    clock = {"calls": 0}

    def bench(fn):
        clock["calls"] += 1
        return fn() * 1.04 ** clock["calls"]

    ms, failed = tuning.interleaved_medians({"a": lambda: 1.0, "b": lambda: 1.1}, 3, bench)
    assert clock["calls"] == 6 and failed == {}
    assert ms["b"] / ms["a"] == pytest.approx(1.1 * 1.04, rel=1e-9)


def test_interleaved_timing_reports_an_implementation_that_fails():
    calls = {"oom": 0}

    def oom():
        calls["oom"] += 1
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    ms, failed = tuning.interleaved_medians({"a": lambda: 2.0, "oom": oom}, 3, lambda fn: fn())
    assert ms == {"a": 2.0} and calls["oom"] == 1
    assert failed == {"oom": "CUDA out of memory. Tried to allocate 2.00 GiB"}


def test_cli_help_and_refusal_without_gpu():
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--seq-lens" in out.stdout and "--small" in out.stdout
    env = {**os.environ, "FA_VIZ_FORCE_CPU": "1"}  # the interpreter: timings would mean nothing
    out = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "needs a CUDA GPU" in out.stderr, out.stderr


def test_benchmarks_never_import_back():
    """kernels/ and viz/ never import the benchmark CLI (it imports them)."""
    for path in list((ROOT / "kernels").glob("*.py")) + list((ROOT / "viz").rglob("*.py")) + [ROOT / "app.py"]:
        assert not re.search(r"^\s*(from bench\b|import bench\b)", path.read_text(), re.M), path


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_page_draws_every_recorded_run(name):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="bench.file").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    r = RECORDED[name]
    assert len(at.get("plotly_chart")) == sum(bool(r.get(k)) for k in ("attention", "backward", "softmax"))
    if backend.INTERPRET:
        assert any(f"measured on {r['env']['gpu']}" in i.value for i in at.info)


def test_live_run_flow_with_a_stand_in_gpu(monkeypatch):
    """The Run button's flow (progress bar, the live result first in the list) with the child
    process replaced; tests/test_gpu.py runs the real `python -m bench --small` on a GPU."""
    seen = []
    latest = copy.deepcopy(next(iter(WITH_ATTENTION.values())))

    def live(progress):
        for f in (0.0, 0.4, 1.0):
            progress(f, "step")
            seen.append(f)
        return {**latest, "env": {**latest["env"], "gpu": "stand-in GPU"}, "seconds": 0.1}

    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(state, "live_benchmark", live)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="bench.file").options[0] != "live run on this GPU"
    at.button(key="bench.run").click().run()
    assert not at.exception and seen == [0.0, 0.4, 1.0]
    box = at.selectbox(key="bench.file")
    assert box.options[0] == "live run on this GPU"
    box.set_value("live run on this GPU").run()
    assert any("stand-in GPU" in c.value for c in at.caption)


@pytest.mark.browser
def test_page_in_browser(server, page, tmp_path):
    page.goto(f"{server}/benchmarks")
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    b.idle(page)
    b.no_errors(page)
    assert page.locator(".js-plotly-plot").count() >= 2
    b.shot(page, tmp_path, "benchmarks")
    b.shots_down_the_page(page, tmp_path, "benchmarks", 5)


def test_a_result_says_what_it_was_measured_on(monkeypatch):
    """cuDNN's version and the SM clocks where the result has them (newer runs), and nothing made
    up where it has not (older runs); nvidia-smi missing is None, not an error."""
    env = {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "triton": "3.6.0", "date": "2026-12-02T13:02:34+00:00"}
    assert fbench.bench_measured_on({"env": env}) == "NVIDIA H200 · torch 2.11.0+cu130 · triton 3.6.0 · 2026-12-02 13:02 UTC"
    new = {**env, "cudnn": 91900, "clocks": {"sm_mhz": 1980, "sm_max_mhz": 1980}}
    assert fbench.bench_measured_on({"env": new}) == ("NVIDIA H200 · torch 2.11.0+cu130 · triton 3.6.0 · cuDNN 91900 · "
                                                      "2026-12-02 13:02 UTC · SM 1980 of 1980 MHz at the start")
    assert "cuDNN" not in fbench.bench_measured_on({"env": {**env, "cudnn": "<b>x</b>", "clocks": "fast"}})
    from bench import timing

    monkeypatch.setenv("PATH", "/nonexistent")
    assert timing.clocks() is None


def test_small_calls_table_is_the_recorded_numbers():
    data = results.small_calls()
    assert data and "H200" in data["gpu"]
    table = fbench.bench_small_calls_table(data)
    assert len(table) == len(data["rows"]) >= 4
    for t, r in zip(table, data["rows"], strict=True):
        assert (t["N"], t["head_dim"], t["mask"]) == (r["n"], r["head_dim"], "causal" if r["causal"] else "full")
        for column, route in (("graphs", "ours"), ("no graphs", "ungraphed"), ("neither", "unplanned"),
                              ("operators", "operators")):
            assert t[column] == round(r["flash_gpu_ms"] / r[f"{route}_gpu_ms"], 2)
        assert t["host µs"] == round(r["ours_host_us"]) and t["FLASH ms"] == round(r["flash_gpu_ms"], 3)
        graphed = r["batch"] * r["heads"] * r["n"] ** 2 <= data["graphs_limit"]
        assert t["default"] == ("graphs" if graphed else "no graphs")
    assert {t["N"] for t in table if t["default"] == "graphs"} == {1024}  # b4 h16: 2^26 in, 2^28 out


def test_small_calls_files_are_checked(tmp_path):
    good = results.small_calls()
    (tmp_path / "a-small-calls.json").write_text(json.dumps(good))
    assert results.small_calls(tmp_path)["date"] == good["date"]
    broken = copy.deepcopy(good)
    broken["rows"][0]["flash_gpu_ms"] = -1.0
    for name, text in (("z-small-calls.json", "{not json"), ("y-small-calls.json", json.dumps(broken)),
                       ("x-small-calls.json", json.dumps({"gpu": "G", "rows": [{}], "graphs_limit": 1})),
                       ("w-small-calls.json", json.dumps([1, 2])),
                       ("v-small-calls.json", json.dumps({k: v for k, v in good.items() if k != "date"}))):
        (tmp_path / name).write_text(text)
    assert results.small_calls(tmp_path)["date"] == good["date"]  # every newer file passed over
    (tmp_path / "a-small-calls.json").unlink()
    assert results.small_calls(tmp_path) is None


def test_page_shows_the_small_calls():
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = next(d.value for d in at.dataframe if "FLASH host µs" in d.value.columns)
    want = fbench.bench_small_calls_table(results.small_calls())
    assert list(shown["graphs"]) == [t["graphs"] for t in want] and list(shown["default"]) == [t["default"] for t in want]
    assert any("Small calls" in m.value for m in at.markdown)
