#!/usr/bin/env python3
"""Benchmark harness behind `make bench` and `make bench-smoke` (issue 7).

On one broker, in one run, with the same topic layout and records:

* producers: ours, Kafka's ProducerPerformance (Java, the broker's jars),
  librdkafka twice (kcat from Debian; the confluent-kafka wheel driven from
  a tight loop), and the Python prototype's approach (kafka-python, one
  synchronous send at a time, and with async sends, on fewer records);
* consumers: ours (a group member that commits; per-record logging off, and
  on with stdout to /dev/null), Kafka's ConsumerPerformance, kcat in a
  group, confluent-kafka in a group, all reading the same pre-produced topic;
* ours alone: process start to /readyz 200 (tight poll loop), binary sizes,
  and peak RSS of the producer at N and 10 N records (memory is bounded by
  the in-flight limits, not the record count: the peak may grow by less than
  6 MB between the two; a failure fails the run).

Every client runs as a child process under GNU time (/usr/bin/time): CPU
seconds and peak RSS are the kernel's rusage of that process (for Java the
JVM, for Python the interpreter). A fresh topic per producer run;
each run's record count is checked against the topic's offsets.

Modes: `full` (scripts/bench.sh; writes docs/bench/results.json, then
bench/report.py writes BENCHMARKS.md and the charts) and `smoke` (tiny
counts, one repetition; asserts only that every tool ran and produced
numbers). BENCH_* environment variables override the sizes (see PROFILES
and `env_overrides`).
"""

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLIENTS = BENCH / "clients"
PY = sys.executable
# The static musl binaries (scripts/build-static.sh): their size is the
# scratch image's; start to ready is measured for them too.
STATIC_DIR = Path(os.environ.get("BENCH_STATIC_DIR", ROOT / "target/static"))

# The producer's peak RSS may grow by less than this (MB) from N to 10 N
# records (see Bench.memory).
MEMORY_GROWTH_LIMIT_MB = 6

PROFILES = {
    "full": {
        "reps": 3,
        "records": 200_000,           # ours, Java, kcat, confluent-kafka
        "py_async_records": 50_000,   # kafka-python async: scaled down
        "py_sync_records": 2_000,     # kafka-python one-at-a-time: scaled down
        "consumer_records": 500_000,
        "sizes": [128, 1024],
        "compressions": ["none", "lz4"],
        "partitions": [1, 6],
        "ready_n": 10,
        "memory_records": 2_000_000,  # ours, peak RSS at this and 10x as many
        "run_timeout": 180,
        "budget_secs": 5400,
    },
    "smoke": {
        "reps": 1,
        "records": 2_000,
        "py_async_records": 1_000,
        "py_sync_records": 100,
        "consumer_records": 2_000,
        "sizes": [128],
        "compressions": ["lz4"],
        "partitions": [6],
        "ready_n": 2,
        "memory_records": 200_000,   # past the in-flight bounds (4 MiB ≈ 30 k records of 128 B)
        "run_timeout": 60,
        "budget_secs": 240,
    },
}

PRODUCER_TOOLS = ["ours", "java", "kcat", "rdkafka-py", "kafka-python-async", "kafka-python-sync",
                  "ours-static"]
CONSUMER_TOOLS = ["ours", "ours-logging", "java", "kcat", "rdkafka-py", "ours-static"]
# "ours-static": the same code as the static musl binaries the images ship
# (BENCH_STATIC_DIR, default target/static); skipped with a note when absent.


LABELS = {
    "producer": {
        "ours": "ours (producer)",
        "ours-static": "ours, static musl build (the image)",
        "java": "Kafka ProducerPerformance (Java)",
        "kcat": "kcat (librdkafka, C)",
        "rdkafka-py": "confluent-kafka (librdkafka)",
        "kafka-python-async": "kafka-python, async sends",
        "kafka-python-sync": "kafka-python, sync sends (prototype)",
    },
    "consumer": {
        "ours": "ours (consumer), record log off",
        "ours-logging": "ours (consumer), record log on > /dev/null",
        "ours-static": "ours, static musl build (the image), record log off",
        "java": "Kafka ConsumerPerformance (Java)",
        "kcat": "kcat -G (librdkafka, C)",
        "rdkafka-py": "confluent-kafka (librdkafka)",
    },
}


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def image_env(tool):
    """The environment the images set (Dockerfile.*: ENV) for the static rows."""
    return {"MIMALLOC_PURGE_DELAY": "10"} if tool == "ours-static" else {}


def env_overrides(cfg):
    ints = {
        "BENCH_REPS": "reps",
        "BENCH_RECORDS": "records",
        "BENCH_PY_ASYNC_RECORDS": "py_async_records",
        "BENCH_PY_SYNC_RECORDS": "py_sync_records",
        "BENCH_CONSUMER_RECORDS": "consumer_records",
        "BENCH_READY_N": "ready_n",
        "BENCH_MEMORY_RECORDS": "memory_records",
        "BENCH_RUN_TIMEOUT": "run_timeout",
        "BENCH_BUDGET_SECS": "budget_secs",
    }
    for var, key in ints.items():
        if os.environ.get(var):
            cfg[key] = int(os.environ[var])
    if os.environ.get("BENCH_SIZES"):
        cfg["sizes"] = [int(x) for x in os.environ["BENCH_SIZES"].split(",")]
    if os.environ.get("BENCH_COMPRESSIONS"):
        cfg["compressions"] = os.environ["BENCH_COMPRESSIONS"].split(",")
    if os.environ.get("BENCH_PARTITIONS"):
        cfg["partitions"] = [int(x) for x in os.environ["BENCH_PARTITIONS"].split(",")]
    cfg["producer_tools"] = os.environ.get("BENCH_PRODUCER_TOOLS", ",".join(PRODUCER_TOOLS)).split(",")
    cfg["consumer_tools"] = os.environ.get("BENCH_CONSUMER_TOOLS", ",".join(CONSUMER_TOOLS)).split(",")
    return cfg


