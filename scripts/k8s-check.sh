#!/usr/bin/env bash
# `make k8s-check` (and a step of `make test`): the deployment files, offline.
#
#   1. kubectl kustomize renders k8s/base, k8s/kafka, k8s/overlays/kind,
#      k8s/canary, k8s/monitoring-stack and the digest-pinned overlay that
#      scripts/deploy.sh applies;
#   2. kubernetes-validate --strict on every rendered object (Kubernetes
#      schemas bundled in the package, two versions);
#   3. the pinned overlay: every image by digest, the Job's run settings set;
#      no render holds a Secret (an apply would replace a real one); the
#      example Secret validates on its own;
#   4. hadolint on both Dockerfiles;
#   5. checkov --skip-download on the Dockerfiles and the rendered manifests:
#      0 failed (skips are inline, each with its reason: see .checkov.yaml);
#   6. compose.yaml against the Compose specification; k8s/kind/cluster.yaml
#      parses;
#   7. the KEDA component k8s/keda on k8s/overlays/kind: rendered, the
#      ScaledObject and TriggerAuthentication against KEDA's CRD schemas made
#      strict (k8s/keda/tests/schemas, SOURCE.md there), the Kafka trigger's
#      keys against those KEDA's kafka scaler accepts, and every name it uses
#      (Deployment, container, env of bootstrap/group/topic, ConfigMap and
#      Secret keys, partitions) against k8s/base and k8s/kafka;
#   8. k8s/monitoring-stack (`make monitoring`): its built-in objects with
#      the renders of steps 2-5, its Prometheus against the operator's CRD
#      schema made strict (k8s/monitoring/tests/schemas), and the wiring:
#      Prometheus selects k8s/monitoring's objects, Grafana's datasource
#      and dashboards, the names scripts/deploy.sh uses;
#   9. kube-linter, when it can be installed (go install); its absence is
#      reported, the rest still has to pass.
# A missing required tool is a failure (.ci/run and `make tools` install them).
#
# Environment: K8S_VERSIONS (default "1.31.0 1.37.0").
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

VERSIONS=${K8S_VERSIONS:-1.31.0 1.37.0}
START=$SECONDS

ok() { printf 'k8s-check: ok   %s\n' "$*" >&2; }

need kubectl kubernetes-validate checkov hadolint check-jsonschema python3 -- "scripts/install-tools.sh installs them"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/k8s-check.XXXXXX")
at_exit "rm -rf '$OUT'"

# split_crs RENDER PREFIX API-PREFIX KIND...: the built-in objects of RENDER
# into PREFIX-builtin.yaml (for kubernetes-validate), each custom resource
# (apiVersion API-PREFIX..., exactly one of each KIND) into PREFIX-KIND.yaml.
split_crs() {
    python3 - "$@" <<'EOF'
import sys, yaml
render, prefix, api, kinds = sys.argv[1], sys.argv[2], sys.argv[3], sorted(sys.argv[4:])
docs = [d for d in yaml.safe_load_all(open(render)) if d]
crs = [d for d in docs if d["apiVersion"].startswith(api)]
assert sorted(d["kind"] for d in crs) == kinds, f"{render}: custom resources {[d['kind'] for d in crs]}, expected {kinds}"
yaml.safe_dump_all([d for d in docs if d not in crs], open(prefix + "-builtin.yaml", "w"), sort_keys=False)
for d in crs:
    yaml.safe_dump(d, open(prefix + "-" + d["kind"].lower() + ".yaml", "w"), sort_keys=False)
EOF
}

