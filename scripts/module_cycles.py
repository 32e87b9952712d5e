"""Import cycles between the modules of src/ (the library and the binary's cli/).

Every path a file names (`use` items, `crate::`, `super::`, `flarecast::` paths) is
resolved to the module that defines it; a reference between a module and its own
ancestor is containment, not an edge. Others are edges between the two children of the
modules' lowest common ancestor, and any strongly connected group of siblings is a cycle.

    python3 scripts/module_cycles.py [src]    # exit 1 and the cycles, if any
"""
import os, re, sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'src')
mods = {}  # module path tuple -> file
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'):
            continue
        rel = os.path.relpath(os.path.join(dp, f), root)[:-3].split(os.sep)
        if rel == ['lib']:
            m = ('crate',)
        elif rel == ['main']:
            m = ('bin',)
        else:
            if rel[-1] == 'mod':
                rel = rel[:-1]
            top = 'bin' if rel[0] == 'cli' else 'crate'
            m = (top,) + tuple(rel)
        mods[m] = os.path.join(dp, f)

def expand(path):
    """a::{b, c::{d}} -> [a::b, a::c::d]"""
    path = path.strip()
    i = path.find('{')
    if i < 0:
        return [path]
    head, body = path[:i], path[i+1:path.rindex('}')]
    parts, depth, cur = [], 0, ''
    for ch in body:
        if ch == ',' and depth == 0:
            parts.append(cur); cur = ''
            continue
        depth += ch == '{'
        depth -= ch == '}'
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += expand(head + p.strip())
    return out

def resolve(cur, segs):
    if segs[0] == 'crate':
        base = (cur[0],); segs = segs[1:]
    elif segs[0] == 'flarecast':
        base = ('crate',); segs = segs[1:]
    elif segs[0] in ('super', 'self'):
        base = cur
        while segs and segs[0] in ('super', 'self'):
            if segs[0] == 'super':
                base = base[:-1]
            segs = segs[1:]
    else:
        base = cur  # a child module, or an external crate (not in mods)
        if cur + (segs[0],) not in mods:
            return None
    m = base
    for s in segs:
        if m + (s,) in mods:
            m = m + (s,)
        else:
            break
    return m

edges = defaultdict(set)
for m, f in mods.items():
    src = open(f).read()
    src = re.sub(r'//[^\n]*', '', src)
    paths = []
    for u in re.finditer(r'\buse\s+([^;]+);', src):
        paths += expand(re.sub(r'\s+', '', re.sub(r'\s+as\s+\w+', '', u.group(1))))
    paths += re.findall(r'\b(?:crate|super|flarecast)(?:::\w+)+', src)
    for p in paths:
        segs = [s for s in p.split('::') if s]
        if not segs:
            continue
        t = resolve(m, segs)
        if t is None or t == m:
            continue
        if t[:len(m)] == m or m[:len(t)] == t:
            continue  # parent and child
        k = 0
        while m[k] == t[k]:
            k += 1
        edges[(m[:k], m[k], t[k])].add(('::'.join(m), '::'.join(t)))

graph = defaultdict(lambda: defaultdict(set))
for (lca, a, b), why in edges.items():
    graph[lca][a].add(b)

found = False
for lca, g in graph.items():
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]
    def strong(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c = []
            while True:
                w = stack.pop(); on.discard(w); c.append(w)
                if w == v: break
            if len(c) > 1: sccs.append(c)
    for v in list(g):
        if v not in index:
            strong(v)
    for c in sccs:
        found = True
        print('cycle under', '::'.join(lca) + ':', ' <-> '.join(sorted(c)))
        for a in c:
            for b in c:
                if (lca, a, b) in edges:
                    print('   ', a, '->', b, 'e.g.', sorted(edges[(lca, a, b)])[:3])
print('edges:', sum(len(v) for v in edges.values()), 'module files:', len(mods))
sys.exit(1 if found else 0)
