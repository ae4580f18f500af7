#!/usr/bin/env bash
# The monitoring component k8s/monitoring, checked for real (the last step
# of `make test`). About 25 s with the broker running and the binaries built.
#
#   1. kubectl kustomize renders k8s/overlays/kind with the component; the
#      objects land where they must (kafka-services / monitoring), the
#      ServiceMonitor and PodMonitor select the Service and the Job's pods of
#      k8s/base by their labels and port names, their jobLabel gives the job
#      values the alerts and the dashboard use, the OTLP endpoint the
#      workloads get is the collector's OTLP/HTTP port, and the collector's
#      pipeline names only components it defines;
#   2. kubernetes-validate --strict on the rendered built-in objects (the
#      patched Deployment and Job, the NetworkPolicy, the ConfigMaps);
#      check-jsonschema on the ServiceMonitor, PodMonitor and PrometheusRule
#      against the operator's CRD schemas made strict
#      (k8s/monitoring/tests/schemas, see SOURCE.md there);
#   3. promtool check rules on the PrometheusRule's groups, promtool test
#      rules on k8s/monitoring/tests/alerts.test.yaml;
#   4. the dashboard JSON loads, has panels, every panel has a query;
#   5. every metric name in the alert expressions and the dashboard queries is
#      one the services export: the local broker (started if not running),
#      the debug producer (50 records) and consumer, both /metrics scraped
#      after the records flowed; kafka_* names must be in the scrape (and the
#      labels a selector matches on must exist on that metric), any other
#      name must be on the explicit list of Prometheus/kube-state-metrics
#      metrics below;
#   6. a real Prometheus (Debian's binary, scripts/install-tools.sh) on a
#      free port with k8s/monitoring/tests/prometheus.yml and the
#      PrometheusRule's groups scrapes the three services of step 5 while
#      they run; then every dashboard query (the variables and Grafana's
#      $__rate_interval/$__range substituted as Grafana does, for "All" and
#      for the first value of each variable) and every alert expression goes
#      through its HTTP API: each must parse, each panel target must return
#      series over the run, and every rule must be loaded and evaluated by
#      Prometheus without error.
# A missing tool is a failure (.ci/run installs them). Everything started
# here is stopped again, the broker only if it was started here.
#
# Environment: MONITORING_CHECK_BIN=DIR uses DIR/producer and DIR/consumer
# instead of building the debug binaries; MONITORING_CHECK_WAIT_SECS (60)
# bounds each wait for the records; K8S_VERSION (1.31.0) for the schemas.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

BOOTSTRAP=${MONITORING_CHECK_BOOTSTRAP:-127.0.0.1:19092}
MESSAGES=50
WAIT_SECS=${MONITORING_CHECK_WAIT_SECS:-60}
# Metrics that Prometheus itself or kube-state-metrics provide, not the services.
EXTERNAL_METRICS="up kube_pod_status_ready kube_job_status_failed kube_job_status_succeeded kube_job_status_active"
START=$SECONDS

ok() { printf 'monitoring-check: ok   %s\n' "$*" >&2; }

need kubectl promtool prometheus python3 curl kubernetes-validate check-jsonschema -- "scripts/install-tools.sh installs them"
python3 -c 'import yaml' 2>/dev/null || die "python3 cannot import yaml (pip install pyyaml)"

# kustomize only loads files below the kustomization's own directory tree,
# so the throwaway overlay lives under target/ (ignored by git).
mkdir -p target
OUT=$(mktemp -d "$PWD/target/monitoring-check.XXXXXX")
producer_pid=
consumer_pid=
canary_pid=
prometheus_pid=
cleanup() {
    stop_pid "$prometheus_pid"
    stop_pid "$producer_pid"
    stop_pid "$canary_pid"
    stop_pid "$consumer_pid"
    rm -rf "$OUT"
}
at_exit cleanup

# ---- 1. render and wiring -------------------------------------------------------
mkdir -p "$OUT/overlay"
cat >"$OUT/overlay/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../k8s/overlays/kind
components:
  - ../../../k8s/monitoring
EOF
kubectl kustomize "$OUT/overlay" >"$OUT/rendered.yaml" || die "kubectl kustomize k8s/overlays/kind + components k8s/monitoring"
ok "kubectl kustomize k8s/overlays/kind + component k8s/monitoring: $(grep -c '^kind:' "$OUT/rendered.yaml") objects"

