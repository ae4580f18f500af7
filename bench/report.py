#!/usr/bin/env python3
"""Writes BENCHMARKS.md and the charts from a bench/bench.py results.json.

    report.py RESULTS.json --markdown BENCHMARKS.md --charts docs/bench

Medians over the repetitions are quoted, with the min–max spread of the
throughput. Each figure is also given as a ratio to the best peer (the best
tool that is not ours) in the same case of the same run. The text of
bench/profile-notes.md (profile findings, written by hand) is included,
and with --rebalance the "Rebalance pause" section from a
bench/rebalance.py results file (when it exists).
"""

import argparse
import json
import re
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

LABELS = {
    "producer": {
        "ours": "**ours** (producer)",
        "ours-static": "**ours**, static musl build (= the image)",
        "java": "Kafka ProducerPerformance (Java)",
        "kcat": "kcat -P (librdkafka, C)",
        "rdkafka-py": "confluent-kafka (librdkafka)",
        "kafka-python-async": "kafka-python, async sends",
        "kafka-python-sync": "kafka-python, sync sends (prototype)",
    },
    "consumer": {
        "ours": "**ours** (consumer), record log off",
        "ours-logging": "**ours** (consumer), record log on → /dev/null",
        "ours-static": "**ours**, static musl build (= the image), record log off",
        "java": "Kafka ConsumerPerformance (Java)",
        "kcat": "kcat -G (librdkafka, C)",
        "rdkafka-py": "confluent-kafka (librdkafka)",
    },
}
SHORT = {
    "ours": "ours", "ours-logging": "ours (log on)", "ours-static": "ours (static musl)", "java": "Java perf tool", "kcat": "kcat",
    "rdkafka-py": "confluent-kafka", "kafka-python-async": "kafka-python async",
    "kafka-python-sync": "kafka-python sync",
}
COLORS = {
    "ours": "#d62728", "ours-logging": "#ff9896", "ours-static": "#8c1c13", "java": "#1f77b4", "kcat": "#2ca02c",
    "rdkafka-py": "#98df8a", "kafka-python-async": "#9467bd", "kafka-python-sync": "#c5b0d5",
}
# Metric -> True when higher is better.
HIGHER = {"rate": True, "mb_s": True, "ack_p50_ms": False, "ack_p99_ms": False,
          "cpu_s_per_m": False, "rss_mb": False}


def is_ours(tool):
    return tool.startswith("ours")


def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None


def aggregate(rows):
    """{(size, comp, parts): {tool: {metric: median, 'min': .., 'max': .., 'n': .., 'records': ..}}}"""
    out = {}
    for r in rows:
        case = (r["size"], r["compression"], r["partitions"])
        out.setdefault(case, {}).setdefault(r["tool"], []).append(r)
    agg = {}
    for case, tools in out.items():
        agg[case] = {}
        for tool, rs in tools.items():
            ok = [r for r in rs if r.get("ok")]
            a = {"n": len(ok), "runs": len(rs), "errors": [r.get("error") for r in rs if not r.get("ok")]}
            if ok:
                for k in ("rate", "mb_s", "ack_p50_ms", "ack_p99_ms", "cpu_s_per_m", "rss_mb", "wall_rate",
                          "join_s"):
                    a[k] = med([r.get(k) for r in ok])
                a["min"] = min(r["rate"] for r in ok)
                a["max"] = max(r["rate"] for r in ok)
                a["records"] = ok[0]["records"]
            agg[case][tool] = a
    return agg


def best_peer(tools, metric):
    vals = [a[metric] for t, a in tools.items() if not is_ours(t) and a.get(metric) is not None]
    if not vals:
        return None
    return max(vals) if HIGHER[metric] else min(vals)


def fmt_rate(x):
    return "–" if x is None else f"{x:,.0f}"


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def ratio(x, best):
    if x is None or not best:
        return ""
    return f" ({x / best:.2f}×)"


def case_name(case):
    size, comp, parts = case
    return f"{size} B, {comp}, {parts} partition{'s' if parts > 1 else ''}"


