#!/usr/bin/env python3
"""Quantiles of a Prometheus histogram over what it counted between two
scrapes of /metrics, interpolated as PromQL's histogram_quantile does:
linearly inside the bucket the rank falls in, from 0 for the first bucket,
and the last finite bound when the rank falls in the +Inf bucket.
  histogram-quantile.py BEFORE AFTER METRIC [LABEL=VALUE ...]
The buckets of every series of METRIC with those labels are summed.
Prints one line: the count, p50 and p99 in ms, and the bucket each fell in.
`python3 -m doctest scripts/histogram-quantile.py` checks the interpolation."""
import math
import re
import sys


def quantile(q, buckets):
    """q of cumulative buckets [(upper bound, count)] sorted by bound, the
    last one +Inf; (value, lower bound, upper bound) of its bucket.

    All in the first bucket: interpolated from 0.
    >>> quantile(0.5, [(0.005, 100.0), (0.025, 100.0), (math.inf, 100.0)])
    (0.0025, 0, 0.005)
    >>> round(quantile(0.99, [(0.005, 50.0), (0.025, 150.0), (math.inf, 150.0)])[0], 6)
    0.0247

    Past the last finite bound: that bound.
    >>> quantile(0.99, [(0.005, 10.0), (0.025, 20.0), (math.inf, 100.0)])
    (0.025, 0.025, inf)
    """
    total = buckets[-1][1]
    if total == 0:
        return (math.nan, math.nan, math.nan)
    rank = q * total
    b = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if b == len(buckets) - 1:
        return (buckets[-2][0], buckets[-2][0], math.inf)
    start, end, count = 0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return (start + (end - start) * rank / count, start, end)


def buckets_of(path, metric, wanted):
    """Cumulative counts by upper bound, summed over the matching series."""
    sums = {}
    pattern = re.compile(r"^" + re.escape(metric) + r"_bucket\{(.*)\} (\S+)$")
    for line in open(path):
        m = pattern.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if any(labels.get(k) != v for k, v in wanted.items()):
            continue
        le = float(labels["le"])
        sums[le] = sums.get(le, 0.0) + float(m.group(2))
    return sums


def main():
    before_path, after_path, metric = sys.argv[1:4]
    wanted = dict(arg.split("=", 1) for arg in sys.argv[4:])
    before = buckets_of(before_path, metric, wanted)
    after = buckets_of(after_path, metric, wanted)
    if not after:
        sys.exit(f"{metric}: no series with {wanted} in {after_path}")
    buckets = sorted((le, count - before.get(le, 0.0)) for le, count in after.items())
    ms = lambda s: "+Inf" if math.isinf(s) else f"{s * 1e3:g}"
    parts = [f"count {int(buckets[-1][1])}"]
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        value, low, high = quantile(q, buckets)
        parts.append(f"{name} {value * 1e3:.2f} ms (bucket {ms(low)}-{ms(high)} ms)")
    print(", ".join(parts))


if __name__ == "__main__":
    main()
