"""librdkafka consumer (confluent-kafka wheel) in a consumer group with
auto-commit (librdkafka's defaults), reading a pre-produced topic from the
earliest offset in batches of up to 10 000 records (consume()), touching
each value. Timed from the first batch received to the last record (the
first batch's records are not counted in the rate); the group join is
reported separately.
"""

import argparse
import time

from confluent_kafka import Consumer

from common import emit

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", required=True)
ap.add_argument("--topic", required=True)
ap.add_argument("--group", required=True)
ap.add_argument("--records", type=int, required=True)
ap.add_argument("--timeout", type=float, default=120)
a = ap.parse_args()

c = Consumer({
    "bootstrap.servers": a.bootstrap,
    "group.id": a.group,
    "auto.offset.reset": "earliest",
})
start = time.perf_counter()
c.subscribe([a.topic])
n = 0
nbytes = 0
errors = 0
first = None
first_batch = 0
deadline = start + a.timeout
while n < a.records and time.perf_counter() < deadline:
    # Never ask for more than remain: consume() waits for the full count
    # (or its timeout).
    msgs = c.consume(min(10000, a.records - n), 1.0)
    if msgs and first is None:
        first = time.perf_counter()
        first_batch = len(msgs)
    for m in msgs:
        if m.error() is not None:
            errors += 1
            continue
        n += 1
        nbytes += len(m.value())
t1 = time.perf_counter()
c.close()  # commits and leaves the group
emit(
    records=n,
    bytes=nbytes,
    errors=errors,
    # Records of the first batch arrived before the clock started.
    timed_records=n - first_batch,
    seconds=(t1 - first) if first else None,
    join_seconds=(first - start) if first else None,
)