python3 - "$OUT" <<'EOF' || die "wiring of k8s/monitoring against k8s/base (above)"
import json, os, re, sys, yaml
out = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(os.path.join(out, "rendered.yaml"))) if d]
def get(kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]
def ns(d):
    return d["metadata"].get("namespace")
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

sm, pm, rule = get("ServiceMonitor", "consumer"), get("PodMonitor", "producer"), get("PrometheusRule", "kafka-services")
dash_cm, otel_cm = get("ConfigMap", "kafka-rs-dashboard"), get("ConfigMap", "otel-collector-config")
netpol = get("NetworkPolicy", "kafka-services-otlp-egress")
deploy, job = get("Deployment", "consumer"), get("Job", "producer")
for d in (sm, pm, rule, netpol):
    check(ns(d) == ns(deploy), f"{d['kind']} {d['metadata']['name']} is in {ns(d)}, the services in {ns(deploy)}")
for d in (dash_cm, otel_cm):
    check(ns(d) == "monitoring", f"ConfigMap {d['metadata']['name']} is in {ns(d)}, not monitoring (an overlay with `namespace:` moves it)")
check(dash_cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1", "dashboard ConfigMap lacks label grafana_dashboard: \"1\"")

def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

# ServiceMonitor -> Service (labels, port name) -> consumer pods.
services = [d for d in docs if d["kind"] == "Service" and ns(d) == ns(sm)
            and matches(sm["spec"]["selector"], d["metadata"].get("labels", {}))]