# ---- 1. render ----------------------------------------------------------------
for dir in base kafka overlays/kind canary; do
    name=${dir//\//-}
    kubectl kustomize "k8s/$dir" >"$OUT/$name.yaml" || die "kubectl kustomize k8s/$dir"
    ok "kubectl kustomize k8s/$dir: $(grep -c '^kind:' "$OUT/$name.yaml") objects"
done
# The overlay as `make deploy` applies it, with made-up digests.
mkdir -p "$OUT/state"
printf 'producer=sha256:%s\nconsumer=sha256:%s\n' "$(printf '1%.0s' {1..64})" "$(printf '2%.0s' {1..64})" >"$OUT/state/digests.env"
DEPLOY_STATE_DIR=$OUT/state MESSAGES=42 RUN_ID=11111111-2222-3333-4444-555555555555 \
    scripts/deploy.sh render >"$OUT/kind-pinned.yaml" || die "scripts/deploy.sh render"
ok "scripts/deploy.sh render (pinned overlay): $(grep -c '^kind:' "$OUT/kind-pinned.yaml") objects"
# make monitoring's Prometheus and Grafana: the built-in objects join the
# renders below, the Prometheus resource is checked in step 9.
kubectl kustomize k8s/monitoring-stack >"$OUT/monitoring-stack.yaml" || die "kubectl kustomize k8s/monitoring-stack"
split_crs "$OUT/monitoring-stack.yaml" "$OUT/stack" monitoring.coreos.com/ Prometheus ServiceMonitor || die "k8s/monitoring-stack: its render (above)"
ok "kubectl kustomize k8s/monitoring-stack: $(grep -c '^kind:' "$OUT/monitoring-stack.yaml") objects"
RENDERED=("$OUT/base.yaml" "$OUT/kafka.yaml" "$OUT/overlays-kind.yaml" "$OUT/canary.yaml" "$OUT/kind-pinned.yaml" "$OUT/stack-builtin.yaml")

# ---- 2. schemas -------------------------------------------------------------------
for v in $VERSIONS; do
    kubernetes-validate --strict --quiet -k "$v" "${RENDERED[@]}" || die "kubernetes-validate --strict -k $v"
    ok "kubernetes-validate --strict -k $v: every object of the ${#RENDERED[@]} renders"
done

# ---- 3. the pinned overlay ------------------------------------------------------------
images=$(sed -n 's/^ *image: //p' "$OUT/kind-pinned.yaml" | sort -u)
want="localhost:5001/kind-kafka-rs/consumer@sha256:$(printf '2%.0s' {1..64})
localhost:5001/kind-kafka-rs/producer@sha256:$(printf '1%.0s' {1..64})"
[[ $images == "$want" ]] || die "pinned overlay images are:
$images"
python3 - "$OUT/kind-pinned.yaml" <<'EOF' || die "pinned overlay: the producer Job's settings"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == "producer")
env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
assert env["PRODUCER_MESSAGES"] == "42", env
assert env["PRODUCER_RUN_ID"] == "11111111-2222-3333-4444-555555555555", env
names = [e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]]
assert len(names) == len(set(names)), names
EOF
ok "pinned overlay: both images by digest, PRODUCER_MESSAGES and PRODUCER_RUN_ID set once"
python3 - "$OUT/canary.yaml" <<'EOF' || die "k8s/canary: the canary producer Deployment"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
assert not [d for d in docs if d["kind"] == "Job"], "the canary overlay still has a Job"
dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "producer-canary")
env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
assert env["PRODUCER_CONTINUOUS"] == "true" and int(env["PRODUCER_RATE"]) > 0, env
# The overlay is what the placement option is for: one partition led by
# each broker, kept so as brokers come and go.
assert env["CANARY_TOPIC_BALANCE"] == "true", env
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "kafka-config")
assert cm["data"]["KAFKA_TOPIC"] == "canary", cm["data"]
assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "consumer" for d in docs)
EOF
ok "k8s/canary: the Job replaced by Deployment producer-canary (--continuous, a rate, CANARY_TOPIC_BALANCE), both services on topic canary"
for f in "${RENDERED[@]}"; do
    ! grep -q '^kind: Secret$' "$f" || die "${f##*/} holds a Secret: \`kubectl apply -k\` would replace a real kafka-credentials"
done
kubernetes-validate --strict --quiet -k "${VERSIONS%% *}" k8s/overlays/kind/secret.example.yaml || die "k8s/overlays/kind/secret.example.yaml"
ok "no Secret in any render; k8s/overlays/kind/secret.example.yaml (created by deploy.sh only where none exists) validates"

# ---- 4. hadolint ------------------------------------------------------------------------
hadolint Dockerfile.producer Dockerfile.consumer || die "hadolint"
ok "hadolint Dockerfile.producer Dockerfile.consumer"

