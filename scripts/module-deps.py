#!/usr/bin/env python3
"""List the call graph and the include graph between the C modules of src/,
and report the cycles of the call graph.

    python3 scripts/module-deps.py            # the graph, then the cycles
    python3 scripts/module-deps.py --check    # exit 1 when there is a cycle
    python3 scripts/module-deps.py --dot      # Graphviz of the call graph
    python3 scripts/module-deps.py -v         # also the names behind each edge
    python3 scripts/module-deps.py --src DIR  # another tree's src/

A module is one src/NAME.c.  "A calls B" when A.c names a function or a
global variable that B.c defines and some header of src/ declares extern
(calls, reads and writes alike).  Source text only: comments and string
literals are stripped, no compiler needed.  A cycle is a strongly connected
component of more than one module.  docs/internals.md ("src/ map") says what
each module owns and may call.
"""
import glob
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src')
if '--src' in sys.argv:
    SRC = sys.argv[sys.argv.index('--src') + 1]


def strip(text):
    """The C text without comments and string/char literals."""
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                  lambda m: ' ' if m.group(0).startswith('/') else '""',
                  text, flags=re.S)


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def exported_names():
    """Every name an src/*.h declares extern."""
    names = set()
    for h in glob.glob(os.path.join(SRC, '*.h')):
        text = strip(read(h))
        for decl in re.findall(r'\bextern\b([^;]*);', text):
            m = re.search(r'(\w+)\s*\(', decl)          # a function
            if m is None:
                m = re.search(r'(\w+)\s*(?:\[[^\]]*\]\s*)*$', decl.strip())  # a variable
            if m:
                names.add(m.group(1))
    return names


def definitions(text, names):
    """The exported names this module defines: at column 0 (PostgreSQL
    style puts a function's name at the start of its line), or a global
    variable definition at column 0."""
    found = set()
    for m in re.finditer(r'^(\w+)\s*\(', text, flags=re.M):
        if m.group(1) in names:
            found.add(m.group(1))
    for m in re.finditer(r'^(?!static\b|extern\b|typedef\b)[A-Za-z_][\w \t\*]*?\b(\w+)\s*(?:=[^;]*)?;',
                         text, flags=re.M):
        if m.group(1) in names:
            found.add(m.group(1))
    return found


def main():
    args = sys.argv[1:]
    names = exported_names()
    modules = {}
    for c in sorted(glob.glob(os.path.join(SRC, '*.c'))):
        raw = read(c)
        modules[os.path.basename(c)[:-2]] = (raw, strip(raw))

    owner = {}
    for mod, (_, text) in modules.items():
        for name in definitions(text, names):
            owner[name] = mod

    calls = {mod: {} for mod in modules}
    includes = {}
    for mod, (raw, text) in modules.items():
        for tok in set(re.findall(r'\b\w+\b', text)):
            dst = owner.get(tok)
            if dst is not None and dst != mod:
                calls[mod].setdefault(dst, []).append(tok)
        includes[mod] = sorted(h for h in re.findall(r'^#include "([^"]+)"', raw, flags=re.M)
                               if os.path.exists(os.path.join(SRC, h)))

    if '--dot' in args:
        print('digraph src {')
        for mod in sorted(calls):
            for dst in sorted(calls[mod]):
                print(f'  "{mod}" -> "{dst}";')
        print('}')
        return 0

    # Tarjan's strongly connected components
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in calls[v]:
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(calls):
        if v not in index:
            visit(v)

    if '--check' not in args:
        print('# calls (module -> modules it calls: the names it uses)')
        for mod in sorted(calls):
            out = ', '.join(f'{d} ({len(calls[mod][d])})' for d in sorted(calls[mod]))
            print(f'{mod:16} -> {out or "-"}')
        if '-v' in args:
            for mod in sorted(calls):
                for d in sorted(calls[mod]):
                    print(f'  {mod} -> {d}: {" ".join(sorted(calls[mod][d]))}')
        print()
        if not sccs:
            level = {}

            def depth(v):
                if v not in level:
                    level[v] = 1 + max([depth(w) for w in calls[v]] + [-1])
                return level[v]

            print('# layers (a module calls only modules of lower layers)')
            for v in calls:
                depth(v)
            for n in sorted(set(level.values())):
                print(f'{n}: {" ".join(sorted(v for v in level if level[v] == n))}')
            print()
        print('# includes (src/ headers of this tree each module includes)')
        for mod in sorted(includes):
            print(f'{mod:16} {" ".join(includes[mod]) or "-"}')
        print()
    print('# cycles (modules that reach each other through calls)')
    if not sccs:
        print('none')
    for comp in sccs:
        print(' <-> '.join(comp))
        for a in comp:
            for b in comp:
                if b in calls[a]:
                    print(f'    {a} -> {b}: {" ".join(sorted(calls[a][b]))}')
    return 1 if sccs and '--check' in args else 0


if __name__ == '__main__':
    sys.exit(main())