check(len(services) == 1, f"ServiceMonitor consumer selects {len(services)} Services, expected 1")
consumer_job = None
if services:
    svc = services[0]
    ports = {p.get("name") for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        check(ep["port"] in ports, f"ServiceMonitor port {ep['port']!r} is not a port of Service {svc['metadata']['name']} {sorted(ports)}")
    check(matches({"matchLabels": svc["spec"]["selector"]}, deploy["spec"]["template"]["metadata"]["labels"]),
          f"Service {svc['metadata']['name']} does not select the consumer pods")
    consumer_job = svc["metadata"]["labels"].get(sm["spec"]["jobLabel"])
# PodMonitor -> producer Job pods (labels, container port name).
pod_labels = job["spec"]["template"]["metadata"]["labels"]
check(matches(pm["spec"]["selector"], pod_labels), "PodMonitor producer does not select the producer Job's pods")
cports = {p.get("name") for c in job["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
for ep in pm["spec"]["podMetricsEndpoints"]:
    check(ep["port"] in cports, f"PodMonitor port {ep['port']!r} is not a container port of Job producer {sorted(cports)}")
producer_job = pod_labels.get(pm["spec"]["jobLabel"])
check(consumer_job == "kafka-consumer", f"the consumer's job label would be {consumer_job!r}; alerts and dashboard use kafka-consumer")
check(producer_job == "kafka-producer", f"the producer's job label would be {producer_job!r}; alerts and dashboard use kafka-producer")

# The job= values and the kube-state-metrics names in the queries.
rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
dash = json.loads(dash_cm["data"]["kafka-rs.json"])
exprs = [r["expr"] for r in rules] + [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t]
for e in exprs:
    for j in re.findall(r'\bjob="([^"]*)"', e):
        check(j in ("kafka-consumer", "kafka-producer"), f"query selects job={j!r}: {e.strip()[:80]}")
    for n in re.findall(r'\bnamespace="([^"]*)"', e):
        check(n == ns(job), f"query names namespace {n!r}, the services are in {ns(job)}: {e.strip()[:80]}")
    for n in re.findall(r'\bjob_name="([^"]*)"', e):
        check(n == job["metadata"]["name"], f"query names Job {n!r}, the Job is {job['metadata']['name']}: {e.strip()[:80]}")

# Tracing: the endpoint the workloads get is the collector's OTLP/HTTP port,
# and the NetworkPolicy lets them reach it.
otel = yaml.safe_load(otel_cm["data"]["relay"])
http_ep = otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
grpc_ep = otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
check(http_ep.endswith(":4318") and grpc_ep.endswith(":4317"), f"collector OTLP receivers on {http_ep} / {grpc_ep}")
for w in (deploy, job):
    env = {e["name"]: e for e in w["spec"]["template"]["spec"]["containers"][0]["env"]}
    names = [e["name"] for e in w["spec"]["template"]["spec"]["containers"][0]["env"]]
    check(len(names) == len(set(names)), f"{w['kind']} {w['metadata']['name']}: duplicate env names {names}")
    check(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", {}).get("value") == "http://otel-collector.monitoring:4318",
          f"{w['kind']} {w['metadata']['name']}: OTEL_EXPORTER_OTLP_ENDPOINT is {env.get('OTEL_EXPORTER_OTLP_ENDPOINT')}")
    check(names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), "POD_NAME must precede OTEL_RESOURCE_ATTRIBUTES ($(POD_NAME))")
np_ports = {p["port"] for e in netpol["spec"]["egress"] for p in e["ports"]}
check(4318 in np_ports, f"NetworkPolicy kafka-services-otlp-egress allows ports {np_ports}, not 4318")
sel = netpol["spec"]["podSelector"]["matchExpressions"][0]
for w in (deploy, job):
    check(w["spec"]["template"]["metadata"]["labels"].get(sel["key"]) in sel["values"],
          f"NetworkPolicy kafka-services-otlp-egress does not select {w['kind']} {w['metadata']['name']}")
# Every component the collector's pipelines name is defined, and Tempo is the exporter.
svc = otel["service"]
for kind in ("receivers", "processors", "exporters"):
    for pipe, spec in svc["pipelines"].items():
        for name in spec.get(kind, []):
            check(name in otel.get(kind, {}), f"collector pipeline {pipe} uses undefined {kind[:-1]} {name}")
for name in svc.get("extensions", []):
    check(name in otel.get("extensions", {}), f"collector uses undefined extension {name}")
check(otel["exporters"]["otlp_grpc/tempo"]["endpoint"] == "tempo.monitoring:4317", "collector does not export to tempo.monitoring:4317")
check({"batch", "k8sattributes"} <= set(svc["pipelines"]["traces"]["processors"]), "traces pipeline lacks batch or k8sattributes")

if errors:
    print("\n".join(f"  {e}" for e in errors if e), file=sys.stderr)
    sys.exit(1)
# For the next steps: the rule groups (as is, and without annotations for the
# unit tests), every query, built-in objects for schema validation.
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(os.path.join(out, "rules.yaml"), "w"), sort_keys=False)
os.makedirs(os.path.join(out, "unit"))
bare = {"groups": [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]} for g in rule["spec"]["groups"]]}
yaml.safe_dump(bare, open(os.path.join(out, "unit", "rules.yaml"), "w"), sort_keys=False)
open(os.path.join(out, "dashboard.json"), "w").write(dash_cm["data"]["kafka-rs.json"])
builtin = [d for d in docs if "monitoring.coreos.com" not in d["apiVersion"]]
yaml.safe_dump_all(builtin, open(os.path.join(out, "builtin.yaml"), "w"), sort_keys=False)
for d in (sm, pm, rule):
    yaml.safe_dump(d, open(os.path.join(out, "crd-" + d["kind"].lower() + ".yaml"), "w"), sort_keys=False)
EOF
ok "wiring: ServiceMonitor -> Service consumer-metrics (port metrics, job kafka-consumer), PodMonitor -> Job producer pods (port http, job kafka-producer), OTLP endpoint and egress, ConfigMaps in monitoring"

# ---- 2. schemas of the built-in objects --------------------------------------------
kubernetes-validate --strict --quiet -k "${K8S_VERSION:-1.31.0}" "$OUT/builtin.yaml" || die "kubernetes-validate --strict"
ok "kubernetes-validate --strict -k ${K8S_VERSION:-1.31.0}: the built-in objects of the render"
for kind in servicemonitor podmonitor prometheusrule; do
    check-jsonschema --schemafile "k8s/monitoring/tests/schemas/${kind}_v1.json" "$OUT/crd-$kind.yaml" >"$OUT/crd.txt" 2>&1 \
        || { cat "$OUT/crd.txt" >&2; die "check-jsonschema: $kind against the strict prometheus-operator 0.93 schema"; }
