#!/usr/bin/env bash
# Offline checks of the deployment files (there is no Docker engine or
# cluster here): every YAML parses, the kustomization renders, the Grafana
# dashboard is JSON whose queries name metrics upshift exports, and the
# compose file validates against the Compose spec.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import glob, json, re, sys, yaml
for f in sorted(glob.glob("deploy/**/*.yaml", recursive=True)) + ["docker-compose.yml"]:
    docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    assert docs, f"{f}: empty"
    print(f"ok  {f} ({len(docs)} document(s))")
dash = json.load(open("deploy/grafana/upshift-dashboard.json"))
code = "".join(open(f).read() for f in glob.glob("orchestrator/src/**/*.rs", recursive=True) + glob.glob("worker/src/**/*.rs", recursive=True))
exported = set(re.findall(r'"(upshift_[a-z_]+)"', code))
for p in dash["panels"]:
    for t in p["targets"]:
        for m in re.findall(r"upshift_[a-z_]+", t["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            if base not in exported:
                sys.exit(f"dashboard panel '{p['title']}' uses {m}, which upshift does not export")
print(f"ok  deploy/grafana/upshift-dashboard.json ({len(dash['panels'])} panels, metrics exist)")
PY

# The compose file's NATS config parses (with placeholder passwords; a
# missing one is an error at boot) and its users are the generated ones (the
# integration test `nats_auth` compares them).
if [[ -x /usr/sbin/nats-server ]]; then
  env UPSHIFT_NATS_ORCHESTRATOR_PASSWORD=x UPSHIFT_NATS_WORKER_SMALL_PASSWORD=x \
    UPSHIFT_NATS_WORKER_MEDIUM_PASSWORD=x UPSHIFT_NATS_WORKER_STRONG_PASSWORD=x \
    /usr/sbin/nats-server -c deploy/nats/server.conf -t
else
  echo "skip nats-server -t (nats-server not installed)"
fi

if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/kubernetes >/dev/null
  echo "ok  kubectl kustomize deploy/kubernetes"
else
  echo "skip kubectl kustomize (kubectl not installed)"
fi

python3 -m pip install --quiet --disable-pip-version-check 'check-jsonschema==0.35.0'
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
