#!/usr/bin/env python3
"""Lists production Rust functions longer than N lines (default 80), longest first.

Usage: scripts/fn-lengths.py [N] [DIR...]   (default DIRs: store/src placement/src operator/src e2e/src)
Test code (`#[cfg(test)]` items, tests.rs and *_tests.rs files, tests/ directories) is skipped; a function is
counted from its `fn` line to its closing brace."""
import re, sys, pathlib
limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
roots = sys.argv[2:] or ["store/src", "placement/src", "operator/src", "e2e/src"]
fn_re = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)')
out = []
for root in roots:
    for p in pathlib.Path(root).rglob("*.rs"):
        if p.name == "tests.rs" or p.name.endswith("_tests.rs") or "/tests/" in str(p):
            continue
        lines = p.read_text().splitlines()
        i = 0
        while i < len(lines):
            l = lines[i]
            if l.strip() == "#[cfg(test)]":
                # skip the following item (module or fn) by brace matching
                j = i + 1
                depth = 0; started = False
                while j < len(lines):
                    s = re.sub(r'"([^"\\]|\\.)*"', '""', lines[j])
                    s = s.split("//")[0]
                    depth += s.count("{") - s.count("}")
                    if "{" in s: started = True
                    if started and depth <= 0: break
                    if not started and s.rstrip().endswith(";"): break
                    j += 1
                i = j + 1
                continue
            m = fn_re.match(l)
            if m:
                j = i; depth = 0; started = False
                while j < len(lines):
                    s = re.sub(r'"([^"\\]|\\.)*"', '""', lines[j])
                    s = re.sub(r"'.'", "''", s)
                    s = s.split("//")[0]
                    depth += s.count("{") - s.count("}")
                    if "{" in s: started = True
                    if not started and s.rstrip().endswith(";"): break
                    if started and depth <= 0: break
                    j += 1
                n = j - i + 1
                if started and n > limit:
                    out.append((n, f"{p}:{i+1}", m.group(6)))
                i += 1
                continue
            i += 1
for n, loc, name in sorted(out, reverse=True):
    print(f"{n:4} {name:30} {loc}")
