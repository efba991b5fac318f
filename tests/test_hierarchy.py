"""The memory hierarchy (kernels/hierarchy.py) and the Softmax page's section: every number read from the
committed results (bench/results/*.json, the ncu DRAM bytes), so these fail when the files and the page drift."""
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kernels import hierarchy, traffic
from viz import hierarchy_sections
from viz.figures import hierarchy as fh
from viz.figures.memory import nice_bytes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DRAM = json.loads(next(iter(sorted(RESULTS.glob("*-dram-bytes.json"), reverse=True))).read_text())
GPU = DRAM["env"]["gpu"]


def _committed_copy(gpu: str) -> tuple[str, float]:
    for path in sorted(RESULTS.glob("*.json"), reverse=True):
        data = json.loads(path.read_text())
        tbps = data.get("ceilings", {}).get("copy_TBps") if isinstance(data, dict) else None
        if tbps and data.get("env", {}).get("gpu") == gpu:
            return path.name, tbps
    raise AssertionError(f"no committed run on {gpu} measured a device copy")


def test_measured_bandwidth_is_the_committed_copy():
    name, tbps = _committed_copy(GPU)
    measured = [lv for lv in hierarchy.levels(GPU) if lv.bandwidth_source == "measured"]
    assert len(measured) == 1, f"one measured level expected, got {measured}"
    assert measured[0].bandwidth_TBps == tbps, f"{measured[0].bandwidth_TBps} != {tbps} in {name}"
    assert name in measured[0].size_note, f"the measured level does not name {name}: {measured[0].size_note!r}"
    spec = [lv for lv in hierarchy.levels(GPU) if lv.bandwidth_source == "spec"]
    assert [lv.name for lv in spec] == [measured[0].name], "spec and measured must be the same level (HBM)"


def test_figure_draws_the_levels_numbers():
    levels = hierarchy.levels(GPU)
    fig = fh.hierarchy_figure(levels, GPU)
    sizes, spec, measured = fig.data
    assert list(sizes.y) == ["registers", "shared memory (SRAM)", "L2", levels[-1].name]
    assert list(sizes.x) == [lv.size_bytes for lv in levels[:4]]
    assert list(measured.x) == [_committed_copy(GPU)[1]], "the orange bar is not the committed copy"
    assert list(spec.x) == [hierarchy.SPECS[GPU]["hbm_TBps"]]
    notes = [a.text for a in fig.layout.annotations if a.text == "not published, not measured"]
    assert len(notes) == 3, f"registers, shared memory and L2 carry no bandwidth: {notes}"


@pytest.mark.parametrize("seq_len", sorted({c["seq_len"] for c in DRAM["cases"] if c["what"].startswith("softmax_")}))
def test_softmax_rows_are_the_ncu_bytes(seq_len):
    rows = {r["variant"]: r for r in hierarchy.softmax_dram(seq_len)}
    cases = {c["what"].removeprefix("softmax_"): c for c in DRAM["cases"]
             if c["what"].startswith("softmax_") and c["seq_len"] == seq_len}
    assert rows.keys() == cases.keys() and {"naive", "safe", "online"} <= rows.keys()
    for v, case in cases.items():
        r, (ld, st) = rows[v], traffic.SOFTMAX_ACCESSES[v]
        assert (r["loads"], r["stores"]) == (ld, st)
        assert r["dram_read_bytes"] == case["dram_read_bytes"] and r["dram_write_bytes"] == case["dram_write_bytes"]
        assert r["model_bytes"] == case["model_bytes_at_dtype"] == (ld + st) * seq_len * seq_len * 4, \
            f"{v}: the committed model bytes {case['model_bytes_at_dtype']} disagree with kernels/traffic.py"
        assert r["dram_reads_per_element"] == case["dram_read_bytes"] / (seq_len * seq_len * 4)
    # the story: naive 3, safe 4, online 3 accesses per element
    assert [rows[v]["accesses"] for v in ("naive", "safe", "online")] == [3, 4, 3]
    # safe's extra pass did not reach DRAM on this GPU: its reads stay within 5% of one pass over the input
    assert rows["safe"]["dram_reads_per_element"] < 1.05, rows["safe"]
    assert rows["safe"]["cached_reads_per_element"] > 1.9


