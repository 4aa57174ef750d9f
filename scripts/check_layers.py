#!/usr/bin/env python3
"""The layering rule of docs/src/internals/architecture.md, checked.

Reads every `crate::MODULE` path in src/ (use lines and inline paths),
maps each file to its top-level module, and fails when an import points
up the flow (to a module of a higher layer) or sideways between two
stages, unless the architecture chapter names it as an exception, and when
the top-level modules import one another in a cycle. Prints one line per
offending import as FILE:LINE: MODULE -> MODULE (why), and the graph with
--graph.
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Layer of each top-level module: an import must point to a lower layer.
# Layer 0 is the shared vocabulary; its modules may import each other as
# long as there is no cycle.
LAYERS = {
    "exit": 0, "clock": 0, "diagnostics": 0, "address": 0, "yaml": 0,
    "tag": 0, "atomic_file": 0, "state": 0,
    "config": 1,
    "content": 2,
    "feed": 3, "audience": 3, "unsubscribe": 3,
    "select": 4,
    "render": 5,
    "deliver": 6, "ledger": 6,
    "send": 7,
    "commands": 8,
    "cli": 9,
    "lib": 10, "main": 10,
}

# Arrows against the flow that docs/src/internals/architecture.md names.
EXCEPTIONS = {
    ("audience", "ledger"): "audience reads the suppression list",
}

PATH = re.compile(r"\bcrate::(?:\{([^}]*)\}|([a-z_]+))")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs") if len(rel.parts) == 1 else rel.parts[0]


def imports():
    """(file, line, from, to) for every crate path outside tests."""
    for path in sorted(SRC.rglob("*.rs")):
        here = module_of(path)
        text = path.read_text()
        # Unit tests may reach anywhere to build their inputs.
        cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
        code = text[: cut.start()] if cut else text
        for number, line in enumerate(code.splitlines(), 1):
            if line.lstrip().startswith("//"):
                continue
            for group, single in PATH.findall(line):
                names = [single] if single else [n.strip().split("::")[0] for n in group.split(",")]
                for name in names:
                    name = name.strip()
                    if name and name != here and name != "self":
                        yield path.relative_to(ROOT), number, here, name


def cycles(graph):
    """Each cycle of the module graph once, as a list of modules."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main() -> int:
    graph = defaultdict(set)
    problems = []
    for file, line, here, there in imports():
        graph[here].add(there)
        if here not in LAYERS or there not in LAYERS:
            missing = here if here not in LAYERS else there
            problems.append(f"{file}:{line}: module '{missing}' has no layer in scripts/check_layers.py")
            continue
        up = LAYERS[there] >= LAYERS[here] and not (LAYERS[here] == LAYERS[there] == 0)
        if up and (here, there) not in EXCEPTIONS:
            problems.append(
                f"{file}:{line}: {here} -> {there} (layer {LAYERS[here]} imports layer {LAYERS[there]})"
            )
    for cycle in cycles(graph):
        problems.append("cycle: " + " -> ".join(cycle))
    if "--graph" in sys.argv:
        for node in sorted(graph):
            print(f"{node} -> {', '.join(sorted(graph[node]))}")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} layering problems (see docs/src/internals/architecture.md)")
        return 1
    print(f"layers ok: {len(graph)} modules, {sum(len(v) for v in graph.values())} arrows, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