def table(kind, agg, order):
    lines = []
    producer = kind == "producer"
    head = ["tool", "records", "records/s (median)", "min–max", "MB/s"]
    if producer:
        head += ["ack p50 ms", "ack p99 ms"]
    head += ["CPU s per 1M records", "peak RSS MB"]
    for case in sorted(agg):
        tools = agg[case]
        best = {m: best_peer(tools, m) for m in HIGHER}
        lines.append(f"\n#### {kind.capitalize()}: {case_name(case)}\n")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for tool in order:
            a = tools.get(tool)
            if not a:
                continue
            if not a["n"]:
                err = (a["errors"] or ["not run"])[0] or "failed"
                lines.append(f"| {LABELS[kind][tool]} | – | failed: {err[:80]} |" + " |" * (len(head) - 3))
                continue
            row = [LABELS[kind][tool], f"{a['records']:,}",
                   fmt_rate(a["rate"]) + ratio(a["rate"], best["rate"]),
                   f"{a['min']:,.0f}–{a['max']:,.0f}",
                   fmt(a["mb_s"]) + ratio(a["mb_s"], best["mb_s"])]
            if producer:
                row += [fmt(a["ack_p50_ms"]) + ratio(a["ack_p50_ms"], best["ack_p50_ms"]),
                        fmt(a["ack_p99_ms"]) + ratio(a["ack_p99_ms"], best["ack_p99_ms"])]
            row += [fmt(a["cpu_s_per_m"], 2) + ratio(a["cpu_s_per_m"], best["cpu_s_per_m"]),
                    fmt(a["rss_mb"]) + ratio(a["rss_mb"], best["rss_mb"])]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def goal_rows(res, pagg, cagg):
    rows = []

    def ratios(agg, tool, peers):
        out = []
        for case, tools in sorted(agg.items()):
            ours = tools.get(tool, {}).get("rate")
            ref = [tools[p]["rate"] for p in peers if tools.get(p, {}).get("rate")]
            if ours and ref:
                out.append((case, ours / max(ref)))
        return out

    def verdict(rs, goal):
        if not rs:
            return "not measured", ""
        worst = min(rs, key=lambda x: x[1])
        met = sum(1 for _, r in rs if r >= goal)
        text = (f"median {statistics.median(r for _, r in rs):.2f}×, worst {worst[1]:.2f}× "
                f"({case_name(worst[0])}); met in {met} of {len(rs)} cases")
        return text, "met" if met == len(rs) else ("partly" if met else "**not met**")

    for label, agg, tool, peers, goal in [
        ("producer ≥ 1.2× ProducerPerformance records/s", pagg, "ours", ["java"], 1.2),
        ("producer ≥ 1.0× librdkafka records/s (best of kcat, confluent-kafka)", pagg, "ours",
         ["kcat", "rdkafka-py"], 1.0),
        ("consumer ≥ 1.2× ConsumerPerformance records/s (record log off)", cagg, "ours", ["java"], 1.2),
        ("consumer ≥ 1.2× ConsumerPerformance records/s (record log on → /dev/null)", cagg, "ours-logging",
         ["java"], 1.2),
        ("static musl build (the image): producer ≥ 1.2× ProducerPerformance", pagg, "ours-static", ["java"], 1.2),
        ("static musl build (the image): producer ≥ 1.0× librdkafka", pagg, "ours-static", ["kcat", "rdkafka-py"],
         1.0),
        ("static musl build (the image): consumer ≥ 1.2× ConsumerPerformance", cagg, "ours-static", ["java"], 1.2),
    ]:
        text, v = verdict(ratios(agg, tool, peers), goal)
        rows.append((label, text, v))

    for kind, agg, tool in (("producer", pagg, "ours"), ("consumer", cagg, "ours"),
                            ("static musl producer", pagg, "ours-static"), ("static musl consumer", cagg, "ours-static")):
        peaks = [(case, a["rss_mb"]) for case, tools in agg.items() for t, a in tools.items()
                 if t == tool and a.get("rss_mb")]
        if peaks:
            worst = max(peaks, key=lambda x: x[1])
            over = [c for c, v in peaks if v > 20]
            rows.append((f"{kind} peak RSS ≤ 20 MB",
                         f"max {worst[1]:.1f} MB ({case_name(worst[0])}); median {statistics.median(v for _, v in peaks):.1f} MB; "
                         f"over 20 MB in {len(over)} of {len(peaks)} cases",
                         "met" if not over else ("partly" if len(over) < len(peaks) else "**not met**")))
    static = {k: v for k, v in res.get("sizes", {}).items() if "static musl" in k}
    if static:
        big = max(static.values())
        rows.append(("binary ≤ 10 MB (static musl = scratch image)",
                     ", ".join(f"{k.split()[1]} {v / 1e6:.1f} MB" for k, v in static.items()),
                     "met" if big <= 10e6 else "**not met**"))
    for svc, vals in res.get("ready", {}).items():
        xs = [x for x in vals if x]
        if xs:
            m = statistics.median(xs)
            rows.append((f"{svc}: process start → /readyz 200 ≤ 50 ms",
                         f"median {m:.1f} ms (min {min(xs):.1f}, max {max(xs):.1f}, n={len(xs)})",
                         "met" if m <= 50 else "**not met**"))
    return rows


