"""Every global a @triton.jit function reads is one a compiled kernel may read. Triton's compiler
(on a GPU) accepts only tl.constexpr values, other jit functions, modules, classes and Triton's
own builtins as globals; the interpreter (CI) reads any Python value, so a kernel that reads a
plain int global passes every CPU test and fails to compile on the GPU (kernels/standard.py's
counter indices did, found on the H200 on 2026-12-02). This reads each kernel's source as written."""
import ast
import builtins
import importlib
import inspect
import pkgutil
import textwrap
import types

import pytest

import kernels
from kernels import backend  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)


def _jit_functions():
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, JITFunction | InterpretedFunction) and obj.fn.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", obj.fn


JIT = sorted(_jit_functions())


def _allowed(value) -> bool:
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    return (isinstance(value, tl.constexpr | types.ModuleType | type | JITFunction | InterpretedFunction)
            or callable(value) and getattr(value, "__module__", "").startswith("triton"))


def _read_globals(fn) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    local = {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    local |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - local


def test_the_kernels_are_found():
    names = [n for n, _ in JIT]
    assert len(names) >= 20 and "kernels.standard.scores_kernel" in names and "kernels.flash_fwd._attn_fwd" in names


def _bad_globals(fn) -> dict:
    return {g: type(fn.__globals__[g]).__name__ for g in _read_globals(fn)
            if g in fn.__globals__ and not hasattr(builtins, g) and not _allowed(fn.__globals__[g])}


@pytest.mark.parametrize("name,fn", JIT, ids=[n for n, _ in JIT])
def test_a_kernel_reads_only_globals_a_compiled_kernel_may_read(name, fn):
    assert not _bad_globals(fn), f"{name} reads globals that are not tl.constexpr: {_bad_globals(fn)}"


def test_the_check_fails_on_a_plain_int_global(monkeypatch):
    """standard.py's bug as it was: the counter index a plain int."""
    from kernels import standard

    fn = standard.scores_kernel.fn
    assert not _bad_globals(fn)
    monkeypatch.setitem(fn.__globals__, "C_Q", 0)
    assert _bad_globals(fn) == {"C_Q": "int"}


def test_compile_time_options_are_plain_python_values():
    """A NumPy bool or int given as a compile-time option becomes the Python value: triton's
    compiler refuses a np.bool_ as an `if` condition (UnsupportedLanguageConstruct on the H200,
    from the ring's pair kinds), which the interpreter accepts."""
    import numpy as np

    from kernels.flash_fwd import FwdMeta
    from kernels.launch import meta

    values = {f: 0 for f in FwdMeta._fields} | {"CAUSAL": np.False_, "INTERVALS": np.bool_(True), "BLOCK_M": np.int64(64)}
    m = meta(FwdMeta, **values)
    assert type(m.CAUSAL.value) is bool and m.CAUSAL.value is False and m.INTERVALS.value is True
    assert type(m.BLOCK_M.value) is int and m.BLOCK_M.value == 64
