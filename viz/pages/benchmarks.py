"""Benchmarks: the app's own kernels (TRACE off) against PyTorch on the same GPU.

Recorded results from `python -m bench` (bench/results/*.json); with a GPU present, a small live
run with a progress bar, shown once it is done.
"""
import streamlit as st

from kernels import backend
from viz import page, screens, script, state, stepping, talk, urlstate
from viz.figures import benchmarks as fbench
from viz.sections import chart
from viz.stepper import stepper

ss = st.session_state
page.arrive_view("benchmarks")
HERE = talk.stop_of(talk.BENCH, None)
ss.setdefault("bench.live", None)
LIVE = "live run on this GPU"

recorded = state.recorded_results()
if not ss[stepping.PRESENT]:
    st.markdown("#### Benchmarks: the kernel you step through, timed")
if not backend.INTERPRET and not ss[stepping.PRESENT]:
    with st.expander("Run a small benchmark on this GPU", expanded=False):
        st.caption("seq_len 1024 and 2048, head_dim 64, batch 2, 8 heads; softmax 4096 x 4096 float32. "
                   "About 45-50 s the first time (H100: it compiles and times every candidate config), "
                   "less after; the app is busy meanwhile.")
        if st.button("Run", key="bench.run", icon=":material/speed:"):
            bar = st.progress(0.0, text="starting")
            ss["bench.live"] = state.live_benchmark(lambda f, msg: bar.progress(min(f, 1.0), text=msg))
            ss["bench.file"] = LIVE  # the run just made is the one to look at
            bar.empty()


choices = fbench.ordered_runs(recorded)
if ss["bench.live"] is not None:
    choices = [LIVE] + choices
if not choices:
    st.error("No recorded results under bench/results/ and no GPU here to measure: "
             "run `python -m bench --json bench/results/NAME.json` on a GPU machine.")
    st.stop()
if ss.get("bench.file") not in choices:
    ss["bench.file"] = choices[0]
urlstate.write({})
if ss[stepping.PRESENT] or ss.get("talk.on"):  # the talk's last chapter: its stop, keys, the headline
    stepping.defaults("bench")
    talk.follower("bench.step", HERE)
    top = st.columns([1.75, 0.5, 3.35], vertical_alignment="center")
    if not ss.get("talk.follow"):
        with top[0]:
            stepper("bench", 1, HERE)
if ss[stepping.PRESENT]:
    result = ss["bench.live"] if ss["bench.file"] == LIVE else recorded[ss["bench.file"]]
    with top[1]:
        stepping.exit_presenter("bench")
    top[2].markdown(f"**Benchmarks: the kernel you step through, timed** · {fbench.bench_measured_on(result)}")
    if result.get("attention"):
        chart(fbench.bench_attention_figure(result).update_layout(height=480), "bench.attn_fig_p")
    screens.say(script.bench_words(result))
    st.stop()
name = st.selectbox("results", choices, key="bench.file", persist_state="session")
result = ss["bench.live"] if name == LIVE else recorded[name]
ceil = result.get("ceilings", {})
if backend.INTERPRET:
    st.info(f"No GPU here ({backend.describe()}): these are recorded results, measured on "
            f"{fbench.bench_measured_on(result)}.", icon=":material/history:")
else:
    took = f", in {result['seconds']:.0f} s including compiles" if "seconds" in result else ""
    st.caption(f"Measured on {fbench.bench_measured_on(result)}{took}")
st.markdown(
    f"Ceilings measured in the same run: device-to-device copy **{ceil.get('copy_TBps', 0):.2f} TB/s** "
    f"(bytes read + written), fp16 matmul **{ceil.get('matmul_fp16_TFLOPs', 0):.0f} TFLOP/s**. "
    "Method: `triton.testing.do_bench`, warm-up, median of repeats, fresh random inputs"
    + (f"; the implementations of a case timed in {result['env']['timing_rounds']} interleaved rounds "
       "(ours, FLASH, cuDNN, ..., ours, ...), each one's median over the rounds."
       if result.get("env", {}).get("timing_rounds") else ".")
)