done
ok "check-jsonschema: ServiceMonitor, PodMonitor, PrometheusRule against the strict prometheus-operator 0.93 CRD schemas"

# ---- 3. promtool ---------------------------------------------------------------------
promtool_version=$(promtool --version 2>&1 | head -n1)
promtool check rules "$OUT/rules.yaml" >"$OUT/promtool.txt" 2>&1 || { cat "$OUT/promtool.txt" >&2; die "promtool check rules"; }
ok "promtool check rules: $(grep -o '[0-9]* rules found' "$OUT/promtool.txt") ($promtool_version)"
cp k8s/monitoring/tests/alerts.test.yaml "$OUT/unit/"
promtool test rules "$OUT/unit/alerts.test.yaml" >"$OUT/promtool-test.txt" 2>&1 || { cat "$OUT/promtool-test.txt" >&2; die "promtool test rules k8s/monitoring/tests/alerts.test.yaml"; }
ok "promtool test rules: k8s/monitoring/tests/alerts.test.yaml ($(grep -c 'alertname:' k8s/monitoring/tests/alerts.test.yaml) cases)"

# ---- 4. dashboard and the metric names of every query --------------------------------
python3 - "$OUT" "$EXTERNAL_METRICS" <<'EOF' || die "dashboard / query names (above)"
import json, os, re, sys
out, external = sys.argv[1], set(sys.argv[2].split())
dash = json.load(open(os.path.join(out, "dashboard.json")))
panels = [p for p in dash["panels"] if p.get("type") != "row"]
errors = []
if not panels:
    errors.append("dashboard has no panels")
ids = [p["id"] for p in dash["panels"]]
if len(ids) != len(set(ids)):
    errors.append("dashboard panel ids are not unique")
for p in panels:
    if not any(t.get("expr") for t in p.get("targets", [])):
        errors.append(f"panel {p.get('title')!r} has no query")
    if "gridPos" not in p:
        errors.append(f"panel {p.get('title')!r} has no gridPos")

import yaml
rules = yaml.safe_load(open(os.path.join(out, "rules.yaml")))
queries = [("alert " + r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
queries += [("panel " + p["title"], t["expr"]) for p in panels for t in p.get("targets", []) if t.get("expr")]
for v in dash.get("templating", {}).get("list", []):
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") == "query" and q:
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\)\s*", q)
        queries.append(("variable " + v["name"], m.group(1) if m else q))

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "offset", "bool", "inf", "nan", "atan2", "start", "end"}
refs = {}      # metric name -> [where]
selectors = []  # (metric, [label names matched], where)
for where, q in queries:
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', q)            # string literals
    s = re.sub(r"\[[^\]]*\]", "", s)                      # ranges, subqueries
    for m in re.finditer(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", s):
        selectors.append((m.group(1), re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2)), where))
    s = re.sub(r"\{[^}]*\}", "", s)                       # label matchers
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    for m in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?!\w)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        refs.setdefault(name, []).append(where)
unknown = sorted(n for n in refs if not n.startswith("kafka_") and n not in external)
for n in unknown:
    errors.append(f"{n} (in {refs[n][0]}) is neither a kafka_* metric of the services nor on the list of external metrics ({' '.join(sorted(external))})")
json.dump({"refs": refs, "selectors": selectors}, open(os.path.join(out, "refs.json"), "w"))
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
ours = sorted(n for n in refs if n.startswith("kafka_"))
ext = " ".join(sorted(n for n in refs if n in external))
open(os.path.join(out, "summary.txt"), "w").write(
    f"dashboard JSON loads, {len(panels)} panels, each with a query; {len(queries)} queries name {len(ours)} kafka_* metrics and the external {ext}")
EOF
ok "$(cat "$OUT/summary.txt")"

# ---- 5. live scrape of both services ----------------------------------------------------
if [[ -n ${MONITORING_CHECK_BIN:-} ]]; then
    BIN=$MONITORING_CHECK_BIN
else
    cargo build -q -p producer -p consumer || die "cargo build -p producer -p consumer"
    BIN=target/debug