# ---- 5. checkov -----------------------------------------------------------------------------
# The rendered files first; checkov wants a known extension.
checkov_args=()
for f in "${RENDERED[@]}"; do checkov_args+=(-f "$f"); done
if ! checkov --config-file .checkov.yaml --framework dockerfile kubernetes \
    -f Dockerfile.producer -f Dockerfile.consumer "${checkov_args[@]}" >"$OUT/checkov.txt" 2>&1; then
    cat "$OUT/checkov.txt" >&2
    die "checkov"
fi
summary=$(grep -E 'Passed checks: [0-9]+, Failed checks: [0-9]+, Skipped checks: [0-9]+' "$OUT/checkov.txt" | tr '\n' ' ')
[[ -n $summary ]] || { cat "$OUT/checkov.txt" >&2; die "checkov printed no summary"; }
if grep -Eq 'Failed checks: [1-9]' "$OUT/checkov.txt"; then cat "$OUT/checkov.txt" >&2; die "checkov: failed checks"; fi
ok "checkov (dockerfile, kubernetes): $summary"

# ---- 6. compose, kind ----------------------------------------------------------------------------
check-jsonschema --builtin-schema vendor.compose-spec compose.yaml >/dev/null || die "compose.yaml does not match the Compose specification"
ok "compose.yaml matches the Compose specification"
python3 - k8s/kind/cluster.yaml <<'EOF' || die "k8s/kind/cluster.yaml"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
assert c["kind"] == "Cluster" and c["apiVersion"] == "kind.x-k8s.io/v1alpha4", c
roles = [n["role"] for n in c["nodes"]]
assert roles.count("control-plane") == 1 and roles.count("worker") >= 2, roles
assert any('config_path = "/etc/containerd/certs.d"' in p for p in c["containerdConfigPatches"])
EOF
ok "k8s/kind/cluster.yaml: control plane + $(grep -c 'role: worker' k8s/kind/cluster.yaml) workers, containerd certs.d"

# ---- 7. KEDA autoscaling component ---------------------------------------------------------------
# kustomize loads a kustomization's files only below its own directory: the
# throwaway overlay lives under target/ (ignored by git).
mkdir -p target
KEDA_OUT=$(mktemp -d "$PWD/target/k8s-check-keda.XXXXXX")
at_exit "rm -rf '$KEDA_OUT'"
cat >"$KEDA_OUT/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../k8s/overlays/kind
components:
  - ../../k8s/keda
EOF
kubectl kustomize "$KEDA_OUT" >"$OUT/keda.yaml" || die "kubectl kustomize k8s/overlays/kind + component k8s/keda"
split_crs "$OUT/keda.yaml" "$OUT/keda" keda.sh/ ScaledObject TriggerAuthentication || die "k8s/keda: its render (above)"
kubernetes-validate --strict --quiet -k "${VERSIONS%% *}" "$OUT/keda-builtin.yaml" || die "kubernetes-validate --strict: k8s/overlays/kind + k8s/keda"
for kind in scaledobject triggerauthentication; do
    check-jsonschema --schemafile "k8s/keda/tests/schemas/${kind}_v1alpha1.json" "$OUT/keda-$kind.yaml" >"$OUT/keda-schema.txt" 2>&1 ||
        { cat "$OUT/keda-schema.txt" >&2; die "check-jsonschema: $kind against the strict KEDA 2.21.0 schema"; }
done
ok "kubectl kustomize k8s/overlays/kind + component k8s/keda: $(grep -c '^kind:' "$OUT/keda.yaml") objects; ScaledObject and TriggerAuthentication valid against the strict KEDA 2.21.0 CRD schemas, the rest kubernetes-validate --strict"
python3 - "$OUT/keda.yaml" "$OUT/kafka.yaml" k8s/base/configmap.yaml consumer/src/config.rs >"$OUT/keda-summary.txt" <<'EOF' || die "k8s/keda does not fit k8s/base and k8s/kafka (above)"
import re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kafka = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
cm_source, consumer_config = open(sys.argv[3]).read(), open(sys.argv[4]).read()
# What KEDA 2.21.0's kafka scaler reads (pkg/scalers/kafka_scaler.go, its
# `keda:"name=...,order=..."` tags): trigger metadata (the resolvedEnv ones
# also as NAMEFromEnv) and authentication parameters.
KEDA_VERSION = "2.21.0"
TRIGGER_KEYS = set("""bootstrapServers bootstrapServersFromEnv consumerGroup consumerGroupFromEnv
    topic topicFromEnv partitionLimitation lagThreshold activationLagThreshold offsetResetPolicy
    allowIdleConsumers excludePersistentLag scaleToZeroOnInvalidOffset limitToPartitionsWithLag
    ensureEvenDistributionOfPartitions fullMetadata version tls unsafeSsl sasl saslTokenProvider
    awsRegion""".split())