# --------------------------------------------------------------------------
# Processes


class Run:
    """A child process in its own session, measured by GNU time.

    CPU seconds and peak RSS come from GNU time's wait4() rusage of the
    command (for Java the JVM, for Python the interpreter), not from our own
    wait4(): a child forked from this Python process would start with the
    harness's RSS as its high-water mark, so a small intermediary forks it.
    """

    def __init__(self, cmd, env=None, stdout=None, stderr=None, cwd=ROOT):
        self.cmd = [str(c) for c in cmd]
        full_env = dict(os.environ)
        full_env.update(env or {})
        fd, self.usage_file = tempfile.mkstemp(prefix="bench-usage-")
        os.close(fd)
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            ["/usr/bin/time", "-f", "usage %e %U %S %M", "-o", self.usage_file, *self.cmd],
            env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=stdout, stderr=stderr, start_new_session=True,
        )
        self.done = threading.Event()
        self.t1 = None
        self.usage = None
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self):
        self.proc.wait()
        self.t1 = time.perf_counter()
        try:
            with open(self.usage_file) as f:
                for line in f:
                    if line.startswith("usage "):
                        _, _, user, system, kb = line.split()
                        self.usage = (float(user) + float(system), int(kb) / 1024)
        finally:
            os.unlink(self.usage_file)
        self.done.set()

    def signal(self, sig):
        """Sends sig to the command (GNU time's child), not to GNU time."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                for pid in f.read().split():
                    os.kill(int(pid), sig)
        except (FileNotFoundError, ProcessLookupError):
            pass

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout):
        """Waits; on timeout kills the process group. Returns True if it ended by itself."""
        if self.done.wait(timeout):
            return True
        self.kill()
        self.done.wait(10)
        return False

    @property
    def rc(self):
        return self.proc.returncode

    @property
    def wall(self):
        return (self.t1 or time.perf_counter()) - self.t0

    @property
    def cpu(self):
        return self.usage[0] if self.usage else None

    @property
    def maxrss_mb(self):
        return self.usage[1] if self.usage else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=1.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def consumed_total(port):
    try:
        status, body = http_get(port, "/metrics")
    except OSError:
        return None
    if status != 200:
        return None
    n = 0
    for line in body.splitlines():
        if line.startswith("kafka_consumer_records_consumed_total{"):
            n += float(line.rsplit(" ", 1)[1])
    return int(n)


# --------------------------------------------------------------------------
# Broker side


class Broker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.wm = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks",
                            "enable.auto.commit": False})

    def create_topic(self, name, partitions):
        fs = self.admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=30)
        fs[name].result(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            md = self.admin.list_topics(name, timeout=10)
            t = md.topics.get(name)
            if t and t.error is None and len(t.partitions) == partitions and all(
                    p.leader >= 0 for p in t.partitions.values()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"topic {name} has no leaders after 30 s")

    def delete_topic(self, name):
        try:
            self.admin.delete_topics([name], operation_timeout=30)[name].result(timeout=60)
        except Exception as e:  # noqa: BLE001 - a leftover topic is not fatal
            log(f"deleting {name}: {e}")

    def count(self, name, partitions):
        n = 0
        for p in range(partitions):
            lo, hi = self.wm.get_watermark_offsets(TopicPartition(name, p), timeout=10)
            n += hi - lo
        return n


# --------------------------------------------------------------------------
# Records


def write_records(path, size, n, run_id):
    """n demo records (the producer's JSON shape and padding pattern) of exactly size bytes, one per line."""
    sent_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    pattern = "abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 2)
    with open(path, "w", encoding="ascii") as f:
        for seq in range(n):
            head = f'{{"run_id":"{run_id}","seq":{seq},"sent_at":"{sent_at}","payload":"'
            pad = size - len(head) - 2
            f.write(head + pattern[:max(pad, 0)] + '"}\n')


# --------------------------------------------------------------------------
# Producers


def parse_ours_summary(text):
    for line in reversed(text.splitlines()):
        if '"message":"summary"' in line:
            s = json.loads(line)
            return {
                "records": int(s["acked"]),
                "seconds": float(s["seconds"]),
                "ack_p50_ms": float(s["ack_p50_ms"]),
                "ack_p99_ms": float(s["ack_p99_ms"]),
            }
    return None


JAVA_PRODUCER = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th")


def parse_java_producer(text):
    m = None
    for m in JAVA_PRODUCER.finditer(text):
        pass
    if not m:
        return None
    n, rate = int(m.group(1)), float(m.group(2))
    return {"records": n, "seconds": n / rate if rate else None,
            "ack_p50_ms": float(m.group(6)), "ack_p99_ms": float(m.group(8))}


def last_json(text):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


class Bench:
    def __init__(self, mode, cfg, bin_dir, out, bootstrap):
        self.mode = mode
        self.cfg = cfg
        self.bin = Path(bin_dir)
        self.out = Path(out)
        self.tmp = self.out / "tmp"
        self.logs = self.out / "logs"
        self.broker = Broker(bootstrap)
        self.bootstrap = bootstrap
        self.deadline = time.monotonic() + cfg["budget_secs"]
        self.tag = uuid.uuid4().hex[:6]
        self.results = {"producer": [], "consumer": [], "ready": {}, "commands": {}}
        self.pool = {}
        self.lines = {}

    # -- helpers ----------------------------------------------------------

    def over_budget(self):
        return time.monotonic() > self.deadline

    def logfiles(self, name):
        return open(self.logs / f"{name}.out", "w+b"), open(self.logs / f"{name}.err", "w+b")

    @staticmethod
    def read(f):
        f.flush()
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    def records_for(self, tool):
        if tool == "kafka-python-async":
            return min(self.cfg["py_async_records"], self.cfg["records"])
        if tool == "kafka-python-sync":
            return min(self.cfg["py_sync_records"], self.cfg["records"])
        return self.cfg["records"]

    def prepare_records(self):
        run_id = str(uuid.uuid4())
        for size in self.cfg["sizes"]:
            pool = self.tmp / f"pool-{size}.txt"
            write_records(pool, size, 1000, run_id)
            self.pool[size] = pool
            if "kcat" in self.cfg["producer_tools"]:
                lines = self.tmp / f"records-{size}.txt"
                write_records(lines, size, self.cfg["records"], run_id)
                self.lines[size] = lines

    # -- producer ---------------------------------------------------------

    def producer_cmd(self, tool, topic, n, size, comp, timeout):
        bs = self.bootstrap
        if tool in ("ours", "ours-static"):
            cmd = [self.bin_for(tool) / "producer", "--messages", n, "--record-size", size, "--topic", topic,
                   "--compression", comp, "--timeout", timeout, "--progress-secs", 3600]
            env = {"KAFKA_BOOTSTRAP_SERVER": bs, "HTTP_ADDR": "127.0.0.1:0", "LOG_FORMAT": "json",
                   "RUST_LOG": "info"}
            env.update(image_env(tool))
            return cmd, env
        if tool == "java":
            return ([ROOT / "scripts/kafka-tool.sh", "producer-perf-test", "--bootstrap-server", bs,
                     "--topic", topic, "--num-records", n, "--payload-file", self.pool[size],
                     "--throughput", -1, "--command-property", "acks=all", f"compression.type={comp}"],
                    self.java_env())
        if tool == "kcat":
            cmd = ["kcat", "-P", "-b", bs, "-t", topic, "-X", "acks=all"]
            if comp != "none":
                cmd += ["-z", comp]
            return (cmd + ["-l", self.lines[size]], {})
        if tool == "rdkafka-py":
            return ([PY, CLIENTS / "rdkafka_producer.py", "--bootstrap", bs, "--topic", topic,
                     "--records", n, "--pool", self.pool[size], "--compression", comp], {})
        if tool.startswith("kafka-python-"):
            return ([PY, CLIENTS / "kafkapython_producer.py", "--bootstrap", bs, "--topic", topic,
                     "--records", n, "--pool", self.pool[size], "--compression", comp,
                     "--mode", tool.rsplit("-", 1)[1]], {})
        raise ValueError(tool)

    def bin_for(self, tool):
        if tool != "ours-static":
            return self.bin
        if not (STATIC_DIR / "producer").exists() or not (STATIC_DIR / "consumer").exists():
            raise RuntimeError(f"no static binaries in {STATIC_DIR} (scripts/build-static.sh)")
        return STATIC_DIR

    def run_producer(self, tool, size, comp, parts, rep, n=None, timeout=None):
        n = n or self.records_for(tool)
        timeout = timeout or self.cfg["run_timeout"]
        topic = f"bench-{self.tag}-p-{tool}-{size}-{comp}-{parts}-{rep}-{n}"
        row = {"tool": tool, "size": size, "compression": comp, "partitions": parts, "rep": rep,
               "records": n, "ok": False}
        if self.over_budget():
            row["error"] = "skipped: time budget used up"
            return row
        try:
            cmd, env = self.producer_cmd(tool, topic, n, size, comp, timeout)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            row["error"] = f"cannot run: {e}"
            return row
        self.broker.create_topic(topic, parts)
        shown = " ".join([f"{k}={v}" for k, v in image_env(tool).items()] + [str(c) for c in cmd])
        self.results["commands"].setdefault(f"producer/{tool}", shown)
        out, err = self.logfiles(f"producer-{tool}-{size}-{comp}-{parts}-{rep}-{n}")
        try:
            r = Run(cmd, env, stdout=out, stderr=err)
            ended = r.wait(timeout)
            text = self.read(out) + "\n" + self.read(err)
            row.update(wall_s=r.wall, cpu_s=r.cpu, rss_mb=r.maxrss_mb, rc=r.rc)
            if not ended:
                row["error"] = f"timed out after {timeout} s"
                return row
            if r.rc != 0:
                row["error"] = f"exit {r.rc}: {text.strip()[-300:]}"
                return row
            if tool.startswith("ours"):
                parsed = parse_ours_summary(text)
            elif tool == "java":
                parsed = parse_java_producer(text)
            elif tool == "kcat":
                parsed = {"records": n, "seconds": r.wall}  # no own timing: process start to exit
            else:
                j = last_json(self.read(out))
                parsed = j and {k: j.get(k) for k in ("records", "seconds", "ack_p50_ms", "ack_p99_ms")}
                if j and (j.get("errors") or j.get("not_flushed")):
                    row["error"] = f"delivery errors: {j}"
                    return row
            if not parsed or not parsed.get("seconds"):
                row["error"] = f"no result in output: {text.strip()[-300:]}"
                return row
            on_broker = self.broker.count(topic, parts)
            if on_broker != n:
                row["error"] = f"{on_broker} records on the broker, expected {n}"
                return row
            rate = n / parsed["seconds"]
            row.update(ok=True, seconds=parsed["seconds"], rate=rate, mb_s=rate * size / 1e6,
                       wall_rate=n / r.wall, ack_p50_ms=parsed.get("ack_p50_ms"),
                       ack_p99_ms=parsed.get("ack_p99_ms"),
                       cpu_s_per_m=r.cpu / n * 1e6)
            return row
        finally:
            out.close()
            err.close()
            self.broker.delete_topic(topic)

    def producers(self):
        cases = [(s, c, p) for s in self.cfg["sizes"] for c in self.cfg["compressions"]
                 for p in self.cfg["partitions"]]
        tools = self.cfg["producer_tools"]
        for rep in range(self.cfg["reps"]):
            order = tools[rep % len(tools):] + tools[:rep % len(tools)]
            for size, comp, parts in cases:
                for tool in order:
                    row = self.run_producer(tool, size, comp, parts, rep)
                    self.results["producer"].append(row)
                    log(f"producer rep {rep + 1} {size} B {comp} {parts}p {tool}: " + (
                        f"{row['rate']:,.0f} rec/s, cpu {row['cpu_s']:.2f} s, rss {row['rss_mb']:.1f} MB"
                        if row["ok"] else row.get("error", "?")))

    def memory(self):
        """Our producer's peak RSS is flat in the record count (issue 13).

        The runs at N and 10 N records are compared by how much the peak
        grows, in MB, not by a ratio: the peak's normal spread (how many
        requests happen to be on the wire, the allocator's arenas) is a few
        MB whatever the count, and a 10 % ratio sat inside it (2.6 MB over a
        23.6 MB run failed once). A leak is far above the limit: the
        unbounded histogram buffer this guards against raised the peak by
        69 % from 2 M to 20 M records (about 16 MB), and state kept per
        record (8 bytes or more) adds at least 14 MB over 1.8 M extra
        records. The median of
        the repetitions is compared."""
        n = self.cfg["memory_records"]
        # Ten times the records at a few hundred thousand a second.
        timeout = max(self.cfg["run_timeout"], n * 10 // 50_000)
        runs = {}
        for label, count in (("small", n), ("large", 10 * n)):
            rows = [self.run_producer("ours", 128, "none", 6, rep, n=count, timeout=timeout)
                    for rep in range(self.cfg["reps"])]
            ok = [r for r in rows if r["ok"]]
            runs[label] = {
                "records": count,
                "rss_mb": statistics.median(r["rss_mb"] for r in ok) if ok else None,
                "rss_mb_all": [r.get("rss_mb") for r in rows],
                "rate": statistics.median(r["rate"] for r in ok) if ok else None,
                "ok": len(ok) == len(rows),
                "error": "; ".join(r["error"] for r in rows if r.get("error")) or None,
            }
            log(f"memory {count:,} records: peak RSS {runs[label]['rss_mb_all']} MB")
        small, large = runs["small"], runs["large"]
        measured = small["ok"] and large["ok"]
        ratio = large["rss_mb"] / small["rss_mb"] if measured else None
        growth = large["rss_mb"] - small["rss_mb"] if measured else None
        skipped = any((r["error"] or "").startswith("skipped") for r in (small, large))
        self.results["memory"] = {
            "small": small, "large": large, "ratio": ratio, "growth_mb": growth,
            "skipped": skipped, "limit_growth_mb": MEMORY_GROWTH_LIMIT_MB,
            "ok": skipped or (growth is not None and growth < MEMORY_GROWTH_LIMIT_MB),
        }
        log(f"memory: median peak RSS grew {growth:.2f} MB from {small['records']:,} to {large['records']:,} "
            f"records ({ratio:.3f}x; limit {MEMORY_GROWTH_LIMIT_MB} MB)" if measured
            else "memory: skipped, the time budget is used up" if skipped else "memory: a run failed")

    # -- consumer ---------------------------------------------------------

    def consumer_topic(self, size, comp, parts):
        """Pre-produces a topic with our producer (demo records); returns its name."""
        n = self.cfg["consumer_records"]
        topic = f"bench-{self.tag}-c-{size}-{comp}-{parts}"
        self.broker.create_topic(topic, parts)
        cmd = [self.bin / "producer", "--messages", n, "--record-size", size, "--topic", topic,
               "--compression", comp, "--timeout", max(self.cfg["run_timeout"], 300), "--progress-secs", 3600]
        out, err = self.logfiles(f"preproduce-{size}-{comp}-{parts}")
        with out, err:
            r = Run(cmd, {"KAFKA_BOOTSTRAP_SERVER": self.bootstrap, "HTTP_ADDR": "127.0.0.1:0",
                          "LOG_FORMAT": "json"}, stdout=out, stderr=err)
            if not r.wait(max(self.cfg["run_timeout"], 300) + 30) or r.rc != 0:
                raise RuntimeError(f"pre-producing {topic} failed: {self.read(out)[-500:]}")
        got = self.broker.count(topic, parts)
        if got != n:
            raise RuntimeError(f"pre-produced {got} records into {topic}, expected {n}")
        return topic

    def run_ours_consumer(self, tool, topic, n, row):
        port = free_port()
        group = f"{topic}-{tool}-{uuid.uuid4().hex[:6]}"
        env = {"KAFKA_BOOTSTRAP_SERVER": self.bootstrap, "KAFKA_TOPIC": topic,
               "KAFKA_CONSUMER_GROUP": group, "HTTP_ADDR": f"127.0.0.1:{port}", "LOG_FORMAT": "json",
               "RUST_LOG": "info" if tool == "ours-logging" else "info,consumer::record=off"}
        env.update(image_env(tool))
        try:
            binary = self.bin_for(tool) / "consumer"
        except RuntimeError as e:
            row["error"] = f"cannot run: {e}"
            return row
        out, err = self.logfiles(f"consumer-{tool}-{topic}-{row['rep']}")
        with out, err:
            stdout = subprocess.DEVNULL if tool == "ours-logging" else out
            r = Run([binary], env, stdout=stdout, stderr=err)
            deadline = time.perf_counter() + self.cfg["run_timeout"]
            first = None
            last = None
            # Poll the consumed counter every 20 ms (the harness's own CPU
            # cost is one small HTTP request per poll).
            while time.perf_counter() < deadline and not r.done.is_set():
                c = consumed_total(port)
                now = time.perf_counter()
                if c:
                    if first is None:
                        first = (now, c)
                    last = (now, c)
                    if c >= n:
                        break
                time.sleep(0.02)
            r.signal(signal.SIGTERM)
            ended = r.wait(30)
            text = self.read(out) + "\n" + self.read(err)
            row.update(wall_s=r.wall, cpu_s=r.cpu, rss_mb=r.maxrss_mb, rc=r.rc)
            if not last or last[1] < n:
                row["error"] = f"consumed {last[1] if last else 0} of {n} in {self.cfg['run_timeout']} s: {text[-300:]}"
                return row
            if not ended or r.rc != 0:
                row["error"] = f"did not stop cleanly on SIGTERM (exit {r.rc}): {text[-300:]}"
                return row
            timed = last[1] - first[1]
            secs = last[0] - first[0]
            if timed <= 0 or secs <= 0:
                # Everything arrived between two polls: fall back to start -> done.
                timed, secs = n, last[0] - r.t0
            row.update(ok=True, seconds=secs, rate=timed / secs, wall_rate=n / (last[0] - r.t0))
            return row

    def java_env(self):
        """Smoke runs start the JVM tools fast (C1 only, serial GC); full runs use kafka-tool.sh's perf-test default (full JIT)."""
        return {"KAFKA_TOOL_OPTS": "-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"} if self.mode == "smoke" else {}

    def consumer_cmd(self, tool, topic, n, group):
        bs = self.bootstrap
        if tool == "java":
            return [ROOT / "scripts/kafka-tool.sh", "consumer-perf-test", "--bootstrap-server", bs,
                    "--topic", topic, "--num-records", n, "--group", group,
                    "--timeout", self.cfg["run_timeout"] * 1000]
        if tool == "kcat":
            return ["kcat", "-C", "-b", bs, "-G", group, "-X", "auto.offset.reset=earliest", "-e", topic]
        if tool == "rdkafka-py":
            return [PY, CLIENTS / "rdkafka_consumer.py", "--bootstrap", bs, "--topic", topic,
                    "--group", group, "--records", n, "--timeout", self.cfg["run_timeout"]]
        raise ValueError(tool)

    def run_consumer(self, tool, topic, size, comp, parts, rep):
        n = self.cfg["consumer_records"]
        row = {"tool": tool, "size": size, "compression": comp, "partitions": parts, "rep": rep,
               "records": n, "ok": False}
        if self.over_budget():
            row["error"] = "skipped: time budget used up"
            return row
        if tool.startswith("ours"):
            extra = {"ours-logging": "RUST_LOG=info, stdout > /dev/null",
                     "ours-static": "RUST_LOG=info,consumer::record=off MIMALLOC_PURGE_DELAY=10 as in the image"}
            self.results["commands"].setdefault(
                f"consumer/{tool}", f"{(STATIC_DIR if tool == 'ours-static' else self.bin) / 'consumer'} (KAFKA_TOPIC, KAFKA_CONSUMER_GROUP, HTTP_ADDR, "
                + extra.get(tool, "RUST_LOG=info,consumer::record=off") + ")")
            self.run_ours_consumer(tool, topic, n, row)
        else:
            group = f"{topic}-{tool}-{uuid.uuid4().hex[:6]}"
            cmd = self.consumer_cmd(tool, topic, n, group)
            self.results["commands"].setdefault(f"consumer/{tool}", " ".join(str(c) for c in cmd))
            out, err = self.logfiles(f"consumer-{tool}-{topic}-{rep}")
            with out, err:
                r = Run(cmd, self.java_env() if tool == "java" else None,
                        stdout=subprocess.DEVNULL if tool == "kcat" else out, stderr=err)
                ended = r.wait(self.cfg["run_timeout"] + 30)
                row.update(wall_s=r.wall, cpu_s=r.cpu, rss_mb=r.maxrss_mb, rc=r.rc)
                text = self.read(out) + "\n" + self.read(err)
                if not ended or r.rc != 0:
                    row["error"] = f"exit {r.rc} (ended: {ended}): {text[-300:]}"
                    return row
                parsed = None
                if tool == "java":
                    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg,
                    # nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
                    for line in reversed(text.splitlines()):
                        f = [x.strip() for x in line.split(",")]
                        if len(f) >= 10 and re.fullmatch(r"\d+", f[4] or ""):
                            got, fetch_ms = int(f[4]), float(f[7])
                            parsed = {"records": got, "timed": got, "seconds": fetch_ms / 1e3,
                                      "join_s": float(f[6]) / 1e3}
                            break
                elif tool == "kcat":
                    ends = re.findall(r"Reached end of topic \S+ \[\d+\] at offset (\d+)", text)
                    got = sum(int(x) for x in ends)
                    parsed = {"records": got, "timed": got, "seconds": r.wall}
                else:
                    j = last_json(self.read(out))
                    if j and j.get("seconds"):
                        parsed = {"records": j["records"], "timed": j["timed_records"],
                                  "seconds": j["seconds"], "join_s": j.get("join_seconds")}
                if not parsed or not parsed["seconds"]:
                    row["error"] = f"no result in output: {text[-300:]}"
                    return row
                if parsed["records"] != n:
                    row["error"] = f"consumed {parsed['records']} of {n}"
                    return row
                if parsed["timed"] <= 0:
                    # Everything came in the first batch (tiny runs): process start to exit.
                    parsed.update(timed=n, seconds=r.wall)
                row.update(ok=True, seconds=parsed["seconds"], rate=parsed["timed"] / parsed["seconds"],
                           wall_rate=n / r.wall, join_s=parsed.get("join_s"))
        if row["ok"]:
            row.update(mb_s=row["rate"] * size / 1e6, cpu_s_per_m=row["cpu_s"] / n * 1e6)
        return row

    def consumers(self):
        cases = [(s, c, p) for s in self.cfg["sizes"] for c in self.cfg["compressions"]
                 for p in self.cfg["partitions"]]
        tools = self.cfg["consumer_tools"]
        topics = {}
        try:
            for case in cases:
                if self.over_budget():
                    break
                t0 = time.perf_counter()
                topics[case] = self.consumer_topic(*case)
                log(f"pre-produced {self.cfg['consumer_records']} records into {topics[case]} "
                    f"in {time.perf_counter() - t0:.1f} s")
            for rep in range(self.cfg["reps"]):
                order = tools[rep % len(tools):] + tools[:rep % len(tools)]
                for case in cases:
                    for tool in order:
                        if case not in topics:
                            row = {"tool": tool, "size": case[0], "compression": case[1],
                                   "partitions": case[2], "rep": rep, "ok": False,
                                   "error": "skipped: time budget used up"}
                        else:
                            row = self.run_consumer(tool, topics[case], *case, rep)
                        self.results["consumer"].append(row)
                        log(f"consumer rep {rep + 1} {case[0]} B {case[1]} {case[2]}p {tool}: " + (
                            f"{row['rate']:,.0f} rec/s, cpu {row['cpu_s']:.2f} s, rss {row['rss_mb']:.1f} MB"
                            if row["ok"] else row.get("error", "?")))
        finally:
            for t in topics.values():
                self.broker.delete_topic(t)

    # -- start to ready ---------------------------------------------------

    def time_to_ready(self, cmd, env, port, name, timeout=15):
        out, err = self.logfiles(f"ready-{name}")
        with out, err:
            r = Run(cmd, env, stdout=out, stderr=err)
            ready = None
            while time.perf_counter() - r.t0 < timeout and not r.done.is_set():
                try:
                    status, _ = http_get(port, "/readyz", timeout=0.5)
                    if status == 200:
                        ready = time.perf_counter() - r.t0
                        break
                except OSError:
                    pass
                time.sleep(0.001)
            r.signal(signal.SIGTERM)
            r.wait(30)
            if ready is None:
                log(f"{name}: not ready within {timeout} s: {self.read(out)[-300:]}")
            return ready

    def readiness(self):
        """Start to /readyz 200 for our build, and for the static musl binaries (what the images ship) when present."""
        res = {}
        builds = [self.bin]
        static = STATIC_DIR
        if (static / "producer").exists() and (static / "consumer").exists() and static.resolve() != self.bin.resolve():
            builds.append(static)
        for bin_dir in builds:
            name = bin_dir.resolve().relative_to(ROOT) if bin_dir.resolve().is_relative_to(ROOT) else bin_dir
            for svc, xs in self.readiness_of(bin_dir).items():
                res[f"{svc} ({name})"] = xs
        self.results["ready"] = res
        log("start to /readyz 200 (ms): " + ", ".join(
            f"{k} median {statistics.median([x for x in v if x] or [float('nan')]):.1f}"
            for k, v in res.items()))

    def readiness_of(self, bin_dir):
        n = self.cfg["ready_n"]
        topic = f"bench-{self.tag}-ready-{uuid.uuid4().hex[:4]}"
        self.broker.create_topic(topic, 6)
        try:
            # A few records so the consumer has something to be ready on.
            with open(self.logs / "ready-seed.out", "wb") as out:
                r = Run([bin_dir / "producer", "--messages", 600, "--record-size", 128, "--topic", topic],
                        {"KAFKA_BOOTSTRAP_SERVER": self.bootstrap, "HTTP_ADDR": "127.0.0.1:0"},
                        stdout=out, stderr=subprocess.STDOUT)
                r.wait(60)
            res = {"producer": [], "consumer": []}
            for i in range(n):
                if self.over_budget():
                    break
                port = free_port()
                ms = self.time_to_ready(
                    [bin_dir / "producer", "--messages", 100_000, "--rate", 1000, "--record-size", 128,
                     "--topic", topic, "--timeout", 60],
                    {"KAFKA_BOOTSTRAP_SERVER": self.bootstrap, "HTTP_ADDR": f"127.0.0.1:{port}",
                     "LOG_FORMAT": "json"}, port, f"producer-{i}")
                res["producer"].append(ms and ms * 1e3)
                port = free_port()
                ms = self.time_to_ready(
                    [bin_dir / "consumer"],
                    {"KAFKA_BOOTSTRAP_SERVER": self.bootstrap, "HTTP_ADDR": f"127.0.0.1:{port}",
                     "KAFKA_TOPIC": topic, "KAFKA_CONSUMER_GROUP": f"{topic}-{i}", "LOG_FORMAT": "json",
                     "RUST_LOG": "info,consumer::record=off"}, port, f"consumer-{i}")
                res["consumer"].append(ms and ms * 1e3)
            return res
        finally:
            self.broker.delete_topic(topic)


# --------------------------------------------------------------------------
# Facts about the run


def cmd_output(cmd, timeout=60):
    try:
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"


def machine():
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "os": cmd_output(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])}