if result.get("attention"):
    st.markdown("##### Attention forward, TFLOP/s")
    a = result["attention"][0]
    st.caption(f"{a['dtype']}, batch {a['batch']}, {a['heads']} heads; FLOPs = 4·B·H·N²·D, halved when causal. "
               "SDPA backends pinned with torch.nn.attention.sdpa_kernel; MATH only up to N = 4096.")
    chart(fbench.bench_attention_figure(result), "bench.attn_fig")
    st.dataframe(fbench.bench_ratio_table(result), hide_index=True, width="stretch", placeholder="—", key="bench.attn_table")
    if any(r.get("config") for r in result["attention"]):
        st.caption("config picked: the tuner's choice for that case, timed on the first call. BM x BN = "
                   "q-block x kv-block rows, w = warps, s = pipeline stages, ws = warp-specialized, "
                   "split2 = the q-block run as two halves with their own running max and sum, sharing "
                   "each K/V tile, late-V = V_j loaded after the softmax instead of with K_j. The "
                   "FlashAttention tiles page steps through the same kernel, one q-block whole.")

if result.get("backward"):
    st.markdown("##### Attention forward + backward, TFLOP/s")
    b = result["backward"][0]
    st.caption(f"{b['dtype']}, batch {b['batch']}, {b['heads']} heads; FLOPs = 3.5 x the forward's "
               "(the backward does 2.5x). Ours is flash_attention through torch.autograd.")
    chart(fbench.bench_attention_figure(result, "backward"), "bench.bwd_fig")
    note = fbench.host_bound_note(result, "backward")
    if note:
        st.caption(note)
    st.dataframe(fbench.bench_ratio_table(result, "backward"), hide_index=True, width="stretch", placeholder="—",
                 key="bench.bwd_table")

small = state.small_call_run()
if small:
    st.markdown("##### Small calls: eager forward + backward, where the host's time counts")
    st.caption(f"Measured on {small['gpu']}, {small['date'][:10]} (experiments/scripts/host_time.py; fp16, batch "
               f"{small['rows'][0]['batch']}, {small['rows'][0]['heads']} heads). Per call over back-to-back calls; "
               "ours ms and host µs: the default eager call at N 1024, which from a shape's second call replays "
               "CUDA graphs of its kernels (kernels/graphs.py) up to batch x heads x N x N = "
               f"{small['graphs_limit']:,}. Then FLASH's time over ours (above 1: ours is faster) with graphs, "
               "without, with neither graphs nor launch plans, and through the torch.ops operators; at N 2048 the "
               "run forced graphs on to show what their copies cost there (default: no graphs). Host µs: the "
               "Python call's wall time with the GPU idle.")
    st.dataframe(fbench.bench_small_calls_table(small), hide_index=True, width="stretch", placeholder="—",
                 key="bench.small_table")

if result.get("masks"):
    st.markdown("##### Attention as models run it: sliding window, packed documents, GQA, decode")
    st.caption(f"{result.get('masks_note', '')}. Each case timed against SDPA with the equivalent dense boolean "
               "mask and FlexAttention (torch.compile'd, with its block mask) in the same interleaved rounds; "
               "X / ours above 1: ours is faster. python -m bench --only masks")
    st.dataframe(fbench.bench_masks_table(result), hide_index=True, width="stretch", placeholder="—",
                 key="bench.masks_table")

if result.get("softmax"):
    st.markdown("##### Softmax, GB/s")
    st.caption("Bytes = one read + one write of the matrix (the minimum), so a variant that reads twice "
               "cannot pass two thirds of the copy line. Dotted: the run's 1 GiB device copy; dashed (where "
               "recorded): a copy of the same bytes as each shape, timed next to it, the ceiling at that size. "
               "'best' is single-pass where a row fits on chip, else online.")
    chart(fbench.bench_softmax_figure(result), "bench.sm_fig")
    st.dataframe(fbench.bench_softmax_ratio_table(result), hide_index=True, width="stretch", placeholder="—",
                 key="bench.sm_table")