AUTH_PARAMS = set("""tls ca cert key keyPassword sasl username password saslTokenProvider scopes
    oauthTokenEndpointUri oauthExtensions keytab ccacheName realm kerberosConfig
    kerberosServiceName kerberosDisableFAST""".split())
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
def one(kind, name=None, among=docs):
    found = [d for d in among if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]

so, ta = one("ScaledObject"), one("TriggerAuthentication")
spec = so["spec"]
ref = spec["scaleTargetRef"]
dep = one(ref.get("kind", "Deployment"), ref["name"])
check(ref.get("apiVersion", "apps/v1") == dep["apiVersion"], f"scaleTargetRef apiVersion {ref.get('apiVersion')} is not {dep['apiVersion']}")
check(dep["metadata"]["name"] == "consumer", f"the ScaledObject scales {dep['kind']} {dep['metadata']['name']}, not the consumer")
for d in (so, ta):
    check(d["metadata"].get("namespace") == dep["metadata"]["namespace"],
          f"{d['kind']} is in {d['metadata'].get('namespace')}, the consumer in {dep['metadata']['namespace']}")
check("replicas" not in dep["spec"], "the consumer Deployment still sets spec.replicas: every apply would undo the autoscaler")
containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
cname = ref.get("envSourceContainerName") or next(iter(containers))
check(cname in containers, f"envSourceContainerName {cname!r} is not a container of the Deployment {sorted(containers)}")
container = containers.get(cname, next(iter(containers.values())))
# The container's environment as KEDA resolves it: envFrom ConfigMaps, then env.
env, cms = {}, {}
for src in container.get("envFrom", []):
    if "configMapRef" in src:
        cm = one("ConfigMap", src["configMapRef"]["name"])
        cms[cm["metadata"]["name"]] = cm
        env.update(cm["data"])
env.update({e["name"]: e.get("value") for e in container.get("env", [])})

check(len(spec["triggers"]) == 1 and spec["triggers"][0]["type"] == "kafka",
      f"triggers: {[t['type'] for t in spec['triggers']]}, expected one kafka trigger")
trig = spec["triggers"][0]
md = trig["metadata"]
for k in sorted(set(md) - TRIGGER_KEYS):
    errors.append(f"trigger metadata key {k!r} is not one KEDA {KEDA_VERSION}'s kafka scaler reads")
def value(key):
    if key + "FromEnv" in md:
        var = md[key + "FromEnv"]
        check(var in env, f"{key}FromEnv: {var} is not in the {cname} container's environment (env, envFrom {sorted(cms)})")
        return env.get(var)
    return md.get(key)
bootstrap, group, topic = value("bootstrapServers"), value("consumerGroup"), value("topic")
check(bootstrap and bootstrap == env.get("KAFKA_BOOTSTRAP_SERVER"), f"bootstrap servers {bootstrap!r}, the consumer uses {env.get('KAFKA_BOOTSTRAP_SERVER')!r}")
check(group and group == env.get("KAFKA_CONSUMER_GROUP"), f"consumer group {group!r}, the consumer joins {env.get('KAFKA_CONSUMER_GROUP')!r}")
check(topic and topic == env.get("KAFKA_TOPIC"), f"topic {topic!r}, the consumer reads {env.get('KAFKA_TOPIC')!r}")
for k in ("lagThreshold", "activationLagThreshold"):
    check(str(md.get(k, "")).isdigit(), f"trigger metadata {k} must be a whole number, is {md.get(k)!r}")