fi
broker_ensure
# Polls URL until python expression COND (over the parsed samples) holds, or dies after WAIT_SECS.
# samples: {(name, frozenset(labels.items())): value}; helper total(name, **labels).
wait_metrics() {
    local url=$1 cond=$2 what=$3 pid=$4 deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        if curl -fsS --max-time 2 "$url" >"$OUT/scrape.tmp" 2>/dev/null && python3 - "$OUT/scrape.tmp" "$cond" <<'EOF'; then
import re, sys
samples = {}
for line in open(sys.argv[1]):
    m = re.match(r'([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)', line)
    if m and not line.startswith("#"):
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
def total(name, **want):
    return sum(v for (n, l), v in samples.items() if n == name and set(want.items()) <= l)
def has(name):
    return any(n == name for n, _ in samples)
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
            mv "$OUT/scrape.tmp" "$OUT/$what.prom"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "$what exited before: $cond (log: $(tail -n 3 "$OUT/$what.log"))"
        sleep 0.5
    done
    tail -n 20 "$OUT/$what.log" >&2
    die "$what: not within ${WAIT_SECS}s: $cond"
}

TOPIC=monitoring-check-$(date +%s)-$$
GROUP=$TOPIC-group
# Four distinct ports: producer, consumer, canary producer, Prometheus.
ports=()
while ((${#ports[@]} < 4)); do
    p=$(free_port)
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
producer_port=${ports[0]} consumer_port=${ports[1]} canary_port=${ports[2]} prometheus_port=${ports[3]}
export KAFKA_BOOTSTRAP_SERVER=$BOOTSTRAP KAFKA_TOPIC=$TOPIC LOG_FORMAT=json RUST_LOG=info
unset OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

# A real Prometheus scraping the three services below with the repository's
# scrape configuration and the PrometheusRule's groups loaded; the target
# files give the labels the operator gives on a cluster (see prometheus.yml).
PROM=http://127.0.0.1:$prometheus_port
mkdir -p "$OUT/prometheus"
cp k8s/monitoring/tests/prometheus.yml "$OUT/prometheus/"
cp "$OUT/rules.yaml" "$OUT/prometheus/rules.yaml"
printf '[{"targets": ["127.0.0.1:%s"], "labels": {"namespace": "kafka-services", "pod": "consumer-local", "container": "consumer", "service": "consumer-metrics"}}]\n' \
    "$consumer_port" >"$OUT/prometheus/consumer-targets.json"
printf '[{"targets": ["127.0.0.1:%s"], "labels": {"namespace": "kafka-services", "pod": "producer-local", "container": "producer"}},
 {"targets": ["127.0.0.1:%s"], "labels": {"namespace": "kafka-services", "pod": "producer-canary-local", "container": "producer"}}]\n' \
    "$producer_port" "$canary_port" >"$OUT/prometheus/producer-targets.json"
promtool check config "$OUT/prometheus/prometheus.yml" >"$OUT/promtool-config.txt" 2>&1 ||
    { cat "$OUT/promtool-config.txt" >&2; die "promtool check config k8s/monitoring/tests/prometheus.yml"; }
prometheus --config.file="$OUT/prometheus/prometheus.yml" --storage.tsdb.path="$OUT/prometheus/data" \
    --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$OUT/prometheus.log" 2>&1 &
prometheus_pid=$!
for _ in $(seq 120); do
    http_is 200 "127.0.0.1:$prometheus_port" /-/ready && break
    kill -0 "$prometheus_pid" 2>/dev/null || die "prometheus exited: $(tail -n 3 "$OUT/prometheus.log")"
    sleep 0.25
done
http_is 200 "127.0.0.1:$prometheus_port" /-/ready || die "Prometheus not ready on $PROM within 30 s: $(tail -n 3 "$OUT/prometheus.log")"
# Service discovery hands targets to the scrapers at most every 5 s: the
# run starts once all three targets are known (up is 0 until they listen).
prom_has() { curl -fsS --max-time 2 "$PROM/api/v1/query" --data-urlencode "query=$1" | grep -q '"result":\[{'; }
wait_for 20 "Prometheus scraping its three targets" prom_has 'count(up) == 3'
RUN_START=$(date +%s)
ok "prometheus ($(prometheus --version 2>&1 | head -n1 | cut -d' ' -f1-3)) on $PROM: k8s/monitoring/tests/prometheus.yml, $(grep -c -- '- alert:' "$OUT/prometheus/rules.yaml") alert rules loaded"

HTTP_ADDR=127.0.0.1:$producer_port "$BIN/producer" --messages "$MESSAGES" --partitions 3 \
    --create-topic --metrics-grace-secs 5 --key-template 'key-{seq % 8}' >"$OUT/producer.log" 2>&1 &
producer_pid=$!
wait_metrics "http://127.0.0.1:$producer_port/metrics" \
    "total('kafka_producer_records_sent_total', topic='$TOPIC') == $MESSAGES and has('kafka_producer_ack_latency_seconds_bucket')" \
    producer "$producer_pid"
ok "producer: $MESSAGES records acknowledged on $TOPIC, /metrics scraped ($(grep -vc '^#' "$OUT/producer.prom") samples)"

HTTP_ADDR=127.0.0.1:$consumer_port KAFKA_CONSUMER_GROUP=$GROUP \
    CONSUMER_SESSION_TIMEOUT_MS=10000 CONSUMER_HEARTBEAT_INTERVAL_MS=1000 CONSUMER_DRAIN_TIMEOUT_MS=3000 \
    CONSUMER_COMMIT_INTERVAL_MS=500 CONSUMER_METADATA_REFRESH_MS=1000 \
    "$BIN/consumer" >"$OUT/consumer.log" 2>&1 &
consumer_pid=$!
# All records handled and committed (lag 0 on every partition) before the scrape.
wait_metrics "http://127.0.0.1:$consumer_port/metrics" \
    "total('kafka_consumer_records_consumed_total', topic='$TOPIC') == $MESSAGES and has('kafka_consumer_last_commit_timestamp_seconds') and has('kafka_consumergroup_lag') and total('kafka_consumergroup_lag') == 0 and has('kafka_consumer_e2e_latency_seconds_bucket') and has('kafka_consumer_commit_latency_seconds_bucket')" \
    consumer "$consumer_pid"
ok "consumer: $MESSAGES records handled and committed (lag 0), /metrics scraped ($(grep -vc '^#' "$OUT/consumer.prom") samples)"

# The canary metrics: producer --continuous on the same topic for a few
# seconds, its scrape and the consumer's again once canary records arrived.
HTTP_ADDR=127.0.0.1:$canary_port "$BIN/producer" --continuous true --rate 30 >"$OUT/canary.log" 2>&1 &
canary_pid=$!
wait_metrics "http://127.0.0.1:$canary_port/metrics" \
    "total('kafka_canary_produce_acks_total', topic='$TOPIC') >= 30 and has('kafka_canary_produce_ack_latency_seconds_bucket')" \
    canary "$canary_pid"
wait_metrics "http://127.0.0.1:$consumer_port/metrics" \
    "total('kafka_canary_records_received_total', topic='$TOPIC') >= 30 and has('kafka_canary_e2e_latency_seconds_bucket') and has('kafka_canary_e2e_availability') and has('kafka_consumergroup_lag_seconds')" \
    consumer "$consumer_pid"
# The moment the dashboard is evaluated at (its "now"): every service is up
# and Prometheus has scraped the canary records on the consumer.
# Enough samples for rate() over $__rate_interval (4 scrapes) of each.
for q in "count_over_time(kafka_canary_records_received_total{job=\"kafka-consumer\",topic=\"$TOPIC\"}[1m]) >= 4" \
    "count_over_time(kafka_canary_produce_acks_total{job=\"kafka-producer\",topic=\"$TOPIC\"}[1m]) >= 4" \
    "count_over_time(kafka_producer_records_sent_total{job=\"kafka-producer\",topic=\"$TOPIC\"}[1m]) >= 2"; do
    wait_for 20 "Prometheus: $q" prom_has "$q"
done
EVAL_TIME=$(date +%s)
kill -TERM "$canary_pid"
rc=0
wait "$canary_pid" || rc=$?
canary_pid=
((rc == 0)) || die "producer --continuous exited $rc after SIGTERM: $(tail -n 3 "$OUT/canary.log")"
ok "producer --continuous: canary records acknowledged and verified, exited 0 on SIGTERM"

rc=0
wait "$producer_pid" || rc=$?
producer_pid=
((rc == 0)) || die "producer exited $rc: $(tail -n 3 "$OUT/producer.log")"
kill -TERM "$consumer_pid"
rc=0
for _ in $(seq 100); do kill -0 "$consumer_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$consumer_pid" 2>/dev/null && die "consumer did not exit within 10 s of SIGTERM"
wait "$consumer_pid" || rc=$?
consumer_pid=
((rc == 0)) || die "consumer exited $rc after SIGTERM: $(tail -n 3 "$OUT/consumer.log")"
ok "producer exited 0, consumer drained and exited 0 on SIGTERM"

python3 - "$OUT" <<'EOF' || die "metric names used by k8s/monitoring that the services do not export (above)"
import json, os, re, sys
out = sys.argv[1]
refs = json.load(open(os.path.join(out, "refs.json")))
exported, labels, types = {}, {}, {}
for svc in ("producer", "consumer", "canary"):
    for line in open(os.path.join(out, svc + ".prom")):
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(maxsplit=3)
            types[name] = typ.strip()
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{(.*)\})?\s", line)
        if m and not line.startswith("#"):
            exported.setdefault(m.group(1), set()).add(svc)
            labels.setdefault(m.group(1), set()).update(re.findall(r'(\w+)="', m.group(3) or ""))
errors = []
for name, where in sorted(refs["refs"].items()):
    if not name.startswith("kafka_") or name in exported:
        continue
    if types.get(name) == "histogram":
        errors.append(f"{name} is a histogram: query {name}_bucket, _sum or _count (in {where[0]})")
    else:
        errors.append(f"{name} is not exported by either service (in {', '.join(sorted(set(where))[:3])})")
# Labels a selector matches on must exist on the metric (Prometheus adds these).
added = {"job", "namespace", "pod", "instance", "container", "endpoint", "service", "__name__"}
for name, matched, where in refs["selectors"]:
    if name in exported:
        for l in matched:
            if l not in labels[name] | added:
                errors.append(f"{name} has no label {l!r} (labels: {', '.join(sorted(labels[name])) or 'none'}; in {where})")
if errors:
    print("monitoring-check: missing from the live scrape:", file=sys.stderr)
    print("\n".join("  " + e for e in sorted(set(errors))), file=sys.stderr)
    sys.exit(1)
used = sorted(n for n in refs["refs"] if n.startswith("kafka_"))
families = {re.sub(r"_(bucket|sum|count)$", "", n) if types.get(re.sub(r"_(bucket|sum|count)$", "", n)) == "histogram" else n for n in exported if n.startswith("kafka_")}
unused = sorted(f for f in families if not any(u == f or re.fullmatch(re.escape(f) + r"_(bucket|sum|count)", u) for u in used))
print(f"monitoring-check: ok   all {len(used)} kafka_* names in alerts and dashboard are in the live scrape"
      + (f"; exported but unused: {', '.join(unused)}" if unused else ""), file=sys.stderr)
EOF

# ---- 6. every query through the real Prometheus ----------------------------------------------
# As Grafana would send them: the dashboard's variables and Grafana's
# $__range / $__interval / $__rate_interval substituted, timeseries targets
# as range queries over the run (/api/v1/query_range), stat and table
# targets instant (/api/v1/query) at EVAL_TIME, when every service was up.
# Every alert expression through /api/v1/query too, and every rule loaded
# and evaluated by Prometheus without error (/api/v1/rules).
python3 - "$OUT" "$PROM" "$RUN_START" "$EVAL_TIME" <<'EOF' || die "queries through Prometheus (above)"
import json, os, re, sys, urllib.parse, urllib.request, yaml
out, prom, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
# Every panel target must return series: the run has records produced and
# consumed, lag, commits, a rebalance, canary records; the services export
# their error, stall, loss and duplicate series at 0 from the start, so
# even those panels draw a line (a flat 0) rather than "No data".
def get(path, **params):
    url = prom + path + "?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)

scrape = yaml.safe_load(open(os.path.join(out, "prometheus", "prometheus.yml")))["global"]["scrape_interval"]
scrape_s = int(re.fullmatch(r"(\d+)s", scrape).group(1))
rng = end - start
# Grafana: $__interval = range / max data points (a panel's width, ~1000),
# never below the datasource's scrape interval (timeInterval);
# $__rate_interval = max($__interval + scrape interval, 4 x scrape interval).
interval = max(scrape_s, rng // 1000)
macros = {"__rate_interval": f"{max(interval + scrape_s, 4 * scrape_s)}s", "__interval": f"{interval}s",
          "__range": f"{rng}s", "__range_s": str(rng), "__interval_ms": str(interval * 1000)}
dash = json.load(open(os.path.join(out, "dashboard.json")))
variables = dash.get("templating", {}).get("list", [])

def regex_escape(v):  # Grafana's escape of a multi-value variable's values in PromQL
    return re.sub(r"([\\^$*+?.()|\[\]{}])", r"\\\\\1", v)
def substitute(expr, values):
    def one(m):
        name = m.group(1) or m.group(2)
        if name in macros:
            return macros[name]
        if name in values:
            return values[name]
        raise KeyError(f"unknown variable ${name} in {expr.strip()[:80]}")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)

errors, report = [], []
# Variables: label_values(SELECTOR, LABEL) through the label values API, as
# Grafana does; "All" (allValue) and the first value it offers are both run.
passes = {"All": {}, "first": {}}
for v in variables:
    if v.get("type") != "query":
        continue
    q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q)
    if not m:
        errors.append(f"variable {v['name']}: only label_values(selector, label) is evaluated here: {q}")
        continue
    sel = substitute(m.group(1), passes["first"])
    r = get(f"/api/v1/label/{m.group(2)}/values", **{"match[]": sel, "start": start, "end": end})
    vals = sorted(r.get("data") or [])
    if r.get("status") != "success" or not vals:
        errors.append(f"variable {v['name']}: {q} -> {r.get('error') or 'no values'}")
        continue
    passes["All"][v["name"]] = v.get("allValue") or "|".join(regex_escape(x) for x in vals)
    passes["first"][v["name"]] = regex_escape(vals[0])
    report.append(f"${v['name']} = {vals}")