def busy_processes():
    out = cmd_output(["ps", "-eo", "pcpu=,comm="])
    busy = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1] in ("cargo", "rustc", "cc1", "cc1plus", "ld", "javac", "mvn", "clippy-driver"):
            busy.append(parts[1])
    return sorted(set(busy))


def versions(bin_dir):
    import confluent_kafka
    from importlib.metadata import version as pkg_version

    kcat = cmd_output(["kcat", "-V"])
    m = re.search(r"Version (\S+) \((?:.*?)librdkafka (\S+)", kcat)
    java = cmd_output(["java", "-version"]).splitlines()
    kafka_jar = sorted((Path.home() / ".m2/repository/org/apache/kafka/kafka-clients").glob("*/kafka-clients-*.jar"))
    return {
        "ours": cmd_output([Path(bin_dir) / "producer", "--version"]),
        "ours_git": cmd_output(["git", "describe", "--always", "--dirty"]),
        "rustc": cmd_output(["rustc", "-V"]),
        "kafka": kafka_jar[-1].parent.name if kafka_jar else "?",
        "java": java[0] if java else "?",
        "kcat": f"kcat {m.group(1)}, librdkafka {m.group(2)}" if m else kcat[:80],
        "confluent_kafka": f"confluent-kafka {confluent_kafka.version()[0]}, librdkafka {confluent_kafka.libversion()[0]}",
        "kafka_python": f"kafka-python {pkg_version('kafka-python')}",
        "python": platform.python_version(),
    }


