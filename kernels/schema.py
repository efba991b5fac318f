"""The trace contract, declared once: each trace dataclass names every array's shape, dtype and
meaning in its fields' metadata (`array(...)` below). kernels/trace_io.py saves and reads files by
it, and the tables of docs/trace-contract.md are generated from it (`python -m kernels.trace_io
--docs` rewrites them, `--check-docs` fails when the two differ; tests/test_layout.py runs it).

Shapes are written in the contract's symbols: N (seq_len: the keys), M (the rows of q: group x
queries, N without GQA or decode), d (head_dim), Tq, Tk (q- and kv-blocks),
bm, bn (block_m, block_n), n (blocks whose tiles a trace kept), S (kv_splits); for a softmax row
L (its length), C (chunks), Sl (slices of the split-row kernel); for a ring trace P (ranks), Cr
(chunks per rank), R (rows per rank), n (followed rows).

Not for: the value checks of a file (trace_io.py) or the traces themselves (trace.py, ...).
"""
import dataclasses
import re
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs" / "trace-contract.md"
DTYPES = {"f4": np.float32, "f8": np.float64, "i4": np.int32, "i8": np.int64}


def array(shape: str, dtype: str, doc: str, when: str | None = None, default=dataclasses.MISSING):
    """A dataclass field that is an array of the trace file: shape in the contract's symbols
    ("N, d"), dtype ("f4", "f8", "i4", "i8"), what it is; `when`: present only under that
    condition of the config ("split": kv_splits > 1)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dataclasses.field(default=default, metadata={"shape": shape, "dtype": dtype, "doc": doc, "when": when})


def arrays(cls) -> dict[str, dict]:
    """{field name: its metadata} of every array field of a trace class, in declaration order."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(cls) if "shape" in f.metadata}


def shape_of(spec: str, dims: dict) -> tuple[int, ...]:
    """"Tq, Tk, bm" with dims {"Tq": 4, ...} -> (4, ...)."""
    out = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        out.append(int(token) if token.isdigit() else int(dims[token]))
    return tuple(out)


def shapes(cls, dims: dict, conditions: set) -> dict[str, tuple]:
    """{array member: (shape, numpy dtype)} of a trace of class `cls` with these dimensions; arrays
    whose `when` is not in `conditions` are absent."""
    return {name: (shape_of(m["shape"], dims), DTYPES[m["dtype"]]) for name, m in arrays(cls).items()
            if m["when"] is None or m["when"] in conditions}


def table(cls) -> str:
    """The markdown table of a trace class's arrays."""
    rows = ["| field | shape | dtype | what |", "|---|---|---|---|"]
    for name, m in arrays(cls).items():
        when = f" (only when {WHEN[m['when']]})" if m["when"] else ""
        rows.append(f"| `{name}` | ({m['shape']}) | {np.dtype(DTYPES[m['dtype']]).name} | {m['doc']}{when} |")
    return "\n".join(rows)


WHEN = {"split": "kv_splits > 1", "kinds": "the file's format version is 3 or later"}


def render(text: str, classes: dict) -> str:
    """The docs text with every `<!-- schema:KIND -->...<!-- /schema -->` block regenerated from
    classes {kind: trace class}."""
    def block(m):
        return f"<!-- schema:{m[1]} -->\n{table(classes[m[1]])}\n<!-- /schema -->"

    return re.sub(r"<!-- schema:(\w+) -->.*?<!-- /schema -->", block, text, flags=re.S)
