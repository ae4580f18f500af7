#!/usr/bin/env python3
"""The rebalance-pause benchmark behind `make bench-rebalance` (issue 15).

A group consumes a steady stream (our producer, `--continuous --rate`) on
12 partitions while three events happen: a member is added (2 -> 3), one
is stopped with SIGTERM (3 -> 2), one is killed with SIGKILL (2 -> 1, the
group notices at the session timeout). Six rows: our consumer and Kafka's
Java consumer (the broker's jars, VerifiableConsumer) with eager `range`,
with `cooperative-sticky` (both classic protocol) and with KIP-848's
consumer protocol.

Every member logs each record it handles with partition, offset and the
time it handled it (ours: the JSON record log, `timestamp` = when the
handler logged it; Java: VerifiableConsumer's `record_data` events, their
`timestamp` = when the poll returned it), so each partition gets a
timeline of who consumed which offset when. Per event:

* owners before (the last member that consumed each partition before the
  event) and after (the last one before the next event); a partition
  moved when they differ;
* unmoved partitions: the longest gap between two records handled, from
  the last record before the event to the next event (compared with the
  longest gap of the steady state before the first event);
* moved partitions: the time from the last record the old owner handled
  (its revocation, or its death) to the first the new owner handled, and
  from the event itself;
* records handled twice: (partition, offset) handled again in the window.

Writes RESULTS (default docs/bench/rebalance.json); bench/report.py turns
it into BENCHMARKS.md's "Rebalance pause" section (also run here with
--markdown).
"""

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench import ROOT, Broker, Run, busy_processes, log, machine

PARTITIONS = 12
# Classic protocol: the same session timeout and heartbeat interval for
# both clients. KIP-848: the broker's group.consumer.* settings apply to both.
SESSION_MS = 10_000
HEARTBEAT_MS = 1_000
# Java's fetch.max.wait.ms default: a fetch on an idle partition may take
# this long to return, so a gap this much over the steady state is still
# "normal fetch timing".
FETCH_SLACK_S = 0.5
# The KIP-848 goal: moved partitions consumed again within this of the revocation.
KIP848_RESUME_S = 1.0
# "No slower than Java": ours may exceed Java's figure by this much (one
# run each; below this the difference is noise of the timeline sampling).
NO_SLOWER_SLACK_S = 0.25

ROWS = [
    ("ours", "range"), ("ours", "cooperative-sticky"), ("ours", "consumer"),
    ("java", "range"), ("java", "cooperative-sticky"), ("java", "consumer"),
]
MODE_LABELS = {
    "range": "eager `range` (classic)",
    "cooperative-sticky": "`cooperative-sticky` (classic)",
    "consumer": "KIP-848 (consumer protocol)",
}
JAVA_ASSIGNORS = {
    "range": "org.apache.kafka.clients.consumer.RangeAssignor",
    "cooperative-sticky": "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
}
EVENTS = ["add (2 → 3)", "SIGTERM (3 → 2)", "SIGKILL (2 → 1)"]


def broker_group_settings():
    """The broker's KIP-848 session timeout and heartbeat interval (its config, else Kafka's defaults)."""
    settings = {"group.consumer.session.timeout.ms": 45_000, "group.consumer.heartbeat.interval.ms": 5_000}
    out = subprocess.run([ROOT / "scripts/kafka-tool.sh", "configs", "--bootstrap-server", os.environ.get(
        "BENCH_BOOTSTRAP", "127.0.0.1:19092"), "--describe", "--entity-type", "brokers", "--entity-name", "1",
        "--all"], capture_output=True, text=True, timeout=120).stdout
    for line in out.splitlines():
        line = line.strip()
        for k in settings:
            if line.startswith(k + "="):
                settings[k] = int(line.split("=", 1)[1].split()[0])
    return settings


