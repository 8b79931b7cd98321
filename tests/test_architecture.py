"""The house's layout as docs/architecture.md states it: the import graph of `tfrecall/`
and `pipelines/`, read with `ast` (nothing is imported), has no circle, every import
between packages points to an earlier layer of the document's list, and only optional
heavy dependencies are imported inside functions."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
OPTIONAL = {"scann", "matplotlib"}  # heavy and optional: imported where used
MAX_LINES = 640  # no module grows past this (the sample builder, 621 lines, is the largest)


def _modules():
    out = {}
    for base in ("tfrecall", "pipelines"):
        for path in sorted((ROOT / base).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(tree, modules):
    """(module imported, node) of every tfrecall/pipelines import in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            found = [s for s in subs if s in modules]
            yield from ((s, node) for s in found)
            if len(found) < len(subs) and node.module in modules:
                yield node.module, node


def _graph():
    modules = _modules()
    graph, inner = {}, []
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        graph[name] = {dep for dep, _ in _imports(tree, modules) if dep != name}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        what = (node.module if isinstance(node, ast.ImportFrom)
                                else node.names[0].name) or ""
                        inner.append((name, fn.name, what))
    return graph, inner


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layers():
    """Package -> layer number, from the numbered list of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        match = re.match(r"^(\d+)\. (.*)", line)
        if match:
            for name in re.findall(r"`([a-z_.]+)`", match.group(2).split(":")[0]):
                layers[name] = int(match.group(1))
    return layers


def _package(module, layers):
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in layers:
            return ".".join(parts[:n])
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def test_no_import_circle():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_imports_point_to_earlier_layers():
    graph, _ = _graph()
    layers = _layers()
    assert len(set(layers.values())) >= 10, layers
    wrong = []
    for module, deps in graph.items():
        mine = _package(module, layers)
        for dep in deps:
            theirs = _package(dep, layers)
            if theirs != mine and layers[theirs] >= layers[mine]:
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_function_level_imports_are_only_optional_dependencies():
    _, inner = _graph()
    assert [x for x in inner if x[2].split(".")[0] not in OPTIONAL] == []


def test_the_checks_see_a_circle_and_a_wrong_way_import():
    # The checks themselves can fail: a circle and an upward import are found.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    layers = {"tfrecall.io": 2, "tfrecall.recipe": 10}
    assert _package("tfrecall.io.readers", layers) == "tfrecall.io"
    assert layers[_package("tfrecall.recipe.job", layers)] > layers["tfrecall.io"]


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
