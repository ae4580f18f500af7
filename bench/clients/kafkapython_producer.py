"""The Python prototype's approach: kafka-python's KafkaProducer.

--mode sync:  one record at a time, send(...).get() before the next (what
              the prototype did); every send's latency is measured.
--mode async: send() without waiting, flush() at the end; every 64th send
              gets a callback for its latency (a callback on every future
              would slow kafka-python further). Failed sends show up in the
              harness's count check.
Timed from the first send() to the last acknowledgement.
"""

import argparse
import time

from kafka import KafkaProducer

from common import emit, load_pool, percentile

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--records", type=int, required=True)
ap.add_argument("--pool", required=True)
ap.add_argument("--compression", default="none")
ap.add_argument("--mode", choices=["sync", "async"], required=True)
a = ap.parse_args()

pool = load_pool(a.pool)
npool = len(pool)
p = KafkaProducer(
    bootstrap_servers=a.bootstrap,
    acks="all",
    compression_type=None if a.compression == "none" else a.compression,
)
p.partitions_for(a.topic)  # metadata before the clock starts
lat = []
errors = [0]
topic = a.topic
t0 = time.perf_counter()
if a.mode == "sync":
    for i in range(a.records):
        s = time.perf_counter()
        p.send(topic, pool[i % npool]).get(timeout=30)
        lat.append(time.perf_counter() - s)
else:
    def timed(start):
        return lambda _md: lat.append(time.perf_counter() - start)

    def failed(_exc):
        errors[0] += 1

    send = p.send
    for i in range(a.records):
        f = send(topic, pool[i % npool])
        if i % 64 == 0:
            f.add_callback(timed(time.perf_counter()))
            f.add_errback(failed)
    p.flush(timeout=120)
t1 = time.perf_counter()
p.close()
lat.sort()
emit(
    records=a.records,
    errors=errors[0],
    seconds=t1 - t0,
    ack_p50_ms=percentile(lat, 0.5) * 1e3 if lat else None,
    ack_p99_ms=percentile(lat, 0.99) * 1e3 if lat else None,
    latency_sampled=(a.mode == "async"),
)