class Member:
    """One group member (ours or Java) whose record log goes to a file."""

    def __init__(self, client, mode, name, topic, group, bootstrap, bin_dir, logs):
        self.client, self.name = client, name
        self.out_path = logs / f"{group}-{name}.out"
        self.err_path = logs / f"{group}-{name}.err"
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        if client == "ours":
            env = {"KAFKA_BOOTSTRAP_SERVER": bootstrap, "KAFKA_TOPIC": topic, "KAFKA_CONSUMER_GROUP": group,
                   "HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json", "RUST_LOG": "info",
                   "CONSUMER_AUTO_OFFSET_RESET": "earliest"}
            if mode == "consumer":
                env["CONSUMER_GROUP_PROTOCOL"] = "consumer"
            else:
                env.update(CONSUMER_GROUP_PROTOCOL="classic", CONSUMER_ASSIGNORS=mode,
                           CONSUMER_SESSION_TIMEOUT_MS=str(SESSION_MS),
                           CONSUMER_HEARTBEAT_INTERVAL_MS=str(HEARTBEAT_MS),
                           # It must stay below the session timeout.
                           CONSUMER_DRAIN_TIMEOUT_MS=str(SESSION_MS // 2))
            self.cmd = [Path(bin_dir) / "consumer"]
        else:
            env = {}
            self.cmd = [ROOT / "scripts/kafka-tool.sh", "verifiable-consumer", "--bootstrap-server", bootstrap,
                        "--topic", topic, "--group-id", group, "--verbose", "--reset-policy", "earliest"]
            if mode == "consumer":
                self.cmd += ["--group-protocol", "consumer"]
            else:
                props = logs / f"{group}-heartbeat.properties"
                props.write_text(f"heartbeat.interval.ms={HEARTBEAT_MS}\n")
                self.cmd += ["--group-protocol", "classic", "--assignment-strategy", JAVA_ASSIGNORS[mode],
                             "--session-timeout", SESSION_MS, "--command-config", props]
        self.env = env
        self.run = Run(self.cmd, env, stdout=self.out, stderr=self.err)

    def stop(self, sig):
        self.run.signal(sig)

    def close(self):
        if not self.run.wait(30):
            log(f"{self.name} did not end within 30 s: killed")
        self.out.close()
        self.err.close()

    def records(self):
        """(time in epoch seconds, partition, offset) of every record this member handled."""
        got = []
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                try:
                    j = json.loads(line)
                except ValueError:
                    continue  # a line cut short by SIGKILL
                if self.client == "ours":
                    if j.get("message") != "record" or j.get("target") != "consumer::record":
                        continue
                    t = dt.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00")).timestamp()
                else:
                    if j.get("name") != "record_data":
                        continue
                    t = j["timestamp"] / 1e3
                got.append((t, int(j["partition"]), int(j["offset"])))
        return got


def owners(timeline, t0, t1):
    """Partition -> the member that handled its last record in [t0, t1)."""
    own = {}
    for p, recs in timeline.items():
        last = [r for r in recs if t0 <= r[0] < t1]
        if last:
            own[p] = last[-1][1]
    return own


def max_gap(times):
    return max((b - a for a, b in zip(times, times[1:])), default=None)


def analyse(members, events, end):
    """The per-event figures from the members' record logs (see the module doc)."""
    timeline = {p: [] for p in range(PARTITIONS)}
    for m in members:
        for t, p, o in m.records():
            timeline[p].append((t, m.name, o))
    for recs in timeline.values():
        recs.sort()
    first_event = events[0][1]
    steady = [max_gap([r[0] for r in recs if first_event - 10 <= r[0] < first_event])
              for recs in timeline.values()]
    steady = [g for g in steady if g is not None]
    result = {"steady_max_gap_s": max(steady) if steady else None,
              "steady_records": sum(1 for recs in timeline.values() for r in recs if r[0] < first_event),
              "events": []}
    bounds = [t for _, t in events] + [end]
    for i, (name, t) in enumerate(events):
        t_next = bounds[i + 1]
        before = owners(timeline, t - 5, t)
        # The owners at the end of the window: the last 3 s before the next event.
        after = owners(timeline, t_next - 3, t_next)
        moved = sorted(p for p in range(PARTITIONS) if p in before and p in after and before[p] != after[p])
        kept = sorted(p for p in range(PARTITIONS) if p in before and p in after and before[p] == after[p])
        unknown = sorted(p for p in range(PARTITIONS) if p not in before or p not in after)
        kept_gaps = []
        for p in kept:
            recs = [r[0] for r in timeline[p] if r[0] < t_next]
            last_before = [x for x in recs if x < t]
            window = ([last_before[-1]] if last_before else []) + [x for x in recs if x >= t]
            g = max_gap(window)
            if g is not None:
                kept_gaps.append(g)
        resume, since_event = [], []
        for p in moved:
            recs = [r for r in timeline[p] if r[0] < t_next]
            new_first = next((r for r in recs if r[0] >= t - 1 and r[1] == after[p]), None)
            if new_first is None:
                continue
            old_last = [r[0] for r in recs if r[0] < new_first[0] and r[1] != after[p]]
            if old_last:
                resume.append(new_first[0] - old_last[-1])
            since_event.append(new_first[0] - t)
        seen, dups = set(), 0
        for p, recs in timeline.items():
            for r in recs:
                key = (p, r[2])
                if key in seen and t <= r[0] < t_next:
                    dups += 1
                seen.add(key)
        result["events"].append({
            "event": name, "at": t, "window_s": t_next - t,
            "moved": moved, "kept": kept, "unknown": unknown,
            "members_before": sorted(set(before.values())), "members_after": sorted(set(after.values())),
            "kept_max_gap_s": max(kept_gaps) if kept_gaps else None,
            "moved_resume_max_s": max(resume) if resume else None,
            "moved_since_event_max_s": max(since_event) if since_event else None,
            "moved_resumed": len(since_event),
            "duplicates": dups,
        })
    lost = 0
    for recs in timeline.values():
        offsets = {r[2] for r in recs}
        if offsets:
            lost += max(offsets) - min(offsets) + 1 - len(offsets)
    result["records"] = sum(len(v) for v in timeline.values())
    result["offset_holes"] = lost
    return result


def wait_consuming(members, n, timeout):
    """Waits until n members each handled a record (the group is formed and consuming)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        busy = [m for m in members if m.records()]
        if len(busy) >= n:
            return True
        if any(m.run.done.is_set() for m in members):
            return False
        time.sleep(0.5)
    return False


def run_row(client, mode, a, broker, logs, settings):
    tag = uuid.uuid4().hex[:6]
    topic = f"bench-rebalance-{tag}-{client}-{mode}"
    group = f"{topic}-g"
    row = {"client": client, "mode": mode, "ok": False, "topic": topic}
    broker.create_topic(topic, PARTITIONS)
    # KIP-848 members heartbeat at the broker's interval and a killed one is
    # noticed at its session timeout; classic ones at ours.
    if mode == "consumer":
        session_s = settings["group.consumer.session.timeout.ms"] / 1e3
        settle = max(12.0, 3 * settings["group.consumer.heartbeat.interval.ms"] / 1e3)
    else:
        session_s, settle = SESSION_MS / 1e3, 12.0
    prod_out = open(logs / f"{topic}-producer.out", "wb")
    producer = Run([Path(a.bin_dir) / "producer", "--continuous", "--rate", a.rate, "--topic", topic,
                    "--record-size", 128],
                   {"KAFKA_BOOTSTRAP_SERVER": a.bootstrap, "HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json"},
                   stdout=prod_out, stderr=subprocess.STDOUT)
    members = []
    try:
        def member(name):
            m = Member(client, mode, name, topic, group, a.bootstrap, a.bin_dir, logs)
            members.append(m)
            row.setdefault("command", " ".join(str(c) for c in m.cmd).replace(str(ROOT) + "/", "")
                           + (" (" + " ".join(f"{k}={v}" for k, v in sorted(m.env.items())
                                              if k.startswith("CONSUMER_")) + ")" if m.env else ""))
            return m

        a_m, b_m = member("m1"), member("m2")
        if not wait_consuming([a_m, b_m], 2, 90):
            tails = "; ".join(f"{m.name}: " + m.err_path.read_text(errors="replace")[-300:] for m in (a_m, b_m))
            raise RuntimeError(f"the first two members did not both consume within 90 s ({tails})")
        time.sleep(settle)
        events = []
        c_m = member("m3")
        events.append((EVENTS[0], time.time()))
        time.sleep(settle + (3 if client == "java" else 0))  # Java: the JVM starts first
        events.append((EVENTS[1], time.time()))
        a_m.stop(signal.SIGTERM)
        time.sleep(settle)
        events.append((EVENTS[2], time.time()))
        b_m.run.kill()
        time.sleep(session_s + settle)
        end = time.time()
        row.update(session_timeout_s=session_s, settle_s=settle)
        row.update(analyse(members, events, end))
        row["ok"] = True
    except Exception as e:  # noqa: BLE001 - a failed row is reported, not hidden
        row["error"] = str(e)
        log(f"{client} {mode}: FAILED {e}")
    finally:
        for m in members:
            m.stop(signal.SIGTERM)
        producer.signal(signal.SIGTERM)
        for m in members:
            m.close()
        producer.wait(30)
        prod_out.close()
        broker.delete_topic(topic)
    return row


def fmt_s(x):
    return "–" if x is None else f"{x:.2f} s"


def goals(res):
    """(goal, measured, status) rows."""
    rows = {(r["client"], r["mode"]): r for r in res["rows"]}
    out = []
    bad = []
    for (client, mode), r in rows.items():
        if not r["ok"]:
            bad.append(f"{client} {mode}: failed")
            continue
        limit = (r["steady_max_gap_s"] or 0) + FETCH_SLACK_S
        for e in r["events"]:
            if e["kept_max_gap_s"] is not None and e["kept_max_gap_s"] > limit:
                bad.append(f"{client} {MODE_LABELS[mode]} {e['event']}: {fmt_s(e['kept_max_gap_s'])} "
                           f"(steady {fmt_s(r['steady_max_gap_s'])})")
    out.append(("partitions that do not move see no gap beyond normal fetch timing "
                f"(≤ the row's steady-state longest gap + {FETCH_SLACK_S} s)",
                "; ".join(bad) or "every row and event within", "met" if not bad else "**not met**"))
    for client in ("ours", "java"):
        r = rows.get((client, "consumer"))
        if not r or not r["ok"]:
            out.append((f"KIP-848, {client}: moved partitions resume within {KIP848_RESUME_S:.0f} s of the "
                        "revocation (add, SIGTERM)", "row failed", "**not met**"))
            continue
        figs = [(e["event"], e["moved_resume_max_s"]) for e in r["events"][:2]]
        ok = all(x is not None and x <= KIP848_RESUME_S for _, x in figs)
        out.append((f"KIP-848, {client}: moved partitions resume within {KIP848_RESUME_S:.0f} s of the "
                    "revocation (add, SIGTERM)", "; ".join(f"{n}: {fmt_s(x)}" for n, x in figs),
                    "met" if ok else "**not met**"))
    slower = []
    for mode in MODE_LABELS:
        o, j = rows.get(("ours", mode)), rows.get(("java", mode))
        if not (o and j and o["ok"] and j["ok"]):
            slower.append(f"{mode}: no comparison (a row failed)")
            continue
        for eo, ej in zip(o["events"], j["events"]):
            for k, what in (("kept_max_gap_s", "unmoved gap"), ("moved_resume_max_s", "moved resume")):
                if eo[k] is not None and ej[k] is not None and eo[k] > ej[k] + NO_SLOWER_SLACK_S:
                    slower.append(f"{MODE_LABELS[mode]} {eo['event']} {what}: {fmt_s(eo[k])} vs {fmt_s(ej[k])}")
    out.append((f"ours no slower than the Java consumer in any row (within {NO_SLOWER_SLACK_S} s)",
                "; ".join(slower) or "no row slower", "met" if not slower else "**not met**"))
    return out


def markdown(res):
    """BENCHMARKS.md's "Rebalance pause" section, as lines."""
    md = ["## Rebalance pause (issue 15)\n"]
    md.append(
        f"Generated by `make bench-rebalance` (`scripts/bench.sh rebalance`, `bench/rebalance.py`) on "
        f"{res['started']} at commit `{res['git']}`, our binaries from `{res['bin_dir']}`; raw figures in "
        "`docs/bench/rebalance.json`. "
        f"One run per row. Load average at the start {res['load_start'][0]:.2f}, at the end "
        f"{res['load_end'][0]:.2f} ({res['machine']['nproc']} cores; busy processes at the start: "
        f"{', '.join(res['busy_start']) or 'none'}).\n")
    s = res["settings"]
    md.append(
        f"Our producer writes a steady {res['rate']} records/s (128 B) to a topic of {PARTITIONS} partitions "
        "on the local broker; a group of two members consumes it; then a third member is added, one of the "
        "first two is stopped with SIGTERM, and the other is killed with SIGKILL. Each member logs every "
        "record it handles with partition, offset and the time it handled it (ours: the JSON record log; "
        "Java: Kafka's VerifiableConsumer, `--verbose`, which commits after each poll), and the figures come "
        "from those timelines. Session timeouts: classic rows "
        f"{SESSION_MS / 1e3:.0f} s session, {HEARTBEAT_MS / 1e3:.0f} s heartbeat for both clients; KIP-848 "
        f"rows the broker's `group.consumer.session.timeout.ms` = {s['group.consumer.session.timeout.ms']} "
        f"and `group.consumer.heartbeat.interval.ms` = {s['group.consumer.heartbeat.interval.ms']} for both "
        "(the broker's minimums forbid less per group).\n")
    md.append("Columns: *unmoved gap* — the longest time between two records handled on a partition that "
              "kept its owner, from the last record before the event to the next event; *moved resume* — "
              "the longest time, over partitions that changed owner, from the last record the old owner "
              "handled to the first the new owner handled (for SIGKILL that includes the session timeout); "
              "*since event* — the same from the event; *twice* — records handled a second time in the "
              "event's window. *steady* — the longest gap on any partition in the 10 s before the first "
              "event (normal fetch timing). *moved* counts partitions whose owner in the 5 s before the "
              "event differs from their owner in the 3 s before the next event; *idle* ones had no record "
              "handled in one of those windows.\n")
    md.append("### Goals\n")
    md.append("| goal | measured | status |")
    md.append("|---|---|---|")
    for g, m, st in goals(res):
        md.append(f"| {g} | {m} | {st} |")
    md.append("")
    md.append("### Per event\n")
    md.append("| client | protocol / assignor | steady | event | moved | unmoved gap | moved resume "
              "| since event | twice |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for r in res["rows"]:
        label = "ours" if r["client"] == "ours" else "Java (VerifiableConsumer)"
        if not r["ok"]:
            md.append(f"| {label} | {MODE_LABELS[r['mode']]} | – | **failed**: {r.get('error', '?')} "
                      "| | | | | |")
            continue
        for e in r["events"]:
            moved = f"{len(e['moved'])}/{PARTITIONS}"
            if e["moved_resumed"] < len(e["moved"]):
                moved += f" ({len(e['moved']) - e['moved_resumed']} not resumed)"
            if e["unknown"]:
                # No record before the event or none before the next one: not consumed at all there.
                moved += f"; {len(e['unknown'])} idle"
            md.append(f"| {label} | {MODE_LABELS[r['mode']]} | {fmt_s(r['steady_max_gap_s'])} | {e['event']} "
                      f"| {moved} | {fmt_s(e['kept_max_gap_s'])} | {fmt_s(e['moved_resume_max_s'])} "
                      f"| {fmt_s(e['moved_since_event_max_s'])} | {e['duplicates']} |")
    md.append("")
    md.append(
        "Reading the figures: one run per row, and a figure that waits for a heartbeat is one draw from "
        "that heartbeat's phase. A member learns of a rebalance, or of partitions given to it, at its next "
        f"heartbeat: up to {HEARTBEAT_MS / 1e3:.0f} s later in the classic rows, up to "
        f"{s['group.consumer.heartbeat.interval.ms'] / 1e3:.0f} s in the KIP-848 rows (the broker's interval), "
        "so *moved resume* after SIGTERM, and after SIGKILL the time past the session timeout (which runs "
        "from the killed member's last heartbeat, up to one interval before the kill), differ between two "
        "runs by up to that interval; *since event* of an added member includes the process start (a JVM "
        "for Java). *twice*: VerifiableConsumer commits synchronously after every poll; ours commits every "
        "`CONSUMER_COMMIT_INTERVAL_MS` (5 s), before giving partitions up and on SIGTERM, so a SIGKILL "
        "re-delivers what it handled since its last commit (README, \"Redelivery after a crash\"); a Java "
        "application with the default auto-commit (every 5 s) would re-deliver up to that much too (not "
        "measured here).\n")
    holes = [f"{r['client']} {r['mode']}: {r['offset_holes']}" for r in res["rows"] if r["ok"] and r["offset_holes"]]
    md.append("Offsets never handled (holes between the first and last offset a partition's members handled): "
              + ("; ".join(holes) if holes else "none in any row") + ".\n")
    md.append("Commands (topic and group names vary per run):\n")
    md.append("```")
    for r in res["rows"]:
        if r.get("command"):
            md.append(f"{r['client']}/{r['mode']}: {r['command']}")
    md.append(f"producer: {res['bin_dir']}/producer --continuous --rate {res['rate']} --topic T --record-size 128")
    md.append("```\n")
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=str(ROOT / "target/release"))
    ap.add_argument("--bootstrap", default=os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("BENCH_REBALANCE_RATE", "300")),
                    help="records per second of the steady stream")
    ap.add_argument("--rows", default=os.environ.get("BENCH_REBALANCE_ROWS", ""),
                    help="comma-separated client/mode rows to run (default: all six)")
    ap.add_argument("--out", default=str(ROOT / "docs/bench/rebalance.json"))
    ap.add_argument("--markdown", help="also write the section alone to this file")
    a = ap.parse_args()
    for b in ("producer", "consumer"):
        if not (Path(a.bin_dir) / b).exists():
            sys.exit(f"bench: {Path(a.bin_dir) / b} missing (cargo build --release -p producer -p consumer)")
    rows = [r for r in ROWS if not a.rows or f"{r[0]}/{r[1]}" in a.rows.split(",")]
    logs = ROOT / "target/bench-rebalance/logs"
    logs.mkdir(parents=True, exist_ok=True)
    broker = Broker(a.bootstrap)
    res = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "git": subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                 cwd=ROOT).stdout.strip(),
           "machine": machine(), "load_start": list(os.getloadavg()), "busy_start": busy_processes(),
           "rate": a.rate, "bin_dir": os.path.relpath(a.bin_dir, ROOT), "bootstrap": a.bootstrap,
           "settings": broker_group_settings(), "rows": []}
    for client, mode in rows:
        log(f"rebalance: {client} {mode}")
        row = run_row(client, mode, a, broker, logs, res["settings"])
        res["rows"].append(row)
        if row["ok"]:
            log(f"rebalance: {client} {mode}: steady {fmt_s(row['steady_max_gap_s'])}; " + "; ".join(
                f"{e['event']}: moved {len(e['moved'])}, unmoved gap {fmt_s(e['kept_max_gap_s'])}, "
                f"resume {fmt_s(e['moved_resume_max_s'])}, twice {e['duplicates']}" for e in row["events"]))
    res.update(load_end=list(os.getloadavg()),
               finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"rebalance: results in {a.out}")
    if a.markdown:
        Path(a.markdown).write_text("\n".join(markdown(res)))
    failed = [f"{r['client']}/{r['mode']}" for r in res["rows"] if not r["ok"]]
    if failed:
        log(f"rebalance: rows failed: {', '.join(failed)} (reported in the table)")


if __name__ == "__main__":
    sys.exit(main())
