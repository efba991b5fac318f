"""The house rules of the tree: CI runs the README's test command, the README's architecture names
every module, no product file is a second idea's home (500 lines), no stepping page is more than
its spec and its draw (150 lines), no @triton.jit function takes more than 20 parameters (bundle
them: kernels/launch.py), the trace contract's tables are the trace classes' own, and imports go
one way (app -> viz -> kernels, bench -> kernels) with no circle. Subfolders count like the rest."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("kernels", "viz", "bench")


def _modules() -> dict[str, Path]:
    out = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def _imports(path: Path, modules: dict) -> set[str]:
    """The project modules `path` imports, at any depth of the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def test_ci_runs_the_readme_test_command():
    command = re.search(r"TEST_COMMAND='([^']+)'", (ROOT / ".ci" / "run").read_text()).group(1)
    assert command in (ROOT / "README.md").read_text(), f"the README does not give CI's test command: {command}"


def test_readme_architecture_names_every_module():
    readme = (ROOT / "README.md").read_text()
    tree = readme[readme.index("## Architecture"):]
    for pkg in ("kernels", "viz", "bench"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name != "__init__.py" and "pages" not in path.parts and "figures" not in path.parts:
                assert f"  {path.name}" in tree, f"README's architecture does not list {path.relative_to(ROOT)}"


def test_no_module_is_two_ideas():
    for _name, path in _modules().items():
        n = len(path.read_text().splitlines())
        assert n <= 500, f"{path.relative_to(ROOT)} has {n} lines: it probably holds two ideas"


def test_a_stepping_page_is_its_spec_and_its_draw():
    for path in sorted((ROOT / "viz" / "pages").glob("*.py")):
        n = len(path.read_text().splitlines())
        assert n <= 150, f"{path.relative_to(ROOT)} has {n} lines: move what is not its spec and draw out of it"


def test_no_triton_function_takes_a_long_argument_list():
    for path in sorted((ROOT / "kernels").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and any(ast.unparse(d).startswith("triton.jit")
                                                         for d in node.decorator_list):
                n = len(node.args.args) + len(node.args.kwonlyargs)
                assert n <= 20, (f"{path.relative_to(ROOT)}: {node.name} takes {n} parameters; bundle them in named "
                                 f"tuples (kernels/launch.py)")


def test_trace_contract_docs_are_the_trace_classes_own():
    from kernels import trace_io

    assert trace_io.docs_main(["--check-docs"]) == 0, ("docs/trace-contract.md differs from the trace classes: "
                                                       "python -m kernels.trace_io --docs")


def test_session_keys_come_from_the_specs():
    """Pages and tests name their session keys through their PageSpec (viz/specs.py), never as literals."""
    literal = re.compile(r"[\"'](attn|bwd|sm|ord|ring)\.[a-z_]")
    for path in [*sorted((ROOT / "viz").rglob("*.py")), *sorted((ROOT / "tests").glob("test_*.py"))]:
        hits = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if literal.search(line)]
        assert not hits, f"{path.relative_to(ROOT)} lines {hits[:5]}: a session key as a literal; use SPEC.key(name)"


def test_imports_go_one_way_without_circles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    layer = {"app": 3, "viz": 2, "bench": 2, "kernels": 1}
    for m, deps in graph.items():
        for d in deps:
            assert layer[d.split(".")[0]] < layer[m.split(".")[0]] or d.split(".")[0] == m.split(".")[0], \
                f"{m} imports {d}: the arrow is app -> viz -> kernels, bench -> kernels"
            assert not (m.startswith("viz") and d.startswith("bench")), f"{m} imports {d}"
    # no circle, lazy imports included
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in graph[m]:
            if d in graph:
                assert state.get(d) != "open", "import circle: " + " -> ".join(path + [d])
                if d not in state:
                    visit(d, path + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_kernels_import_neither_streamlit_nor_plotly():
    for path in (ROOT / "kernels").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from) (streamlit|plotly)", text, re.M), path