check(str(md.get("lagThreshold", "")).isdigit() and int(md["lagThreshold"]) > 0, "lagThreshold must be positive (KEDA rejects 0)")
check(md.get("allowIdleConsumers") == "false", f"allowIdleConsumers is {md.get('allowIdleConsumers')!r}: must be \"false\" (no member beyond the partitions)")
# The consumer's reset policy: its env, else the default of consumer/src/config.rs.
default = re.search(r'"CONSUMER_AUTO_OFFSET_RESET".*?\.default\("(\w+)"\)', consumer_config, re.S).group(1)
reset = env.get("CONSUMER_AUTO_OFFSET_RESET") or default
check(md.get("offsetResetPolicy", "latest") == reset,
      f"offsetResetPolicy {md.get('offsetResetPolicy', 'latest (KEDA default)')!r}, the consumer's CONSUMER_AUTO_OFFSET_RESET is {reset!r}")
# Replicas: min <= max (the CRD's CEL rule), max = the topic's partitions.
lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
check(lo <= hi, f"minReplicaCount {lo} > maxReplicaCount {hi}")
topic_job = one("Job", among=kafka)
tenv = {e["name"]: e.get("value") for e in topic_job["spec"]["template"]["spec"]["containers"][0]["env"]}
check(tenv.get("TOPIC") == topic, f"k8s/kafka creates topic {tenv.get('TOPIC')!r}, the consumer reads {topic!r}")
check(str(hi) == tenv.get("PARTITIONS"), f"maxReplicaCount {hi}, the topic has {tenv.get('PARTITIONS')} partitions (k8s/kafka)")
down = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {}).get("scaleDown", {})
check(down.get("stabilizationWindowSeconds", 0) >= 60,
      f"scaleDown.stabilizationWindowSeconds is {down.get('stabilizationWindowSeconds')}: each step is a rebalance, keep a window of a minute or more")
check(any(p["type"] == "Pods" and p["value"] == 1 for p in down.get("policies", [])), "scaleDown: no policy removing one pod at a time")
# sasl / tls as KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_MECHANISM say, in KEDA's spelling.
proto, mech = env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"), env.get("KAFKA_SASL_MECHANISM") or ""
want_sasl = {"": "none", "PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}.get(mech if proto.startswith("SASL_") else "")
check(md.get("sasl", "none") == want_sasl, f"sasl {md.get('sasl')!r}, but the services use {proto} {mech!r}: {want_sasl!r}")
want_tls = "enable" if proto in ("SSL", "SASL_SSL") else "disable"
check(md.get("tls", "disable") == want_tls, f"tls {md.get('tls')!r}, but the services use {proto}: {want_tls!r}")
# TriggerAuthentication: the very keys the services read.
check(trig.get("authenticationRef", {}).get("name") == ta["metadata"]["name"],
      f"authenticationRef {trig.get('authenticationRef')} is not TriggerAuthentication {ta['metadata']['name']}")
mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
secrets = {v["secret"]["secretName"]: mounts.get(v["name"]) for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v}
# The CA file: KAFKA_SSL_CA_FILE, set, or as k8s/base/configmap.yaml documents it.
ca_file = env.get("KAFKA_SSL_CA_FILE") or (re.search(r"KAFKA_SSL_CA_FILE:\s*(\S+)", cm_source) or [None, None])[1]
files = {"password": env.get("KAFKA_PASSWORD_FILE"), "ca": ca_file}
params = []
for r in ta["spec"].get("secretTargetRef", []):
    params.append(r["parameter"])
    check(r["name"] in secrets, f"secretTargetRef {r['parameter']}: Secret {r['name']} is not one the consumer mounts {sorted(secrets)}")
    got = f"{secrets.get(r['name'])}/{r['key']}"
    check(files.get(r["parameter"]) == got, f"secretTargetRef {r['parameter']}: key {r['key']} is the file {got}, the services read {files.get(r['parameter'])}")
for r in ta["spec"].get("configMapTargetRef", []):
    params.append(r["parameter"])
    check(r["key"] in cms.get(r["name"], {}).get("data", {}), f"configMapTargetRef {r['parameter']}: {r['name']}/{r['key']} is not a key of the consumer's ConfigMaps")
    check(r["parameter"] != "username" or r["key"] == "KAFKA_USERNAME", f"username from {r['key']}, the services use KAFKA_USERNAME")
for p in params:
    check(p in AUTH_PARAMS, f"TriggerAuthentication parameter {p!r} is not one KEDA {KEDA_VERSION}'s kafka scaler reads")
for p in ("username", "password", "ca"):
    check(p in params, f"TriggerAuthentication lacks {p!r}")
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"scales Deployment {dep['metadata']['name']} (spec.replicas removed) on group {group}, topic {topic}, bootstrap from its env;"
      f" {lo}..{hi} replicas ({hi} partitions), lagThreshold {md['lagThreshold']}, activation {md['activationLagThreshold']},"
      f" scale-down window {down['stabilizationWindowSeconds']}s; sasl {md.get('sasl')}, tls {md.get('tls')} as {proto};"
      f" {', '.join(sorted(params))} from kafka-config/kafka-credentials keys the services read; keys known to KEDA {KEDA_VERSION}'s kafka scaler")
