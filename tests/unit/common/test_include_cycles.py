#!/usr/bin/python3
"""No circle of includes among the modules of common/.

A module is a source file and its header (x.c and x.h), with x_internal.h, the private
header a module split over several files shares (server_internal.h is the server's). An
edge A -> B means a file of A has `#include "common/B.h"` (or B_internal.h). A circle
(server -> health -> server, as when the server added health itself) means neither
module can be read, built or tested without the other: the test names the circle.

Run by Bazel (sh_test, the files of common/ as data) or by hand from the repository:
    /usr/bin/python3 tests/unit/common/test_include_cycles.py [COMMON_DIR]
"""
import os
import re
import sys
import unittest

INCLUDE = re.compile(r'^\s*#\s*include\s+"common/([A-Za-z0-9_]+)\.h"', re.M)


def module_of(name):
    """The module a file of common/ belongs to: its stem, less an _internal suffix."""
    stem = os.path.splitext(name)[0]
    return stem[: -len("_internal")] if stem.endswith("_internal") else stem


def include_graph(files):
    """{module: {module it includes}} from {file name: text}; self-edges left out."""
    graph = {}
    for name, text in files.items():
        mod = module_of(name)
        deps = graph.setdefault(mod, set())
        for header in INCLUDE.findall(text):
            dep = module_of(header)
            if dep != mod:
                deps.add(dep)
    return graph


def find_cycle(graph):
    """One circle as a list of modules (first == last), or None. Depth-first search."""
    state = {}  # module -> 1 on the stack, 2 done
    stack = []

    def visit(mod):
        state[mod] = 1
        stack.append(mod)
        for dep in sorted(graph.get(mod, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[mod] = 2
        return None

    for mod in sorted(graph):
        if mod not in state:
            found = visit(mod)
            if found:
                return found
    return None


def read_common(directory):
    files = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                files[name] = f.read()
    return files


def common_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    for base in (os.environ.get("TEST_SRCDIR", ""), os.path.join(here, "..", "..", "..")):
        for cand in (os.path.join(base, "__main__", "common"), os.path.join(base, "common")):
            if os.path.isfile(os.path.join(cand, "server.h")):
                return cand
    raise SystemExit("common/ not found: pass its path")


class IncludeCycles(unittest.TestCase):
    def test_common_has_no_circle_of_includes(self):
        files = read_common(COMMON)
        self.assertIn("server.c", files)
        cycle = find_cycle(include_graph(files))
        self.assertIsNone(cycle, "circle of includes in common/: %s"
                          % " -> ".join(cycle or []))

    def test_a_circle_is_found(self):
        files = {
            "server.c": '#include "common/server.h"\n#include "common/health.h"\n',
            "server.h": '#include "common/log.h"\n',
            "health.h": '#include "common/server.h"\n',
            "log.h": "",
        }
        self.assertEqual(find_cycle(include_graph(files)), ["health", "server", "health"])

    def test_a_module_split_over_files_is_one_module(self):
        files = {
            "server.c": '#include "common/server_internal.h"\n',
            "server_internal.h": '#include "common/server.h"\n',
            "call.c": '#include "common/server_internal.h"\n',
            "health.h": '#include "common/server.h"\n',
        }
        self.assertIsNone(find_cycle(include_graph(files)))
        files["server_internal.h"] += '#include "common/call.h"\n'
        files["call.h"] = '#include "common/server.h"\n'
        self.assertEqual(find_cycle(include_graph(files)), ["call", "server", "call"])


if __name__ == "__main__":
    COMMON = common_dir()
    unittest.main(argv=sys.argv[:1], verbosity=1)