def chart_throughput(kind, agg, order, path):
    cases = sorted(agg)
    tools = [t for t in order if any(agg[c].get(t, {}).get("rate") for c in cases)]
    if not cases or not tools:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(cases) + 3), 4.8))
    width = 0.8 / len(tools)
    for i, t in enumerate(tools):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cases):
            a = agg[c].get(t, {})
            if a.get("rate"):
                xs.append(j + (i - (len(tools) - 1) / 2) * width)
                ys.append(a["rate"])
                lo.append(a["rate"] - a["min"])
                hi.append(a["max"] - a["rate"])
        ax.bar(xs, ys, width, label=SHORT[t], color=COLORS[t], yerr=[lo, hi], capsize=2,
               edgecolor="black" if is_ours(t) else "none", linewidth=0.6)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([f"{s} B\n{c}\n{p}p" for s, c, p in cases], fontsize=8)
    ax.set_ylabel("records/s (log scale; median, bars = min–max)")
    ax.set_title(f"{kind.capitalize()} throughput, acks=all, one local broker")
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart_rss(pagg, cagg, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    drawn = False
    for ax, kind, agg, order in ((axes[0], "producer", pagg, list(LABELS["producer"])),
                                 (axes[1], "consumer", cagg, list(LABELS["consumer"]))):
        tools, vals = [], []
        for t in order:
            xs = [a[t]["rss_mb"] for a in agg.values() if a.get(t, {}).get("rss_mb")]
            if xs:
                tools.append(t)
                vals.append(max(xs))
        if not tools:
            continue
        drawn = True
        y = range(len(tools))
        ax.barh(y, vals, color=[COLORS[t] for t in tools],
                edgecolor=["black" if is_ours(t) else "none" for t in tools], linewidth=0.6)
        ax.set_yticks(list(y))
        ax.set_yticklabels([SHORT[t] for t in tools], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(20, color="grey", linestyle="--", linewidth=0.8)
        ax.text(20, len(tools) - 0.4, " 20 MB goal", fontsize=7, color="grey")
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.0f} MB", va="center", fontsize=7)
        ax.set_xlabel("peak RSS, MB (log scale; worst case over the layouts)")
        ax.set_title(f"{kind.capitalize()} peak RSS")
        ax.set_xlim(right=max(vals) * 4)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def human_bytes(n):
    return f"{n / 1e6:,.1f} MB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--markdown", required=True)
    ap.add_argument("--charts", required=True)
    ap.add_argument("--chart-prefix", default="docs/bench",
                    help="path of the charts as written in the markdown")
    ap.add_argument("--rebalance", help="bench/rebalance.py's results (docs/bench/rebalance.json), if it exists")
    a = ap.parse_args()
    res = json.load(open(a.results))
    charts = Path(a.charts)
    charts.mkdir(parents=True, exist_ok=True)
    pagg = aggregate(res["producer"])
    cagg = aggregate(res["consumer"])
    porder = list(LABELS["producer"])
    corder = list(LABELS["consumer"])
    imgs = []
    if chart_throughput("producer", pagg, porder, charts / "producer-throughput.png"):
        imgs.append(("Producer throughput", "producer-throughput.png"))
    if chart_throughput("consumer", cagg, corder, charts / "consumer-throughput.png"):
        imgs.append(("Consumer throughput", "consumer-throughput.png"))
    if chart_rss(pagg, cagg, charts / "peak-rss.png"):
        imgs.append(("Peak RSS", "peak-rss.png"))

    m, v, cfg = res["machine"], res["versions"], res["config"]
    md = []
    md.append("# Benchmarks\n")
    md.append(
        "Our producer and consumer side by side with what a team would use instead, on the same local "
        "Apache Kafka broker, in the same run (issue 7). Generated by `make bench` "
        f"(`scripts/bench.sh`, `bench/`); mode **{res['mode']}**, {cfg['reps']} repetition(s) per figure, "
        "medians quoted, min–max spread of the throughput shown. In brackets after a figure: its ratio to "
        "the best peer (the best tool that is not ours) in the same case; for records/s and MB/s above 1 "
        "is better, for latency, CPU and RSS below 1 is better.\n")
    if res["mode"] != "full":
        md.append("> **Smoke run**: tiny counts, numbers mean nothing; it only shows that every tool ran.\n")

    md.append("## Where we stand against the goals\n")
    md.append("| goal | measured | status |\n|---|---|---|")
    for g, t, s in goal_rows(res, pagg, cagg):
        md.append(f"| {g} | {t} | {s} |")
    md.append("")
    for title, f in imgs:
        md.append(f"![{title}]({a.chart_prefix}/{f})")
    md.append("")

    notes = ROOT / "bench/profile-notes.md"
    if notes.exists():
        md.append(notes.read_text().strip() + "\n")
    if a.rebalance and Path(a.rebalance).exists():
        from rebalance import markdown as rebalance_markdown
        md.extend(rebalance_markdown(json.load(open(a.rebalance))))

    md.append("## Machine and run\n")
    md.append(f"- {m['nproc']} cores ({m['cpu']}), {m['mem_gib']} GiB memory, Linux {m['kernel']}, {m['os']}")
    md.append(f"- run {res['started']} → {res.get('finished', '?')} ({res.get('duration_s', '?')} s)")
    ls, le = res.get("load_start", []), res.get("load_end", [])
    md.append(f"- load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in ls)}; "
              f"at end {', '.join(f'{x:.2f}' for x in le)}; compilers running at start: "
              f"{', '.join(res.get('busy_start') or []) or 'none'}, at end: {', '.join(res.get('busy_end') or []) or 'none'}")
    md.append(f"- broker: one local Apache Kafka {v['kafka']} (KRaft, `scripts/kafka-local.sh`, PLAINTEXT "
              f"{res['bootstrap']}, replication factor 1), shared by every client and the harness; the broker "
              "runs on the same 2 cores, so every figure includes the competition for CPU with it")
    md.append(f"- our binaries: `{res['bin_dir']}` (`cargo build --release -p producer -p consumer`)\n")

    md.append("## Versions\n")
    for k, label in (("ours", "ours"), ("ours_git", "git"), ("rustc", "rustc"), ("kafka", "Kafka (broker, Java tools)"),
                     ("java", "Java"), ("kcat", "kcat (Debian)"), ("confluent_kafka", "confluent-kafka (PyPI wheel)"),
                     ("kafka_python", "kafka-python (PyPI)"), ("python", "Python")):
        md.append(f"- {label}: {v.get(k, '?')}")
    md.append("")

    md.append("## Method\n")
    md.append(f"""- **Records.** Every tool sends records of the same shape: our producer's demo record
  (`{{"run_id":…,"seq":…,"sent_at":…,"payload":"abc…"}}`, padded with a repeating 36-character pattern to
  exactly the record size), no key. The peers read them from pre-generated files: a pool of 1000 for
  ProducerPerformance (`--payload-file`) and the Python clients, one line per record for kcat (`-l`).
  Sizes {', '.join(f'{s} B' for s in cfg['sizes'])}: our producer's smallest demo record is 128 B
  (`MIN_RECORD_SIZE`), so the small size is 128 B for every tool rather than 100 B.
- **Producers.** acks=all, compression {', '.join(cfg['compressions'])}, {' and '.join(str(p) for p in cfg['partitions'])}
  partition(s), a fresh topic per run (created before the process starts, deleted after; the record
  count on the broker is checked after every run). {cfg['records']:,} records for ours, Java, kcat and
  confluent-kafka; kafka-python is scaled down: {cfg['py_async_records']:,} records with async sends and
  {cfg['py_sync_records']:,} with one synchronous send at a time (the prototype's way), since at its rate
  the full count would take minutes. Otherwise every client keeps its own defaults (what a user gets):
  ours linger 5 ms, 512 KiB batches, 10 000 records in flight; Java linger 5 ms, 16 KiB batches,
  idempotence on; librdkafka linger 5 ms, 1 MB batches; kafka-python linger 0.
- **Producer records/s** is each tool's own timing where it has one: ours from the first send to the last
  acknowledgement (its summary line), ProducerPerformance its final line, the Python clients from the
  first send to the end of `flush()` (after connecting and reading metadata). kcat has no own timing: its
  figure is process start to exit (connection and metadata included), a slight handicap for kcat.
  MB/s = records/s × record size (values only).
- **Ack latency** p50/p99 is per record, from handing it to the client to its acknowledgement, as each
  tool reports it: ours (HDR histogram), ProducerPerformance (its percentiles), confluent-kafka
  (`Message.latency()`), kafka-python (timed in Python; async: every 64th send). kcat reports none.
  At full speed these are mostly time spent queued in the client, so they reflect each client's
  buffer size as much as the broker round trip.
- **Consumers** read the same pre-produced topic ({cfg['consumer_records']:,} records written by our
  producer, so our consumer also verifies every record as a demo record: JSON parse, per-run
  duplicate/gap tracking), each as a fresh consumer group from the earliest offset, committing
  (ours every 5 s and at shutdown, the others' auto-commit). Records/s counts from the first records
  received to the last, so the group join is left out: ours from polling `/metrics`
  (`kafka_consumer_records_consumed_total`, every 20 ms) until all were handled, ConsumerPerformance
  its `fetch.nMsg.sec`, confluent-kafka from its first batch; kcat (with `-e`, output to /dev/null) again
  process start to exit. Ours is measured twice: with `RUST_LOG=info,consumer::record=off` (no log line per
  record) and with the default per-record JSON log line on stdout redirected to /dev/null.
- **CPU seconds and peak RSS** are GNU time's (`/usr/bin/time`, the kernel's rusage) for the whole client
  process: for Java the JVM (kafka-tool.sh's perf-test default: `-Xmx512m`, full JIT, cold), for the
  Python clients the interpreter. CPU is per million records; RSS is the peak of the run.
- **Start to ready**: our service started by the harness, `/readyz` polled every millisecond until it
  answers 200 (the producer: connected, metadata known; the consumer: joined the group with partitions
  assigned), median of {cfg['ready_n']}.
- Repetitions are interleaved (every tool once per repetition, the order rotated), so a slow minute of
  the machine does not fall on one tool.
""")

    md.append("## Producer\n")
    md.append(table("producer", pagg, porder))
    md.append("\n## Consumer\n")
    md.append(table("consumer", cagg, corder))
    md.append("")

    md.append("\n## Start to ready (ours)\n")
    md.append("| service | median ms | min–max ms | n |\n|---|---|---|---|")
    for svc, vals in res.get("ready", {}).items():
        xs = [x for x in vals if x]
        if xs:
            md.append(f"| {svc} | {statistics.median(xs):.1f} | {min(xs):.1f}–{max(xs):.1f} | {len(xs)} |")
    md.append("")

    mem = res.get("memory")
    if mem:
        md.append("## Producer memory against the record count (ours)\n")
        md.append("Peak RSS, median of the repetitions, 128 B demo records, 6 partitions; at 10x the records "
                  "the peak may grow by less than 6 MB (the spread between runs is a few MB; the run fails "
                  "otherwise).\n")
        md.append("| records | peak RSS MB | records/s |\n|---|---|---|")
        for run in (mem["small"], mem["large"]):
            rss = f"{run['rss_mb']:.1f}" if run.get("rss_mb") else "—"
            rate = f"{run['rate']:,.0f}" if run.get("rate") else run.get("error") or "—"
            md.append(f"| {run['records']:,} | {rss} | {rate} |")
        verdict = "skipped (time budget used up)" if mem.get("skipped") else "ok" if mem["ok"] else "FAILED"
        if mem.get("growth_mb") is not None:
            md.append(f"\nGrowth {mem['growth_mb']:.2f} MB (ratio {mem['ratio']:.3f}; "
                      f"limit {mem['limit_growth_mb']} MB): {verdict}.\n")
        elif mem.get("ratio"):  # results written before the growth limit
            md.append(f"\nRatio {mem['ratio']:.3f} (limit {mem['limit']:.2f}): {verdict}.\n")
        else:
            md.append(f"\n{verdict}.\n")

    md.append("## Size on disk\n")
    md.append("| what | size |\n|---|---|")
    for k, val in res.get("sizes", {}).items():
        md.append(f"| {k} | {human_bytes(val)} |")
    md.append("")

    md.append("## Commands\n")
    md.append("The harness runs these (topic names and paths vary per run):\n")
    md.append("```")
    for k, c in sorted(res.get("commands", {}).items()):
        # Paths relative to the checkout, whichever checkout the run was in.
        c = re.sub(r"/\S*/(?=(?:scripts|bench|target)/)", "",
                   c.replace(str(ROOT) + "/", "").replace(str(Path.home()), "~"))
        md.append(f"{k}: {c}")
    md.append("```\n")
    md.append("Reproduce: `make bench` (full run, about 30–40 minutes here; waits for a quiet machine first), "
              "`make bench-smoke` (seconds; part of `make test`). Raw per-run figures: "
              f"`{a.chart_prefix}/results.json`. Sizes can be overridden: `BENCH_REPS`, `BENCH_RECORDS`, "
              "`BENCH_CONSUMER_RECORDS`, `BENCH_SIZES`, `BENCH_COMPRESSIONS`, `BENCH_PARTITIONS`, "
              "`BENCH_PRODUCER_TOOLS`, `BENCH_CONSUMER_TOOLS` (see `bench/bench.py`).\n")
    Path(a.markdown).write_text("\n".join(md))
    print(f"report: wrote {a.markdown} and {len(imgs)} chart(s) in {charts}")


if __name__ == "__main__":
    main()