EOF
ok "k8s/keda: $(cat "$OUT/keda-summary.txt")"

# ---- 8. make monitoring: k8s/monitoring-stack --------------------------------------------------
# Its built-in objects went through steps 2-5 with the other renders; here
# the Prometheus resource against the operator's CRD schema made strict, and
# the wiring: what the Prometheus selects is what k8s/monitoring labels,
# Grafana's datasource is that Prometheus' Service, its dashboards are the
# component's ConfigMap, the names scripts/deploy.sh waits for and creates.
for kind in prometheus servicemonitor; do
    check-jsonschema --schemafile "k8s/monitoring/tests/schemas/${kind}_v1.json" "$OUT/stack-$kind.yaml" >"$OUT/stack-schema.txt" 2>&1 ||
        { cat "$OUT/stack-schema.txt" >&2; die "check-jsonschema: k8s/monitoring-stack's $kind against the strict prometheus-operator 0.93 schema"; }
done
python3 - "$OUT/monitoring-stack.yaml" k8s/monitoring scripts/deploy.sh k8s/base/networkpolicy.yaml >"$OUT/stack-summary.txt" <<'EOF' || die "k8s/monitoring-stack wiring (above)"
import json, os, re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
comp_dir, deploy_sh = sys.argv[2], open(sys.argv[3]).read()
netpol = next(d for d in yaml.safe_load_all(open(sys.argv[4])) if d and d["metadata"]["name"] == "kafka-services")
comp = {}
for f in os.listdir(comp_dir):
    if f.endswith(".yaml") and f != "kustomization.yaml":
        for d in yaml.safe_load_all(open(os.path.join(comp_dir, f))):
            if d and "kind" in d:
                comp[d["kind"]] = d
comp_k = yaml.safe_load(open(os.path.join(comp_dir, "kustomization.yaml")))
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)
def one(kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
def matches(sel, labels):
    return all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items()) and not sel.get("matchExpressions")

prom = one("Prometheus")
ns = prom["metadata"]["namespace"]
ps = prom["spec"]
check(one("Namespace")["metadata"]["name"] == ns, f"the Namespace is not {ns}")
peers = [p for r in netpol["spec"]["ingress"] for p in r.get("from", [])]
check(any(p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == ns for p in peers),
      f"k8s/base's NetworkPolicy does not admit scrapes from namespace {ns}")
# What the Prometheus selects: the component's objects, in any namespace.
for field, kind in (("serviceMonitor", "ServiceMonitor"), ("podMonitor", "PodMonitor"), ("rule", "PrometheusRule")):
    obj = comp[kind]
    check(matches(ps.get(field + "Selector", {"matchLabels": {"": "nil selects nothing"}}), obj["metadata"].get("labels", {})),
          f"{field}Selector {ps.get(field + 'Selector')} does not select {kind} {obj['metadata']['name']} (labels {obj['metadata'].get('labels')})")
    check(ps.get(field + "NamespaceSelector") == {}, f"{field}NamespaceSelector is not {{}} (all namespaces): {kind} is in {obj['metadata']['namespace']}")
# Its service account may discover targets everywhere.
sa = ps.get("serviceAccountName")
one("ServiceAccount", sa)
roles = {r["metadata"]["name"]: r for r in docs if r["kind"] == "ClusterRole"}
bound = [b["roleRef"]["name"] for b in docs if b["kind"] == "ClusterRoleBinding"
         and any(s["kind"] == "ServiceAccount" and s["name"] == sa and s.get("namespace") == ns for s in b["subjects"])]
granted = {(res, v) for n in bound for r in roles.get(n, {}).get("rules", []) for res in r.get("resources", []) for v in r.get("verbs", [])}
for res in ("services", "pods", "endpointslices"):
    for v in ("list", "watch"):
        check((res, v) in granted, f"ServiceAccount {sa} may not {v} {res} (ClusterRoles bound: {bound})")
