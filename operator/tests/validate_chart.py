#!/usr/bin/env python3
"""Lint and render the operator's Helm chart with the real Helm library, and validate every
manifest we ship against Kubernetes schemas.

- `helm lint --strict` and `helm template` through helm-python-sdk (libhelm_c: Helm's Go SDK
  behind a C ABI, bundled in the wheel; no `helm` binary needed);
- every rendered object, the chart's CRD and the objects the operator's builders produce
  (`--objects DIR`, JSON files) through kubernetes-validate in strict mode;
- the chart's `crds/` and `manifests/tikv-operator.yaml` compared with what the code and chart
  produce (drift fails; `--write` regenerates the install manifest);
- the example TikvClusters in `manifests/` against the CRD's own openAPIV3Schema, read the way
  the API server reads it (unknown fields refused, nullable, int-or-string), and bad clusters
  refused with a message naming the field.

Exit 0 when all holds; 2 when helm-python-sdk or kubernetes-validate is not importable (the
Rust wrapper reports SKIPPED); 1 with a list of failures otherwise.
"""

import argparse
import copy
import json
import pathlib
import sys

try:
    import helm_python as helm
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - exercised where the packages are missing
    print(f"SKIPPED: {e}", file=sys.stderr)
    sys.exit(2)

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tikv-operator"
CRD_FILE = ROOT / "crds" / "tikvclusters.yaml"
INSTALL_MANIFEST = ROOT / "manifests" / "tikv-operator.yaml"
RELEASE = "tikv-operator"
NAMESPACE = "tikv-operator"
KUBE_VERSION = "1.33.0"  # oldest Kubernetes the chart's defaults target; schemas are strict

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def ok(msg):
    print(f"ok   {msg}")


def kube_validate(obj, what):
    try:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        ok(f"{what}: {obj['kind']}/{obj['metadata'].get('name')} valid for Kubernetes {KUBE_VERSION}")
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        fail(f"{what}: {obj['kind']}/{obj['metadata'].get('name')}: {path}: {e.message}")


def lint_chart():
    for values in ({}, {"clusterScoped": False, "leaderElection": {"enabled": False}}):
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        bad = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        bad += report.get("errors") or []
        if bad:
            fail(f"helm lint --strict (values {values}): {bad}")
        else:
            ok(f"helm lint --strict (values {values})")


def render(values=None):
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(values or {})
    rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path in sorted(rendered):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs += [d for d in yaml.safe_load_all(rendered[path]) if d]
    return chart, docs


def check_values_schema_refuses_bad_values():
    chart = helm.Chart.load(str(CHART))
    for bad in ({"replicaCount": 0}, {"metrics": {"port": "http"}}, {"unknownKey": 1}):
        try:
            chart.validate_schema(bad)
            fail(f"values.schema.json accepted {bad}")
        except helm.HelmError as e:
            detail = " ".join(line.strip("- ") for line in str(e).splitlines()[1:])
            ok(f"values.schema.json refuses {bad}: {detail}")


def check_topology_rbac(docs):
    """The placement topology ClusterRole reads pods and nodes and nothing else; the operator
    may bind exactly that ClusterRole, and is told its name."""
    role_name = f"{RELEASE}-placement-topology"
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    role = by.get(("ClusterRole", role_name))
    want = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]},
    ]
    if role is None or role["rules"] != want:
        fail(f"ClusterRole {role_name}: expected rules {want}, got {role and role['rules']}")
    else:
        ok(f"ClusterRole {role_name} reads pods and nodes only")
    binder = by.get(("ClusterRole", f"{RELEASE}-topology-binder"))
    rules = binder["rules"] if binder else []
    binds = [r for r in rules if "bind" in r["verbs"]]
    crb = [r for r in rules if "clusterrolebindings" in r["resources"]]
    if (
        len(binds) != 1
        or binds[0].get("resourceNames") != [role_name]
        or binds[0]["resources"] != ["clusterroles"]
        or len(crb) != 1
        or not {"create", "update", "delete"} <= set(crb[0]["verbs"])
    ):
        fail(f"topology binder rules are not least privilege: {rules}")
    else:
        ok(f"operator may bind only {role_name} and manage clusterrolebindings")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    flag = f"--placement-topology-cluster-role={role_name}"
    if flag not in args:
        fail(f"the operator is not told the topology ClusterRole ({flag} missing from {args})")
    else:
        ok(f"the operator is told {flag}")


def install_manifest(chart, docs):
    """The CRD then every rendered object, for plain `kubectl apply -f`."""
    crds = [c["data"] for c in chart.crds]
    header = "# Generated by operator/tests/validate_chart.py --write from charts/tikv-operator; do not edit.\n"
    body = "---\n".join(c if c.endswith("\n") else c + "\n" for c in crds)
    for d in docs:
        body += "---\n" + yaml.safe_dump(d, sort_keys=False)
    return header + body