def test_story_reads_its_numbers_from_the_rows():
    rows = hierarchy.softmax_dram(4096)
    fake = [{**r, "dram_read_bytes": r["dram_read_bytes"] * (3 if r["variant"] == "safe" else 1),
             "dram_reads_per_element": r["dram_reads_per_element"] * (3 if r["variant"] == "safe" else 1)}
            for r in rows]
    real, moved = hierarchy_sections.story(rows, 4096, GPU), hierarchy_sections.story(fake, 4096, GPU)
    safe = next(r for r in rows if r["variant"] == "safe")
    assert f"{nice_bytes(safe['dram_read_bytes'])} read from DRAM for safe" in real
    assert f"{nice_bytes(3 * safe['dram_read_bytes'])} read from DRAM for safe" in moved
    assert ("kept" in real) != ("saved no DRAM bytes" in real)


def test_softmax_page_shows_the_hierarchy_and_the_dram_bytes():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/softmax.py")
    at.query_params["scene"] = "softmax-overflow"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert "The memory hierarchy" in text
    tables = [d.value for d in at.dataframe if "input reads that reached DRAM" in d.value.columns]
    assert len(tables) == len(hierarchy.softmax_seq_lens()), f"{len(tables)} DRAM tables on the page"
    for n, table in zip(hierarchy.softmax_seq_lens(), tables, strict=True):
        rows = {r["variant"]: r for r in hierarchy.softmax_dram(n)}
        shown = re.search(rf"At {n} × {n} float32.*?for safe: ([\d.]+) reads of the input; its other ([\d.]+)", text)
        assert shown, f"no story for {n} on the page"
        assert float(shown[1]) == round(rows["safe"]["dram_reads_per_element"], 2)
        assert float(shown[2]) == round(rows["safe"]["cached_reads_per_element"], 2)
        got = dict(zip(table["softmax"], table["input reads that reached DRAM"], strict=True))
        assert got == {v: round(r["dram_reads_per_element"], 2) for v, r in rows.items()}


def test_the_dram_reads_figure_draws_the_rows_numbers():
    n = hierarchy.softmax_seq_lens()[-1]
    rows = hierarchy.softmax_dram(n)
    fig = fh.dram_reads_figure(rows, n, "NVIDIA H200")
    model, dram, cached = (list(t.y) for t in fig.data)
    assert model == [r["loads"] for r in rows] and dram == [r["dram_reads_per_element"] for r in rows]
    assert cached == [r["cached_reads_per_element"] for r in rows]
    for r in rows:  # derived: the model's reads that did not reach DRAM
        assert r["cached_reads_per_element"] == pytest.approx(max(0.0, r["loads"] - r["dram_reads_per_element"]), abs=1e-9)


@pytest.mark.parametrize("present", [False, True], ids=["normal", "presenter"])
def test_memory_1_is_one_screen_with_the_measured_numbers(present):
    """?memory=1 on the softmax page: the hierarchy and where the reads went as one screen (presenter
    view too); its sentence states the model's reads and the committed DRAM reads; Back returns."""
    n = hierarchy.softmax_seq_lens()[-1]
    by = {r["variant"]: r for r in hierarchy.softmax_dram(n)}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/softmax.py")
    at.query_params["scene"] = "softmax-overflow"
    at.query_params["memory"] = "1"
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception and not at.warning, [e.value for e in at.exception]
    words = " ".join(re.sub("<[^>]+>", "", h.proto.body) for h in at.get("html"))
    want = (f"Safe reads each element {by['safe']['loads']} times, online {by['online']['loads']}: on the NVIDIA H200 "
            f"{by['safe']['dram_reads_per_element']:.2f} and {by['online']['dram_reads_per_element']:.2f} of those "
            "reached DRAM.")
    assert want in words, words
    assert len(at.get("plotly_chart")) == 2 and at.query_params.get("memory") == "1"
    assert not any("Step 1 of" in m.value for m in at.markdown)  # the screen, not the softmax steps
    if not present:
        at.button(key=hierarchy_sections.SPEC.key("memory_off")).click().run()
        assert not at.exception and not at.session_state[hierarchy_sections.SPEC.key("memory")]