# Service prometheus -> the pods the operator labels (prometheus-operator 0.93:
# pkg/prometheus/server/operator.go) on its port "web".
name = prom["metadata"]["name"]
pod_labels = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": name,
              "operator.prometheus.io/name": name, "prometheus": name}
svc = one("Service", "prometheus")
check(matches({"matchLabels": svc["spec"]["selector"]}, pod_labels), f"Service prometheus selects {svc['spec']['selector']}, not the operator's pods {pod_labels}")
port = svc["spec"]["ports"][0]
check(port["targetPort"] == "web", f"Service prometheus targets {port['targetPort']}, the operator's container port is named web")
check(f"statefulset/prometheus-{name}" in deploy_sh, f"scripts/deploy.sh does not wait for statefulset/prometheus-{name} (what the operator creates)")
# Grafana: the datasource is that Service; provisioning files where mounted.
graf = one("Deployment", "grafana")
pod = graf["spec"]["template"]["spec"]
c = pod["containers"][0]
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
vols = {v["name"]: v for v in pod["volumes"]}
cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
ds = yaml.safe_load(cms["grafana-datasources"]["data"]["datasources.yaml"])["datasources"]
check(len(ds) == 1 and ds[0]["type"] == "prometheus" and ds[0].get("isDefault"), f"datasources: {ds}")
want_url = f"http://prometheus.{ns}.svc:{port['port']}"
check(ds[0]["url"] == want_url, f"datasource url {ds[0]['url']}, the Service is {want_url}")
check(ds[0].get("jsonData", {}).get("timeInterval") == ps.get("scrapeInterval"),
      f"datasource timeInterval {ds[0].get('jsonData', {}).get('timeInterval')} is not the scrapeInterval {ps.get('scrapeInterval')} ($__rate_interval)")
prov = yaml.safe_load(cms["grafana-dashboard-providers"]["data"]["dashboards.yaml"])["providers"]
for volname, cmname, path in (("datasources", "grafana-datasources", "/etc/grafana/provisioning/datasources"),
                              ("dashboard-providers", "grafana-dashboard-providers", "/etc/grafana/provisioning/dashboards")):
    check(vols.get(volname, {}).get("configMap", {}).get("name") == cmname and mounts.get(volname) == path,
          f"volume {volname}: ConfigMap {cmname} must be mounted at {path} (Grafana's provisioning directory)")
# The dashboards volume is the component's generated ConfigMap (namespace monitoring).
gen = {g["name"]: g for g in comp_k["configMapGenerator"]}
dash_cm = vols.get("dashboards", {}).get("configMap", {}).get("name")
check(dash_cm in gen and gen[dash_cm].get("namespace") == ns, f"volume dashboards: ConfigMap {dash_cm} is not generated by k8s/monitoring in {ns}")
keys = [f.split("=", 1)[0] for f in gen.get(dash_cm, {}).get("files", [])]
check(len(prov) == 1 and prov[0]["options"]["path"] == mounts.get("dashboards"),
      f"dashboard provider path {prov[0]['options']['path']}, the dashboards are mounted at {mounts.get('dashboards')}")
env = {e["name"]: e for e in c["env"]}
home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", {}).get("value", "")
check(home.rsplit("/", 1)[0] == mounts.get("dashboards") and home.rsplit("/", 1)[1] in keys, f"home dashboard {home} is not one of {keys} under {mounts.get('dashboards')}")
dash = json.load(open(os.path.join(comp_dir, gen[dash_cm]["files"][0].split("=", 1)[1])))
dvar = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
check(dvar["query"] == ds[0]["type"], f"the dashboard's datasource variable wants {dvar['query']}, the datasource is {ds[0]['type']}")
# The admin Secret: the files Grafana reads are keys scripts/deploy.sh creates.
for var in ("GF_SECURITY_ADMIN_USER__FILE", "GF_SECURITY_ADMIN_PASSWORD__FILE"):
    d, key = env[var]["value"].rsplit("/", 1)
    vol = next((n for n, m in mounts.items() if m == d), None)
    secret = vols.get(vol, {}).get("secret", {}).get("secretName")
    check(secret and f"create secret generic {secret}" in deploy_sh and f"--from-literal={key}=" in deploy_sh,
          f"{var}: {d}/{key} is not a key of a Secret scripts/deploy.sh creates (volume {vol}, Secret {secret})")
