"""The stepping pages' specs (viz/page.py's PageSpec), in one importable place: a page takes its
spec from here, and the tests read the same session keys through `SPEC.key(name)`.

Not for: drawing (viz/pages/) or anything kernels/ computes.
"""
from kernels import backend, softmax_hand, softmax_trace
from viz import controls, ring_sections, state, urlstate
from viz.page import PageSpec

ATTENTION = PageSpec(
    prefix="attn", page="attention", title="FlashAttention, tile by tile", kind="forward", config=urlstate.CONFIG,
    positions={"q_block": "follow", "row": "row_abs", "std": "std"},  # std=1: standard attention stepped
    defaults={**controls.config_defaults(), "follow": 3 if backend.INTERPRET else 8, "row": 0, "count_ok": None,
              "std": False},
    opening=lambda s: {"follow": s.follow, "row_rel": s.row, "step": s.step - 1},  # the row within its q-block
    config_widgets=lambda spec, on_change: controls.config_sidebar(spec.prefix, on_change, orders=True),
    make_config=lambda spec: controls.config_from_state(spec.prefix, orders=True), capture=state.trace_for)

BACKWARD = PageSpec(
    prefix="bwd", page="backward", title="Backward: dS = P ∘ (dP − D), no N × N Jacobian", kind="backward",
    config={f: urlstate.CONFIG[f] for f in controls.CONFIG_FIELDS}, positions={"kv_block": "kv_block", "row": "row"},
    defaults={**controls.config_defaults(), "kv_block": 0, "row": 0},
    opening=lambda s: {"kv_block": s.follow, "row": s.row, "step": s.step - 1},
    config_widgets=lambda spec, on_change: controls.config_sidebar(
        spec.prefix, on_change, seed_help="q, k, v and dO",
        block_help=("rows of Q, dO per tile: what streams past each kv-block's program",
                    "rows of K, V per tile: one program per kv-block")),
    make_config=lambda spec: controls.config_from_state(spec.prefix), capture=state.backward_trace_for,
    capture_what=lambda cfg: "Running the FlashAttention-2 forward, then the backward with TRACE on")

def typed_row(spec) -> tuple | None:
    """The row typed in the sidebar when the input is "typed" (ValueError naming what is wrong), else None."""
    if spec.get("scenario") != "typed":
        return None
    return softmax_hand.parse_row(spec.get("values"))


def softmax_config(spec) -> softmax_trace.SoftmaxConfig:
    row = typed_row(spec)
    return softmax_trace.SoftmaxConfig(
        length=len(row) if row is not None else int(spec.get("length")), block=int(spec.get("block")),
        scenario=spec.get("scenario"), seed=int(spec.get("seed")))


SOFTMAX = PageSpec(
    prefix="sm", page="softmax", title="Softmax: naive, safe, online", kind="softmax", config=urlstate.SOFTMAX,
    positions={"memory": "memory"},  # memory=1: the memory hierarchy as one screen
    defaults={"length": 64, "block": 16, "scenario": "randn", "seed": 0, "values": "3, 1, 4, 1, 5", "memory": False},
    opening=lambda s: {"step": s.step - 1}, config_widgets=controls.softmax_row_sidebar,
    make_config=softmax_config,
    capture=lambda cfg: state.softmax_capture(cfg.fields(), typed_row(SOFTMAX)),
    capture_what=lambda cfg: "Running the softmax kernels on this row", config_label="One row")

ORDERS = PageSpec(
    prefix="ord", page="orders", title="FlashAttention-1 against FlashAttention-2", kind="forward",
    config={f: urlstate.CONFIG[f] for f in controls.CONFIG_FIELDS}, positions={"row": "row_abs"},
    defaults={**controls.config_defaults(), "row_abs": 0, "seq_len": 200 if backend.INTERPRET else 256, "causal": True},
    opening=lambda s: {}, config_widgets=lambda spec, on_change: controls.config_sidebar(spec.prefix, on_change),
    make_config=lambda spec: controls.config_from_state(spec.prefix), capture=None)

RING = PageSpec(
    prefix="ring", page="ring", title="Ring attention: partial softmax states merged across ranks", kind="ring",
    config=urlstate.RING, positions={"row": "row"},
    defaults={**ring_sections.config_defaults(), "row": 100, "source": ring_sections.FIRST_SCENE},
    opening=lambda s: {"row": s.row, "step": s.step - 1}, config_widgets=ring_sections.config_sidebar,
    make_config=ring_sections.config_from_state, capture=lambda cfg, **follow: state.ring_capture(cfg.fields()),
    capture_what=lambda cfg: f"Running ring attention on {cfg.world_size} local processes", config_label="Ring config")

STEPPING = (ATTENTION, BACKWARD, SOFTMAX, ORDERS, RING)