panels = [p for p in dash["panels"] if p.get("type") != "row"]
checked = 0
for pname, values in passes.items():
    for p in panels:
        for t in p.get("targets", []):
            if not t.get("expr"):
                continue
            key = f"{p['title']}/{t.get('refId', '?')}"
            try:
                q = substitute(t["expr"], values)
            except KeyError as e:
                errors.append(f"panel {key}: {e}")
                continue
            instant = t.get("instant") and not t.get("range")
            r = (get("/api/v1/query", query=q, time=end) if instant else
                 get("/api/v1/query_range", query=q, start=start, end=end, step=interval))
            checked += 1
            if r.get("status") != "success":
                errors.append(f"panel {key} ({pname}): {r.get('errorType')}: {r.get('error')}\n      {q}")
            elif not r["data"]["result"]:
                errors.append(f"panel {key} ({pname}): no series during the run\n      {q}")

rules = yaml.safe_load(open(os.path.join(out, "rules.yaml")))
firing = []
for g in rules["groups"]:
    for rule in g["rules"]:
        r = get("/api/v1/query", query=rule["expr"], time=end)
        checked += 1
        if r.get("status") != "success":
            errors.append(f"alert {rule.get('alert') or rule.get('record')}: {r.get('errorType')}: {r.get('error')}")
        elif r["data"]["result"]:
            firing.append(rule.get("alert") or rule.get("record"))
loaded = get("/api/v1/rules")["data"]["groups"]
want = sum(len(g["rules"]) for g in rules["groups"])
got = [r for g in loaded for r in g["rules"]]
if len(got) != want:
    errors.append(f"Prometheus loaded {len(got)} rules, the PrometheusRule has {want}")
for r in got:
    if r.get("health") != "ok" or r.get("lastError"):
        errors.append(f"rule {r['name']}: health {r.get('health')}, {r.get('lastError')}")
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
for line in report:
    print("monitoring-check:      " + line, file=sys.stderr)
print(f"monitoring-check: ok   {checked} queries through Prometheus ({len(panels)} panels x {len(passes)} variable choices, {want} alerts): all parse;"
      f" every panel target has series over the run;"
      f" {len(got)} rules evaluated by Prometheus, health ok; conditions true at the end: {', '.join(firing) or 'none'}"
      f" ($__rate_interval={macros['__rate_interval']}, $__range={macros['__range']})", file=sys.stderr)
EOF

echo "monitoring-check: PASS in $((SECONDS - START))s" >&2