def du(path):
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            fp = Path(root) / f
            if not fp.is_symlink():
                total += fp.stat().st_size
    return total


def sizes(bin_dir):
    out = {}
    static = STATIC_DIR
    for b in ("producer", "consumer"):
        if (static / b).exists():
            out[f"ours {b} (static musl, = scratch image)"] = (static / b).stat().st_size
        if (Path(bin_dir) / b).exists():
            out[f"ours {b} ({Path(bin_dir).name} build, host)"] = (Path(bin_dir) / b).stat().st_size
    kcat = shutil.which("kcat")
    if kcat:
        libs = re.findall(r"=> (\S+)", cmd_output(["ldd", kcat]))
        rd = [lib for lib in libs if "rdkafka" in lib]
        out["kcat + librdkafka.so"] = Path(kcat).stat().st_size + sum(Path(x).stat().st_size for x in rd)
        out["kcat + all shared libraries (ldd)"] = Path(kcat).stat().st_size + sum(
            Path(x).stat().st_size for x in libs if Path(x).exists())
    import confluent_kafka
    import kafka
    ck = Path(confluent_kafka.__file__).parent
    out["confluent-kafka package (incl. librdkafka), without CPython"] = du(ck) + sum(
        du(p) for p in ck.parent.glob("confluent_kafka.libs"))
    out["kafka-python package, without CPython"] = du(Path(kafka.__file__).parent)
    out["CPython runtime (sys.prefix, du)"] = du(Path(sys.base_prefix) / "lib") + du(Path(sys.base_prefix) / "bin")
    java_home = cmd_output(["java", "-XshowSettings:properties", "-version"])
    m = re.search(r"java\.home = (\S+)", java_home)
    m2 = Path.home() / ".m2/repository/org/apache/kafka/kafka-clients"
    jars = sorted(m2.glob("*/kafka-clients-*.jar"))
    if jars:
        out["kafka-clients jar (+ lz4, zstd-jni, snappy, slf4j), without a JRE"] = jars[-1].stat().st_size + sum(
            j.stat().st_size for pat in ("at/yawk/lz4", "com/github/luben/zstd-jni", "org/xerial/snappy",
                                         "org/slf4j/slf4j-api")
            for j in sorted((Path.home() / ".m2/repository" / pat).glob("*/*.jar"))[-1:])
    if m:
        out["JDK runtime (java.home, du)"] = du(m.group(1))
    return out


