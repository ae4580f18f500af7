"""librdkafka producer (confluent-kafka wheel) driven so that Python is not
the bottleneck: produce() in a tight loop with poll(0) every 1000 records,
librdkafka's default queue (100 000 records), poll(0.001) only when it is
full, flush() at the end. Every delivery report is checked; its
Message.latency() (produce() -> acknowledgement, measured by librdkafka)
gives the ack latency. Timed from the first produce() to flush() returning.
"""

import argparse
import time

from confluent_kafka import Producer

from common import emit, load_pool, percentile

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--records", type=int, required=True)
ap.add_argument("--pool", required=True)
ap.add_argument("--compression", default="none")
a = ap.parse_args()

pool = load_pool(a.pool)
npool = len(pool)
p = Producer({
    "bootstrap.servers": a.bootstrap,
    "acks": "all",
    "compression.type": a.compression,
})
lat = []
errors = [0]


def on_delivery(err, msg):
    if err is not None:
        errors[0] += 1
    else:
        lat.append(msg.latency())


# Connect and learn the topic's metadata before the clock starts (as the
# other clients do before their first send).
p.list_topics(a.topic, timeout=30)
produce = p.produce
poll = p.poll
topic = a.topic
t0 = time.perf_counter()
for i in range(a.records):
    while True:
        try:
            produce(topic, pool[i % npool], on_delivery=on_delivery)
            break
        except BufferError:
            poll(0.001)
    if i % 1000 == 999:
        poll(0)
remaining = p.flush(120)
t1 = time.perf_counter()
lat.sort()
emit(
    records=a.records,
    acked=len(lat),
    errors=errors[0],
    not_flushed=remaining,
    seconds=t1 - t0,
    ack_p50_ms=percentile(lat, 0.5) * 1e3 if lat else None,
    ack_p99_ms=percentile(lat, 0.99) * 1e3 if lat else None,
)
