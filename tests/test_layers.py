"""The package layering, bottom to top: datamodules < callbacks < lcm < inversion. No module imports a
package above its own, not even inside a function (read from the source, so lazy imports count too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["datamodules", "callbacks", "lcm", "inversion"]


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ORDER[:-1])
def test_no_package_imports_a_package_above_it(package):
    above = set(ORDER[ORDER.index(package) + 1 :])
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.name.startswith("benchmark"):  # experiments, leaving the packages for benchmarks/ (issue 22)
            continue
        wrong = _imported_packages(path) & above
        if wrong:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(wrong)}")
    assert not bad, "\n".join(bad)


# -- inside inversion: a core that imports no paper package, and no import cycle -----------------------
CORE = ["inversion.engine", "inversion.stages", "inversion.methods.registry", "inversion.methods.common"]
PAPERS = ["inversion.dgp", "inversion.cri", "inversion.exploration"]


def _modules(package: str, root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (AST, function-level imports too); importing
    ``a.b.c`` also runs the packages ``a.b`` and ``a`` (their ``__init__``), so they count as imported,
    except the importing module's own packages (already running when it runs)."""
    mods = _modules(package, root)

    def targets(name: str) -> set[str]:
        while name and name not in mods:  # `from a.b import name` of a non-module name -> a.b
            name = name.rpartition(".")[0]
        out = set()
        while name:
            out.add(name)
            name = name.rpartition(".")[0]
        return out & set(mods)

    graph = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    found |= targets(a.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for a in node.names:
                    found |= targets(f"{base}.{a.name}")
        own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        graph[mod] = found - {mod} - own
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not (``start`` itself if it is on a cycle), each with
    the module that imports it."""
    seen, todo = {}, [start]
    while todo:
        m = todo.pop()
        for t in graph.get(m, ()):
            if t not in seen:
                seen[t] = m
                todo.append(t)
    return seen


def test_inversion_core_imports_no_paper_package():
    graph = _import_graph("inversion")
    bad = []
    for core in CORE:
        for mod, via in _reachable(graph, core).items():
            if any(mod == p or mod.startswith(p + ".") for p in PAPERS):
                bad.append(f"{core} reaches {mod} (imported by {via})")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_inside_inversion():
    graph = _import_graph("inversion")
    cycles = []
    for mod in graph:
        if mod in _reachable(graph, mod):
            cycles.append(mod)
    # a module that reaches itself is on a cycle; name one path for the message
    msgs = []
    for mod in cycles:
        via = _reachable(graph, mod)
        if mod in via:
            path, m = [mod], via[mod]
            while m != mod and m not in path:
                path.append(m)
                m = via[m]
            msgs.append(" <- ".join(path + [mod]))
    assert not cycles, "\n".join(msgs or cycles)


COMMAND_LINES = ("inversion.__main__", "inversion.dgp.manipulation_cli")  # entry points beside inversion.cli


def test_only_command_lines_import_the_cli():
    """``inversion.cli`` is the top: the library (engine, methods, operators, the paper packages) never
    imports it, so a CLI-only module (the run report, the launcher, held-out samples) lives under it."""
    graph = _import_graph("inversion")
    bad = [
        f"{mod} imports {sorted(t for t in targets if t.startswith('inversion.cli'))}"
        for mod, targets in graph.items()
        if not mod.startswith("inversion.cli") and mod not in COMMAND_LINES
        and any(t == "inversion.cli" or t.startswith("inversion.cli.") for t in targets)
    ]  # fmt: skip
    assert not bad, "\n".join(bad)


def test_inversion_root_holds_only_the_core():
    """CLI-only modules are not at the package's root (issue 30): its modules are the core's."""
    root = sorted(p.stem for p in (ROOT / "inversion").glob("*.py"))
    assert root == ["__init__", "__main__", "engine", "stages"], root


def test_import_graph_sees_lazy_imports_and_packages(tmp_path):
    """The graph builder itself: a function-level import and the imported module's package count."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub.b import g\n")
    (pkg / "sub" / "b.py").write_text("from . import c\ng = 1\n")
    (pkg / "sub" / "c.py").write_text("")
    graph = _import_graph("pkg", tmp_path)
    assert graph["pkg.a"] == {"pkg.sub.b", "pkg.sub"}
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}  # its own package pkg.sub is not an edge
    assert "pkg.sub" in _reachable(graph, "pkg.sub")  # pkg.sub -> pkg.a -> pkg.sub: a cycle
