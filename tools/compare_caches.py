#!/usr/bin/env python
"""Compare two prepared caches: equal, or the second one equals a prefix of the first (a --limit run).

Usage: tools/compare_caches.py FULL_CACHE OTHER_CACHE
"""
import sys

import numpy as np

from agekit.data import PreparedCache


def main(full: str, other: str) -> int:
    a, b = PreparedCache(full), PreparedCache(other)
    n = len(b)
    prefix = n < len(a)
    ok = a.views == b.views and n <= len(a)
    for k in b.meta:
        ok &= np.array_equal(a.meta[k][:n], b.meta[k], equal_nan=b.meta[k].dtype.kind == "f")
    for k in b.views:
        ok &= np.array_equal(a.view(k)[:n], b.view(k))
    if not prefix:
        ok &= a.protocols == b.protocols
        ok &= all(all(np.array_equal(a.splits(p)[s], b.splits(p)[s]) for s in a.splits(p)) for p in a.protocols)
    what = f"first {n} rows of {full}" if prefix else full
    print(f"{other} == {what} (meta, views{'' if prefix else ', splits'}): {bool(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
