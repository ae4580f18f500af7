"""Shared bits of the Python bench clients: payload pool, percentiles, result line."""

import json
import sys


def load_pool(path, limit=1000):
    """Up to `limit` pre-generated records (one per line, newline stripped)."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            out.append(line.rstrip(b"\n"))
            if len(out) >= limit:
                break
    if not out:
        sys.exit(f"empty payload pool {path}")
    return out


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def emit(**fields):
    """The result: one JSON line on stdout (the harness reads the last one)."""
    print(json.dumps(fields), flush=True)