# --------------------------------------------------------------------------


def check_smoke(results):
    """Every tool ran and produced numbers: the only thing the smoke run asserts."""
    problems = []
    for kind in ("producer", "consumer"):
        for tool in results["config"][f"{kind}_tools"]:
            rows = [r for r in results[kind] if r["tool"] == tool]
            # CPU of a tiny run can round to 0.00 s; the rest must be positive.
            ok = [r for r in rows if r["ok"] and isinstance(r.get("cpu_s"), (int, float)) and all(
                isinstance(r.get(k), (int, float)) and r[k] > 0 for k in ("rate", "rss_mb", "wall_s"))]
            if not ok:
                why = "; ".join(r.get("error", "no numbers") for r in rows) or "not run"
                problems.append(f"{kind} {tool}: {why}")
    for svc in ("producer", "consumer"):
        if not [x for k, v in results["ready"].items() if k.startswith(svc) for x in v if x]:
            problems.append(f"start to /readyz: no measurement for {svc}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=PROFILES, default="full")
    ap.add_argument("--bin-dir", default=str(ROOT / "target/release"))
    ap.add_argument("--out", help="results directory (default: docs/bench for full, target/bench-smoke for smoke)")
    ap.add_argument("--bootstrap", default=os.environ.get("BENCH_BOOTSTRAP", "127.0.0.1:19092"))
    ap.add_argument("--only", choices=["producer", "consumer", "ready", "memory"], action="append",
                    help="run only these parts (repeatable)")
    a = ap.parse_args()

    cfg = env_overrides(dict(PROFILES[a.mode]))
    if not ((STATIC_DIR / "producer").exists() and (STATIC_DIR / "consumer").exists()):
        # make test runs before the static build: no static rows then.
        log(f"no static binaries in {STATIC_DIR}: leaving out the ours-static rows")
        for k in ("producer_tools", "consumer_tools"):
            cfg[k] = [t for t in cfg[k] if t != "ours-static"]
    out = Path(a.out or (ROOT / ("docs/bench" if a.mode == "full" else "target/bench-smoke")))
    work = ROOT / "target" / f"bench-{a.mode}"
    for d in (out, work / "tmp", work / "logs"):
        d.mkdir(parents=True, exist_ok=True)
    for b in ("producer", "consumer"):
        if not (Path(a.bin_dir) / b).exists():
            sys.exit(f"bench: {Path(a.bin_dir) / b} missing (cargo build --release -p producer -p consumer)")

    bench = Bench(a.mode, cfg, a.bin_dir, work, a.bootstrap)
    started = time.time()
    results = bench.results
    results.update(
        mode=a.mode, config=cfg, bootstrap=a.bootstrap, bin_dir=str(Path(a.bin_dir).relative_to(ROOT))
        if Path(a.bin_dir).is_relative_to(ROOT) else a.bin_dir,
        started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        machine=machine(), load_start=list(os.getloadavg()), busy_start=busy_processes(),
        versions=versions(a.bin_dir), sizes=sizes(a.bin_dir),
    )
    log(f"{a.mode} run: {cfg['reps']} repetition(s), load {results['load_start']}, "
        f"busy: {results['busy_start'] or 'none'}")
    parts = a.only or ["producer", "consumer", "ready", "memory"]
    try:
        bench.prepare_records()
        if "producer" in parts:
            bench.producers()
        if "memory" in parts:
            bench.memory()
        if "consumer" in parts:
            bench.consumers()
        if "ready" in parts:
            bench.readiness()
    finally:
        results.update(load_end=list(os.getloadavg()), busy_end=busy_processes(),
                       finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       duration_s=round(time.time() - started, 1))
        with open(out / "results.json", "w") as f:
            json.dump(results, f, indent=1, default=str)
        shutil.rmtree(work / "tmp", ignore_errors=True)
        log(f"results in {out / 'results.json'} ({results['duration_s']} s)")
    memory = results.get("memory")
    if memory and not memory["ok"]:
        log(f"memory: FAILED, the producer's peak RSS grows with the record count: {memory}")
        sys.exit(1)
    if a.mode == "smoke":
        problems = check_smoke(results) if not a.only else []
        if problems:
            for p in problems:
                log(f"smoke: FAILED {p}")
            sys.exit(1)
        log(f"smoke: every tool ran and produced numbers ({results['duration_s']} s)")


if __name__ == "__main__":
    main()
