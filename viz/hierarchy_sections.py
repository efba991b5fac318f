"""The Softmax page's memory-hierarchy section: the GPU's levels (kernels/hierarchy.py) as a figure,
and naive / safe / online softmax's accesses per element against the DRAM bytes Nsight Compute
measured, read from the committed results, so a talk without a GPU shows them.

Not for: the accesses the kernels count on this page's row (viz/softmax_sections.py).
"""
import html

import streamlit as st

from kernels import hierarchy, results
from viz import controls, specs
from viz.figures import hierarchy as fh
from viz.figures.memory import nice_bytes
from viz.sections import chart

SPEC = specs.SOFTMAX


def gpu_of(device: str, dram: dict | None) -> str | None:
    """The GPU a trace was recorded on when it names a known one, else the GPU the DRAM bytes were measured on."""
    for name in hierarchy.SPECS:
        if name in device:
            return name
    gpu = (dram or {}).get("env", {}).get("gpu")
    return gpu if gpu in hierarchy.SPECS else None


def story(rows: list[dict], seq_len: int, gpu: str) -> str:
    """Four accesses to three, told against what reached DRAM at seq_len x seq_len."""
    by = {r["variant"]: r for r in rows}
    safe, online, naive = by["safe"], by["online"], by["naive"]
    l2 = nice_bytes(hierarchy.HOPPER_L2_BYTES)
    return (f"At {seq_len} × {seq_len} float32 ({nice_bytes(safe['input_bytes'])} in; the L2 holds {l2}), "
            f"safe softmax reads each element {safe['loads']} times in the model ({safe['accesses']} accesses "
            f"per element, {nice_bytes(safe['model_bytes'])}), online {online['loads']} times "
            f"({online['accesses']} accesses), naive {naive['loads']} ({naive['accesses']}). Nsight Compute on the "
            f"{gpu} measured {nice_bytes(safe['dram_read_bytes'])} read from DRAM for safe: "
            f"{safe['dram_reads_per_element']:.2f} reads of the input; its other "
            f"{safe['cached_reads_per_element']:.2f} came from the caches (L2, and each SM's L1), not HBM, because a "
            f"row is re-read soon after it was read. Online: {online['dram_reads_per_element']:.2f} DRAM reads, "
            f"naive: {naive['dram_reads_per_element']:.2f}. " + verdict(safe, online))


def verdict(safe: dict, online: dict) -> str:
    saved = safe["dram_read_bytes"] - online["dram_read_bytes"]
    if saved > 0:
        return (f"Online's saved pass kept {nice_bytes(saved)} off DRAM here; the model's saving is "
                f"{nice_bytes(safe['model_bytes'] - online['model_bytes'])}: the rest was a pass over the caches.")
    return (f"Online's saved pass saved no DRAM bytes here (online read {nice_bytes(-saved)} more than safe): "
            "on this GPU the pass it saves is a pass over the caches.")


def screen(src, device: str) -> None:
    """?memory=1: the hierarchy and where safe softmax's extra pass went, as one screen (presenter
    view: one projector screen; normal view: with the way back)."""
    from viz import stepping, urlstate

    ss = st.session_state
    urlstate.write(src.url({"memory": True}))
    dram = results.dram_bytes()
    gpu = gpu_of(device, dram)
    if ss[stepping.PRESENT]:
        top = st.columns([0.5, 5], vertical_alignment="center")
        with top[0]:
            stepping.exit_presenter(SPEC.prefix)
        top[1].markdown("**The memory hierarchy, and where safe softmax's extra pass goes**")
    else:
        st.markdown("#### The memory hierarchy, and where safe softmax's extra pass goes")
    if gpu is None:
        st.info("No GPU of this recording or of the committed Nsight Compute results is known here.")
        _back()
        return
    lens = hierarchy.softmax_seq_lens(dram) if dram is not None and dram["env"].get("gpu") == gpu else []
    chart(fh.hierarchy_figure(hierarchy.levels(gpu), gpu, height=270), SPEC.key("hierarchy_screen"))
    if lens:
        rows = hierarchy.softmax_dram(lens[-1], dram)
        left, right = st.columns([1.3, 1], vertical_alignment="center")
        with left:
            chart(fh.dram_reads_figure(rows, lens[-1], gpu, height=300), SPEC.key("dram_screen"))
        by = {r["variant"]: r for r in rows}
        right.html("<div class='fa-words'>" + html.escape(
            f"Safe reads each element {by['safe']['loads']} times, online {by['online']['loads']}: on the {gpu} "
            f"{by['safe']['dram_reads_per_element']:.2f} and {by['online']['dram_reads_per_element']:.2f} of those "
            "reached DRAM. " + verdict(by["safe"], by["online"])) + "</div>")
    if not ss[stepping.PRESENT]:
        _back()


def _back() -> None:
    st.button("Back to the softmax steps", key=SPEC.key("memory_off"),
              on_click=lambda: st.session_state.update({SPEC.key("memory"): False}))


def section(device: str) -> None:
    dram = results.dram_bytes()
    gpu = gpu_of(device, dram)
    if gpu is None:
        return
    st.markdown("#### The memory hierarchy, and where the extra pass goes")
    st.button("Show it as one screen (presenter view too; the URL's memory=1)", key=SPEC.key("memory_on"),
              on_click=lambda: st.session_state.update({SPEC.key("memory"): True}))
    levels = hierarchy.levels(gpu)
    chart(fh.hierarchy_figure(levels, gpu), SPEC.key("hierarchy"))
    measured = [lv for lv in levels if lv.bandwidth_source == "measured"]
    st.caption(f"Sizes and the HBM bandwidth labelled spec: {hierarchy.SPEC_SOURCE}. Measured: "
               + ("; ".join(f"{lv.bandwidth_TBps:.2f} TB/s, {controls.plain(lv.size_note)}" for lv in measured)
                  or "nothing on this GPU")
               + ". Registers, shared memory and L2 bandwidth: NVIDIA publishes none and the project did not "
                 "measure them.")
    if dram is None or dram["env"].get("gpu") != gpu:
        return
    for n in hierarchy.softmax_seq_lens(dram):
        rows = hierarchy.softmax_dram(n, dram)
        st.markdown(story(rows, n, gpu))
        st.dataframe(fh.softmax_dram_rows(rows), hide_index=True, width="stretch", key=SPEC.key(f"dram{n}"))
    st.caption(f"{controls.plain(dram['metric'])}, {controls.plain(dram['env'].get('date', ''))[:10]}, "
               f"{controls.plain(dram['env'].get('tool', ''))}; bench/results/*-dram-bytes.json. Model: "
               "kernels/traffic.py. Reads that reached DRAM: DRAM bytes read / the input's bytes.")