# kube-state-metrics: scraped by that Prometheus, covering every kube_*
# metric the alerts read, with the permissions for them.
ksm, ksm_sm, ksm_svc = one("Deployment", "kube-state-metrics"), one("ServiceMonitor", "kube-state-metrics"), one("Service", "kube-state-metrics")
check(matches(ps["serviceMonitorSelector"], ksm_sm["metadata"].get("labels", {})), "the Prometheus does not select ServiceMonitor kube-state-metrics")
check(matches(ksm_sm["spec"]["selector"], ksm_svc["metadata"]["labels"]) and matches({"matchLabels": ksm_svc["spec"]["selector"]}, ksm["spec"]["template"]["metadata"]["labels"]),
      "ServiceMonitor kube-state-metrics -> Service -> pods do not select each other")
check(all(ep["port"] in {p["name"] for p in ksm_svc["spec"]["ports"]} and ep.get("honorLabels") for ep in ksm_sm["spec"]["endpoints"]),
      "ServiceMonitor kube-state-metrics: a port the Service lacks, or honorLabels not set (namespace/pod would become exported_*)")
args = ksm["spec"]["template"]["spec"]["containers"][0]["args"]
resources = set(next(a for a in args if a.startswith("--resources=")).split("=", 1)[1].split(","))
rules_text = open(os.path.join(comp_dir, "prometheusrule.yaml")).read()
needed = {{"pod": "pods", "job": "jobs"}[m] for m in re.findall(r"\bkube_(pod|job)_\w+", rules_text)}
check(needed <= resources, f"the alerts read kube_* metrics of {sorted(needed)}, kube-state-metrics collects {sorted(resources)}")
ksa = ksm["spec"]["template"]["spec"]["serviceAccountName"]
kbound = [b["roleRef"]["name"] for b in docs if b["kind"] == "ClusterRoleBinding"
          and any(s["kind"] == "ServiceAccount" and s["name"] == ksa and s.get("namespace") == ns for s in b["subjects"])]
kgranted = {(res, v) for n in kbound for r in roles.get(n, {}).get("rules", []) for res in r.get("resources", []) for v in r.get("verbs", [])}
for res in sorted(resources):
    check((res, "list") in kgranted and (res, "watch") in kgranted, f"kube-state-metrics may not list/watch {res}")
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
print(f"Prometheus {name} selects the ServiceMonitor, PodMonitor and PrometheusRule of k8s/monitoring in any namespace (RBAC to discover them),"
      f" Service prometheus -> its pods; Grafana: datasource {want_url} (timeInterval {ps['scrapeInterval']}), dashboards from ConfigMap {dash_cm} at {mounts['dashboards']},"
      f" admin Secret keys as scripts/deploy.sh creates them; kube-state-metrics ({','.join(sorted(resources))}) scraped with honorLabels, covering the alerts' kube_* metrics")
EOF
ok "k8s/monitoring-stack: Prometheus, ServiceMonitor valid against the strict prometheus-operator 0.93 schemas; $(cat "$OUT/stack-summary.txt")"

# ---- 9. kube-linter (optional) ------------------------------------------------------------------
if ! command -v kube-linter >/dev/null 2>&1 && command -v go >/dev/null 2>&1; then
    mkdir -p "$TOOLS_DIR/bin"
    GOBIN="$TOOLS_DIR/bin" timeout 300 go install golang.stackrox.io/kube-linter/cmd/kube-linter@latest >"$OUT/kube-linter-install.txt" 2>&1 || true
fi
if command -v kube-linter >/dev/null 2>&1; then
    kube-linter lint "${RENDERED[@]}" || die "kube-linter"
    ok "kube-linter lint: the ${#RENDERED[@]} renders"
else
    echo "k8s-check: note kube-linter not installed (go install golang.stackrox.io/kube-linter/cmd/kube-linter: $(tail -n1 "$OUT/kube-linter-install.txt" 2>/dev/null || echo 'no go toolchain')); checkov covers the same ground" >&2
fi

echo "k8s-check: PASS in $((SECONDS - START))s" >&2