def openapi_to_jsonschema(node):
    """The API server's reading of a structural schema, as JSON Schema: object fields not
    listed are unknown (strict field validation refuses them), `nullable` admits null,
    `x-kubernetes-int-or-string` admits both."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if (
        node.get("type") == "object"
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(crd):
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    js = openapi_to_jsonschema(copy.deepcopy(schema))
    # The API server owns and checks these itself.
    js["properties"]["apiVersion"] = {"const": "tikv.ferrokv.io/v1alpha1"}
    js["properties"]["kind"] = {"const": "TikvCluster"}
    js["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(js)


def errors_of(validator, obj):
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


def check_examples(validator):
    for f in sorted((ROOT / "manifests").glob("tikvcluster-*.yaml")):
        for obj in yaml.safe_load_all(f.read_text()):
            errs = errors_of(validator, obj)
            if errs:
                fail(f"{f.name}: {errs}")
            else:
                ok(f"{f.name}: valid against the TikvCluster CRD schema")


BAD_CLUSTERS = {
    "negative replicas": ({"store": {"replicas": -1}}, "spec.store.replicas", "minimum"),
    "unknown field": ({"storeReplicas": 3}, "spec", "'storeReplicas' was unexpected"),
    "bad quantity": ({"store": {"storage": {"size": "10 gigs"}}}, "spec.store.storage.size", "does not match"),
    "negative quantity": ({"placement": {"storage": {"size": "-1Gi"}}}, "spec.placement.storage.size", "does not match"),
    "bad duration": ({"evictLeaderTimeout": "soon"}, "spec.evictLeaderTimeout", "does not match"),
    "bad service type": ({"store": {"serviceType": "Headless"}}, "spec.store.serviceType", "is not one of"),
    "bad failover period": ({"failoverPeriod": "5 minutes"}, "spec.failoverPeriod", "does not match"),
    "bad reclaim policy": ({"pvReclaimPolicy": "Recycle"}, "spec.pvReclaimPolicy", "is not one of"),
}


def check_bad_clusters_refused(validator):
    for name, (spec, path, needle) in BAD_CLUSTERS.items():
        obj = {"apiVersion": "tikv.ferrokv.io/v1alpha1", "kind": "TikvCluster", "metadata": {"name": "bad"}, "spec": spec}
        errs = errors_of(validator, obj)
        if any(e.startswith(path + ":") and needle in e for e in errs):
            ok(f"bad TikvCluster ({name}) refused: {errs[0]}")
        else:
            fail(f"bad TikvCluster ({name}) not refused as expected at {path} ({needle}); got {errs}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=pathlib.Path, help="directory of JSON objects the builders produced")
    ap.add_argument("--write", action="store_true", help="rewrite manifests/tikv-operator.yaml")
    args = ap.parse_args()

    print(f"helm SDK {helm.helm_sdk_version()} (libhelm_c {helm.helm_c_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else '?'}")
    lint_chart()
    check_values_schema_refuses_bad_values()

    chart, docs = render()
    for d in docs:
        kube_validate(d, "chart")
    check_topology_rbac(docs)
    _, ns_docs = render({"clusterScoped": False})
    # Only the placement-topology roles may be cluster-wide; the operator's own role is a Role.
    wide = sorted(d["metadata"]["name"] for d in ns_docs if d["kind"] == "ClusterRole")
    if RELEASE in wide:
        fail(f"clusterScoped=false still renders the operator's ClusterRole: {wide}")
    for d in ns_docs:
        kube_validate(d, "chart (namespaced)")

    chart_crds = chart.crds
    if len(chart_crds) != 1 or chart_crds[0]["data"] != CRD_FILE.read_text():
        fail("charts/tikv-operator/crds/ differs from crds/tikvclusters.yaml (run crdgen and copy)")
    else:
        ok("chart CRD matches crds/tikvclusters.yaml")
    crd = yaml.safe_load(CRD_FILE.read_text())
    kube_validate(crd, "crds/")

    manifest = install_manifest(chart, docs)
    if args.write:
        INSTALL_MANIFEST.write_text(manifest)
        ok(f"wrote {INSTALL_MANIFEST.relative_to(ROOT)}")
    elif not INSTALL_MANIFEST.exists() or INSTALL_MANIFEST.read_text() != manifest:
        fail("manifests/tikv-operator.yaml drifted from the chart (run validate_chart.py --write)")
    else:
        ok("manifests/tikv-operator.yaml matches the rendered chart")
    for d in yaml.safe_load_all(INSTALL_MANIFEST.read_text()):
        if d:
            kube_validate(d, "manifests/tikv-operator.yaml")

    validator = crd_validator(crd)
    check_examples(validator)
    check_bad_clusters_refused(validator)

    if args.objects:
        for f in sorted(args.objects.glob("*.json")):
            kube_validate(json.loads(f.read_text()), f"builders ({f.name})")

    if failures:
        print(f"\n{len(failures)} failure(s)")
        return 1
    print("\nall chart, CRD and manifest checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
