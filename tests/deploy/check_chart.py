#!/usr/bin/env python3
"""The Helm chart deploy/helm/vigil, checked offline (tests/tests/helm_chart.rs).

    check_chart.py check          helm lint; render the default values and the other value sets of
                                  VALUE_SETS; validate every document with `kubernetes-validate
                                  --strict` for each of KUBERNETES_VERSIONS (any error, or a missing
                                  schema for anything but a CRD kind of CRD_KINDS, fails); check what
                                  the schemas cannot (SEMANTICS below); the documented values.yaml
    check_chart.py stale          deploy/k8s/vigil.yaml equals a fresh render of the defaults
    check_chart.py render [OUT]   write that render (scripts/render-k8s.sh; default OUT: stdout)

Runs with the Python of ~/.cache/vigil/k8s-venv (`scripts/setup.sh k8s`: helm-python-sdk, which
renders and lints with Helm's own library, and kubernetes-validate, with the schemas of Kubernetes
1.25-1.37). Nothing here talks to a cluster or the network. Prints `PASS: …` and exits 0, or prints
each failure and exits 1.
"""

from __future__ import annotations

import base64
import copy
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/vigil"
MANIFESTS = REPO / "deploy/k8s/vigil.yaml"
RENDER_SCRIPT = "scripts/render-k8s.sh"
KUBERNETES_VERSIONS = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0"]
# Kinds that are not built into Kubernetes: kubernetes-validate has no schema for them (only these
# may answer "Couldn't find schema").
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
UID = 10001
POD_INDEX_LABEL = "metadata.labels['apps.kubernetes.io/pod-index']"

# Helm's install order (pkg/release/util/kind_sorter.go), as `helm template` prints kinds.
INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]

HEADER = """\
# Vigil on Kubernetes: the Helm chart deploy/helm/vigil rendered with its default values
# (release "vigil", namespace "default"), for clusters without Helm:
#   kubectl create secret generic vigil-token --from-literal=token="$(openssl rand -hex 32)"
#   kubectl apply -f deploy/k8s/vigil.yaml          (or kubectl apply -k deploy/k8s)
# Generated: do not edit. Regenerate with scripts/render-k8s.sh (after scripts/setup.sh k8s);
# tests/tests/helm_chart.rs fails when this file differs from a fresh render.
"""

# (label, release, namespace, values). The default set renders deploy/k8s/vigil.yaml.
VALUE_SETS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("default", "vigil", "default", {}),
    (
        "no-autoscaling-4-shards-servicemonitor",
        "prod",
        "video",
        {
            "autoscaling": {"enabled": False},
            "serve": {
                "replicas": 3,
                "modelControlMode": "explicit",
                "extraArgs": ["--load-model", "nanodet"],
            },
            "pipelines": {"shards": 4, "extraArgs": ["--progress", "60"]},
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
            # A random token (randAlphaNum): the checks below accept any 48 letters and digits.
            "inference": {"token": {"create": True}},
            "image": {"repository": "my-images/vigil", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
            "imagePullSecrets": [{"name": "pull"}],
        },
    ),
    (
        "existing-secret-persistence",
        "cams",
        "default",
        {
            "inference": {"token": {"existingSecret": "fleet-token", "key": "bearer"}},
            "modelRepository": {
                "volume": {"nfs": {"server": "nfs.invalid", "path": "/exports/models", "readOnly": True}},
                "subPath": "repository",
            },
            "serviceAccount": {"create": False, "name": "vigil-runner"},
            "serve": {
                "podDisruptionBudget": {"minAvailable": 1},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "podAnnotations": {"prometheus.io/port": "9999", "team": "video"},
            },
            "autoscaling": {"minReplicas": 2, "maxReplicas": 10, "targetAverageValue": "50"},
            "pipelines": {
                "shards": 3,
                "mountModelRepository": True,
                "persistence": {
                    "enabled": True,
                    "size": "50Gi",
                    "storageClassName": "fast",
                    "retentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
                },
                "podDisruptionBudget": {"minAvailable": 2},
                "extraEnv": [
                    {
                        "name": "CAMERA_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "cameras", "key": "password"}},
                    }
                ],
                "extraVolumes": [
                    {"name": "media", "persistentVolumeClaim": {"claimName": "media", "readOnly": True}}
                ],
                "extraVolumeMounts": [{"name": "media", "mountPath": "/media", "readOnly": True}],
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 100,
                                "podAffinityTerm": {
                                    "topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {
                                        "matchLabels": {"app.kubernetes.io/component": "pipelines"}
                                    },
                                },
                            }
                        ]
                    }
                },
                "config": {
                    "inference": {"classes": ["person", "car"]},
                    "api": {"address": "127.0.0.1", "port": 8080},
                    "sources": [
                        {"name": f"cam-{i:02}", "uri": f"/media/cam-{i:02}.mp4", "loop": True}
                        for i in range(6)
                    ],
                },
            },
        },
    ),
    (
        "external-triton",
        "vigil",
        "default",
        {
            # No serve: the pipelines use servers the config names, with a token given in values.
            "serve": {"enabled": False},
            "inference": {"token": {"create": True, "value": "a-fixed-token-for-the-check"}},
            "pipelines": {
                "config": {"inference": {"server": ["grpc://triton-a:8001", "http://triton-b:8000"]}}
            },
        },
    ),
]


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            self.items.append(what)
        return ok


# ------------------------------------------------------------------------------------------ render


def render(values: dict[str, Any], release: str, namespace: str) -> dict[str, str]:
    """Template path -> rendered text (NOTES.txt included), as `helm template` makes them."""
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=release, namespace=namespace, is_install=True)


def merged_values(values: dict[str, Any]) -> dict[str, Any]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values)


def documents(rendered: dict[str, str]) -> list[tuple[str, str]]:
    """(source template, document text) of every non-empty manifest, in Helm's install order."""
    docs: list[tuple[str, str]] = []
    for source in sorted(rendered):
        if not source.endswith((".yaml", ".yml")):
            continue
        for text in re.split(r"(?m)^---[ \t]*$", rendered[source]):
            if yaml.safe_load(text) is None:
                continue
            docs.append((source, text.strip("\n") + "\n"))

    def order(doc: tuple[str, str]) -> tuple[int, str]:
        kind = yaml.safe_load(doc[1]).get("kind", "")
        return (INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER), kind)

    return sorted(docs, key=order)  # stable: template order within a kind, as Helm


def manifests_text(docs: list[tuple[str, str]]) -> str:
    parts = [HEADER]
    for source, text in docs:
        parts.append(f"---\n# Source: {source}\n{text}")
    return "".join(parts)


def default_manifests() -> str:
    label, release, namespace, values = VALUE_SETS[0]
    assert label == "default"
    return manifests_text(documents(render(values, release, namespace)))


# ------------------------------------------------------------------------------------------ validate


def validate(docs: list[tuple[str, str]], label: str, failures: Failures, tmp: Path) -> int:
    """`kubernetes-validate --strict` on every document for every version; returns the passes."""
    path = tmp / f"{label}.yaml"
    path.write_text(manifests_text(docs))
    tool = Path(sys.executable).parent / "kubernetes-validate"
    args = [str(tool), "--strict"]
    for v in KUBERNETES_VERSIONS:
        args += ["-k", v]
    proc = subprocess.run(args + [str(path)], capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    objects = [yaml.safe_load(t) for _, t in docs]
    crds = [o for o in objects if (o["apiVersion"], o["kind"]) in CRD_KINDS]
    builtin = len(objects) - len(crds)
    passed = 0
    for line in out.splitlines():
        if not line.strip():
            continue
        if line.startswith("INFO ") and " passed for resource " in line:
            passed += 1
        elif line.startswith("WARN ") and "Couldn't find schema" in line:
            m = re.search(r"kind (\S+) with api version (\S+) for", line)
            failures.check(
                m is not None and (m.group(2), m.group(1)) in CRD_KINDS,
                f"[{label}] no schema for a built-in kind: {line}",
            )
        else:
            failures.check(False, f"[{label}] kubernetes-validate: {line}")
    failures.check(proc.returncode == 0, f"[{label}] kubernetes-validate exit {proc.returncode}")
    want = builtin * len(KUBERNETES_VERSIONS)
    failures.check(
        passed == want,
        f"[{label}] {passed} validations passed, want {want} ({builtin} built-in objects x {len(KUBERNETES_VERSIONS)} versions)",
    )
    # The version each one was checked against is the one asked for (no older schema stood in).
    for v in KUBERNETES_VERSIONS:
        mm = v.rsplit(".", 1)[0]
        n = len(re.findall(rf"passed for resource \S+ against version {re.escape(mm)}\b", out))
        failures.check(
            n == builtin, f"[{label}] {n} objects validated against Kubernetes {mm}, want {builtin}"
        )
    return passed


# ------------------------------------------------------------------------------------------ semantics


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found[0] if len(found) == 1 else None


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def named_port(container: dict[str, Any], port: Any) -> Any:
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return port


def check_pod_security(label: str, workload: dict[str, Any], f: Failures) -> None:
    name = f"{workload['kind']}/{workload['metadata']['name']}"
    pod = workload["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    f.check(psc.get("fsGroup") == UID, f"[{label}] {name}: pod fsGroup {psc.get('fsGroup')}, want {UID}")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod.get("initContainers", []) + pod["containers"]:
        csc = c.get("securityContext", {})
        eff = {**psc, **csc}
        where = f"[{label}] {name} container {c['name']}"
        f.check(eff.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
        f.check(eff.get("runAsUser") == UID, f"{where}: runAsUser {eff.get('runAsUser')}, want {UID}")
        f.check(eff.get("runAsGroup") == UID, f"{where}: runAsGroup {eff.get('runAsGroup')}, want {UID}")
        f.check(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem is not true")
        f.check(
            csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false"
        )
        f.check(
            "ALL" in csc.get("capabilities", {}).get("drop", []), f"{where}: capabilities do not drop ALL"
        )
        f.check(
            (eff.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            f"{where}: seccompProfile is not RuntimeDefault",
        )
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        f.check(
            len(tmp) == 1 and "emptyDir" in volumes.get(tmp[0]["name"], {}),
            f"{where}: no emptyDir at /tmp (the root filesystem is read-only)",
        )
        f.check(c.get("resources", {}).get("requests") is not None, f"{where}: no resource requests")
    for v in volumes.values():
        if "emptyDir" in v:
            f.check(
                isinstance(v["emptyDir"], dict),
                f"[{label}] {name}: volume {v['name']}: emptyDir is not a map",
            )


def check_semantics(
    label: str, release: str, values: dict[str, Any], objects: list[dict[str, Any]], f: Failures
) -> None:
    v = merged_values(values)
    fullname = v["fullnameOverride"] or (release if "vigil" in release else f"{release}-vigil")
    serve_name, pipes_name = f"{fullname}-serve", f"{fullname}-pipelines"
    token = v["inference"]["token"]
    secret_name = token["existingSecret"] or f"{fullname}-token"
    selector = {"app.kubernetes.io/name": "vigil", "app.kubernetes.io/instance": release}

    for o in objects:
        name = o["metadata"]["name"]
        f.check(len(name) <= 63, f"[{label}] {o['kind']}/{name}: name longer than 63")
        labels = o["metadata"].get("labels", {})
        f.check(
            all(labels.get(k) == x for k, x in selector.items()),
            f"[{label}] {o['kind']}/{name}: labels {labels} lack {selector}",
        )
        f.check(
            "namespace" not in o["metadata"],
            f"[{label}] {o['kind']}/{name}: a namespace is written (kubectl -n must work)",
        )

    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    print(f"[{label}] {len(objects)} objects: {', '.join(kinds)}")

    # --- the token's Secret
    secrets = by_kind(objects, "Secret")
    if token["create"]:
        s = one(objects, "Secret", secret_name)
        if f.check(s is not None, f"[{label}] no Secret {secret_name}"):
            data = base64.b64decode(s.get("data", {}).get(token["key"], "")).decode()
            if token["value"]:
                f.check(
                    data == token["value"], f"[{label}] Secret {secret_name}: not the token of the values"
                )
            else:
                f.check(
                    re.fullmatch(r"[A-Za-z0-9]{48}", data) is not None,
                    f"[{label}] Secret {secret_name}: the generated token is not 48 letters and digits: {data!r}",
                )
    else:
        f.check(not secrets, f"[{label}] a Secret is rendered without inference.token.create")

    # --- serve
    dep = one(objects, "Deployment", serve_name)
    svc = one(objects, "Service", serve_name)
    hpa = one(objects, "HorizontalPodAutoscaler", serve_name)
    serve_on = v["serve"]["enabled"]
    f.check(
        (dep is not None) == serve_on,
        f"[{label}] Deployment {serve_name}: present {dep is not None}, serve.enabled {serve_on}",
    )
    f.check(
        (svc is not None) == serve_on,
        f"[{label}] Service {serve_name}: present {svc is not None}, serve.enabled {serve_on}",
    )
    if dep is not None:
        check_pod_security(label, dep, f)
        pod = dep["spec"]["template"]
        f.check(
            dep["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
            f"[{label}] Deployment {serve_name}: its selector does not match its pods",
        )
        c = pod["spec"]["containers"][0]
        args = c["args"]
        f.check(args[:2] == ["serve", v["modelRepository"]["mountPath"]], f"[{label}] serve args {args}")
        pairs = dict(zip(args[2::2], args[3::2]))
        f.check(pairs.get("--address") == "0.0.0.0", f"[{label}] serve --address {pairs.get('--address')}")
        for flag, port in [("--http-port", 8000), ("--grpc-port", 8001), ("--metrics-port", 8002)]:
            f.check(pairs.get(flag) == str(port), f"[{label}] serve {flag} {pairs.get(flag)}, want {port}")
        f.check(
            pairs.get("--model-control-mode") == v["serve"]["modelControlMode"],
            f"[{label}] serve --model-control-mode {pairs.get('--model-control-mode')}",
        )
        extra = [str(a) for a in v["serve"]["extraArgs"]]
        f.check(not extra or args[-len(extra) :] == extra, f"[{label}] serve extraArgs not last: {args}")
        ref = env_of(c).get("VIGIL_SERVE_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        f.check(
            ref.get("name") == secret_name and ref.get("key") == token["key"] and not ref.get("optional"),
            f"[{label}] VIGIL_SERVE_TOKEN from {ref}, want Secret {secret_name} key {token['key']}",
        )
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        f.check(
            ports == {"http": 8000, "grpc": 8001, "metrics": 8002}, f"[{label}] serve container ports {ports}"
        )
        for probe, path in [
            ("startupProbe", "/v2/health/ready"),
            ("readinessProbe", "/v2/health/ready"),
            ("livenessProbe", "/v2/health/live"),
        ]:
            get = c.get(probe, {}).get("httpGet", {})
            f.check(
                get.get("path") == path and named_port(c, get.get("port")) == 8000,
                f"[{label}] serve {probe} is {get}, want GET {path} on port 8000",
            )
        start = c.get("startupProbe", {})
        f.check(
            start.get("failureThreshold", 3) * start.get("periodSeconds", 10) >= 120,
            f"[{label}] serve startupProbe allows less than 2 minutes for the models to load",
        )
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        models = mounts.get("models", {})
        f.check(
            models.get("mountPath") == "/models" and models.get("readOnly") is True,
            f"[{label}] serve: the model repository is not mounted read-only at /models: {models}",
        )
        vols = {x["name"]: x for x in pod["spec"]["volumes"]}
        f.check(
            {k: x for k, x in vols.get("models", {}).items() if k != "name"}
            == v["modelRepository"]["volume"],
            f"[{label}] serve: the models volume is not modelRepository.volume",
        )
        f.check(
            pod["spec"]["terminationGracePeriodSeconds"] > 30,
            f"[{label}] serve: terminationGracePeriodSeconds {pod['spec']['terminationGracePeriodSeconds']} leaves no time for the 30 s drain",
        )
        f.check(
            pod["spec"]["serviceAccountName"] == (v["serviceAccount"]["name"] or fullname),
            f"[{label}] serve serviceAccountName {pod['spec']['serviceAccountName']}",
        )
        if v["autoscaling"]["enabled"]:
            f.check(
                "replicas" not in dep["spec"],
                f"[{label}] Deployment {serve_name} sets replicas while the HPA scales it",
            )
        else:
            f.check(
                dep["spec"].get("replicas") == v["serve"]["replicas"],
                f"[{label}] Deployment replicas {dep['spec'].get('replicas')}",
            )
    if svc is not None:
        ports = {p["port"]: p for p in svc["spec"]["ports"]}
        f.check(
            sorted(ports) == [8000, 8001, 8002],
            f"[{label}] Service {serve_name} ports {sorted(ports)}, want 8000, 8001, 8002",
        )
        f.check(
            ports.get(8000, {}).get("targetPort") in ("http", 8000),
            f"[{label}] Service port 8000 -> {ports.get(8000)}",
        )
        f.check(
            ports.get(8001, {}).get("name") == "grpc"
            and ports.get(8001, {}).get("appProtocol") == "grpc"
            and ports.get(8001, {}).get("targetPort") in ("grpc", 8001),
            f"[{label}] Service port 8001 is not gRPC: {ports.get(8001)}",
        )
        f.check(
            ports.get(8002, {}).get("name") == "metrics",
            f"[{label}] Service port 8002 is not metrics: {ports.get(8002)}",
        )
        if dep is not None:
            f.check(
                svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items(),
                f"[{label}] Service {serve_name} does not select the serve pods",
            )
    # --- autoscaling
    want_hpa = serve_on and v["autoscaling"]["enabled"]
    f.check((hpa is not None) == want_hpa, f"[{label}] HPA present {hpa is not None}, want {want_hpa}")
    f.check(len(by_kind(objects, "HorizontalPodAutoscaler")) == int(want_hpa), f"[{label}] more than one HPA")
    if hpa is not None:
        a = v["autoscaling"]
        f.check(hpa["apiVersion"] == "autoscaling/v2", f"[{label}] HPA apiVersion {hpa['apiVersion']}")
        f.check(
            hpa["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": serve_name},
            f"[{label}] HPA targets {hpa['spec']['scaleTargetRef']}, want the Deployment {serve_name}",
        )
        f.check(
            (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (a["minReplicas"], a["maxReplicas"]),
            f"[{label}] HPA replicas {hpa['spec']['minReplicas']}..{hpa['spec']['maxReplicas']}",
        )
        metrics = hpa["spec"]["metrics"]
        f.check(len(metrics) == 1 and metrics[0]["type"] == "Pods", f"[{label}] HPA metrics {metrics}")
        pods = metrics[0].get("pods", {})
        f.check(
            pods.get("metric", {}).get("name") == a["metricName"],
            f"[{label}] HPA metric {pods.get('metric')}, want {a['metricName']}",
        )
        f.check(
            pods.get("target", {}).get("type") == "AverageValue"
            and str(pods.get("target", {}).get("averageValue")) == str(a["targetAverageValue"]),
            f"[{label}] HPA target {pods.get('target')}",
        )
        f.check(
            hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 0) > 0,
            f"[{label}] HPA has no scale-down stabilization window",
        )
        rule = a["prometheusAdapterRule"]
        f.check(
            rule["name"]["as"] == a["metricName"],
            f"[{label}] the adapter rule makes {rule['name']['as']}, the HPA reads {a['metricName']}",
        )
        f.check(
            rule["seriesQuery"] == 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
            f"[{label}] adapter seriesQuery {rule['seriesQuery']}",
        )
        f.check(
            rule["resources"]["overrides"]
            == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}},
            f"[{label}] adapter resources {rule['resources']}",
        )
        f.check(
            rule["metricsQuery"]
            == "avg(delta(nv_inference_queue_duration_us{<<.LabelMatchers>>}[30s])/(1+delta(nv_inference_request_success{<<.LabelMatchers>>}[30s]))) by (<<.GroupBy>>)",
            f"[{label}] adapter metricsQuery {rule['metricsQuery']}",
        )
    # --- ServiceMonitor
    sm = by_kind(objects, "ServiceMonitor")
    want_sm = serve_on and v["metrics"]["serviceMonitor"]["enabled"]
    f.check(len(sm) == int(want_sm), f"[{label}] {len(sm)} ServiceMonitor(s), want {int(want_sm)}")
    if sm and svc is not None:
        m = sm[0]
        f.check(
            m["apiVersion"] == "monitoring.coreos.com/v1",
            f"[{label}] ServiceMonitor apiVersion {m['apiVersion']}",
        )
        f.check(
            m["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
            f"[{label}] the ServiceMonitor does not select the serve Service",
        )
        f.check(
            [e["port"] for e in m["spec"]["endpoints"]] == ["metrics"],
            f"[{label}] ServiceMonitor endpoints {m['spec']['endpoints']}",
        )
        f.check(
            v["metrics"]["serviceMonitor"]["labels"].items() <= m["metadata"]["labels"].items(),
            f"[{label}] ServiceMonitor lacks metrics.serviceMonitor.labels",
        )

    # --- pipelines
    sts = one(objects, "StatefulSet", pipes_name)
    cm = one(objects, "ConfigMap", pipes_name)
    p = v["pipelines"]
    f.check(
        (sts is not None) == p["enabled"], f"[{label}] StatefulSet {pipes_name} present {sts is not None}"
    )
    if sts is not None:
        check_pod_security(label, sts, f)
        spec, pod = sts["spec"], sts["spec"]["template"]
        f.check(
            spec["replicas"] == p["shards"],
            f"[{label}] StatefulSet replicas {spec['replicas']}, pipelines.shards {p['shards']}",
        )
        f.check(
            spec.get("podManagementPolicy") == "Parallel",
            f"[{label}] podManagementPolicy {spec.get('podManagementPolicy')}",
        )
        f.check(
            spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(),
            f"[{label}] StatefulSet selector does not match its pods",
        )
        headless = one(objects, "Service", spec.get("serviceName", ""))
        f.check(
            headless is not None
            and headless["spec"].get("clusterIP") == "None"
            and headless["spec"]["selector"].items() <= pod["metadata"]["labels"].items(),
            f"[{label}] the StatefulSet's serviceName {spec.get('serviceName')} is not a headless Service selecting its pods",
        )
        c = pod["spec"]["containers"][0]
        f.check(c["args"][:2] == ["run", "/etc/vigil/fleet.yaml"], f"[{label}] pipelines args {c['args']}")
        f.check(
            c["args"][2:] == [str(a) for a in p["extraArgs"]],
            f"[{label}] pipelines extraArgs {c['args'][2:]}",
        )
        env = env_of(c)
        f.check(
            env.get("VIGIL_SHARD_COUNT", {}).get("value") == str(spec["replicas"]),
            f"[{label}] VIGIL_SHARD_COUNT {env.get('VIGIL_SHARD_COUNT')} is not the replicas {spec['replicas']}",
        )
        f.check(
            env.get("VIGIL_SHARD_INDEX", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            == POD_INDEX_LABEL,
            f"[{label}] VIGIL_SHARD_INDEX {env.get('VIGIL_SHARD_INDEX')}, want the downward API {POD_INDEX_LABEL}",
        )
        f.check("VIGIL_SHARD" not in env, f"[{label}] VIGIL_SHARD is set (it wins over COUNT/INDEX)")
        ref = env.get("VIGIL_INFERENCE_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
        f.check(
            ref.get("name") == secret_name and ref.get("key") == token["key"],
            f"[{label}] VIGIL_INFERENCE_TOKEN from {ref}, want Secret {secret_name} key {token['key']}",
        )
        for e in p["extraEnv"]:
            f.check(env.get(e["name"]) == e, f"[{label}] extraEnv {e['name']} missing")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        vols = {x["name"]: x for x in pod["spec"]["volumes"]}
        conf = mounts.get("/etc/vigil", {})
        f.check(
            conf.get("readOnly") is True
            and vols.get(conf.get("name"), {}).get("configMap", {}).get("name") == pipes_name,
            f"[{label}] /etc/vigil is not the ConfigMap {pipes_name}, read-only",
        )
        data = mounts.get(p["dataPath"], {})
        claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
        if p["persistence"]["enabled"]:
            f.check(
                data.get("name") in claims and data.get("name") not in vols,
                f"[{label}] {p['dataPath']} is not a volumeClaimTemplate: {data}, {claims}",
            )
            t = spec["volumeClaimTemplates"][0]["spec"]
            f.check(
                t["resources"]["requests"]["storage"] == p["persistence"]["size"],
                f"[{label}] claim size {t['resources']}",
            )
            f.check(
                spec.get("persistentVolumeClaimRetentionPolicy")
                == (p["persistence"]["retentionPolicy"] or None),
                f"[{label}] retention policy {spec.get('persistentVolumeClaimRetentionPolicy')}",
            )
        else:
            f.check(
                not claims and "emptyDir" in vols.get(data.get("name"), {}),
                f"[{label}] {p['dataPath']} is not an emptyDir: {data}",
            )
        models = mounts.get(v["modelRepository"]["mountPath"])
        if p["mountModelRepository"]:
            f.check(
                models is not None
                and models.get("readOnly") is True
                and {k: x for k, x in vols.get(models["name"], {}).items() if k != "name"}
                == v["modelRepository"]["volume"]
                and models.get("subPath", "") == v["modelRepository"]["subPath"],
                f"[{label}] pipelines: the model repository is not mounted read-only as given: {models}",
            )
        else:
            f.check(
                models is None and "models" not in vols,
                f"[{label}] pipelines mount the model repository without pipelines.mountModelRepository",
            )
        for m in p["extraVolumeMounts"]:
            f.check(mounts.get(m["mountPath"]) == m, f"[{label}] extraVolumeMount {m} missing")
        f.check(
            pod["spec"]["terminationGracePeriodSeconds"] >= 30,
            f"[{label}] pipelines terminationGracePeriodSeconds {pod['spec']['terminationGracePeriodSeconds']}",
        )
        f.check(
            pod["metadata"].get("annotations", {}).get("checksum/config"),
            f"[{label}] the pipeline pods carry no checksum of the config",
        )
        if p["affinity"]:
            f.check(pod["spec"].get("affinity") == p["affinity"], f"[{label}] pipelines affinity")
    f.check((cm is not None) == p["enabled"], f"[{label}] ConfigMap {pipes_name} present {cm is not None}")
    if cm is not None:
        try:
            fleet = yaml.safe_load(cm["data"]["fleet.yaml"])
        except yaml.YAMLError as e:
            f.check(False, f"[{label}] fleet.yaml in ConfigMap {pipes_name} is no YAML: {e}")
            fleet = None
        if fleet is not None:
            f.check(
                isinstance(fleet, dict) and fleet.get("name") and fleet.get("sources"),
                f"[{label}] fleet.yaml has no name or sources: {fleet}",
            )
            want_config = copy.deepcopy(p["config"])
            given = p["config"].get("inference", {}).get("server")
            server = fleet.get("inference", {}).get("server")
            if given is None and p["useServe"] and serve_on:
                want = f"grpc://{serve_name}:8001"
                f.check(
                    server == want,
                    f"[{label}] fleet inference.server {server!r}, want the serve Service's gRPC port {want}",
                )
                f.check(
                    svc is not None
                    and any(x["port"] == 8001 and x["name"] == "grpc" for x in svc["spec"]["ports"]),
                    f"[{label}] {want}: the Service has no gRPC port 8001",
                )
                want_config["inference"]["server"] = want
            else:
                f.check(
                    server == given, f"[{label}] fleet inference.server {server!r}, the config gave {given!r}"
                )
            f.check(
                fleet == want_config,
                f"[{label}] fleet.yaml is not pipelines.config (+ inference.server): {fleet}",
            )
            for s in fleet.get("sources", []):
                f.check(
                    isinstance(s.get("name"), str) and s["name"], f"[{label}] a source without a name: {s}"
                )
            out = fleet.get("outputs", {}).get("events", {}).get("path", "")
            f.check(
                out in ("", "-") or out.startswith(p["dataPath"] + "/"),
                f"[{label}] events go to {out}, outside the writable {p['dataPath']}",
            )

    # --- PodDisruptionBudgets: one per workload, selecting its pods.
    pdbs = {o["metadata"]["name"]: o for o in by_kind(objects, "PodDisruptionBudget")}
    for workload, on in [
        (dep, serve_on and v["serve"]["podDisruptionBudget"]["enabled"]),
        (sts, p["enabled"] and p["podDisruptionBudget"]["enabled"]),
    ]:
        if workload is None or not on:
            continue
        wname = workload["metadata"]["name"]
        pdb = pdbs.get(wname)
        if f.check(pdb is not None, f"[{label}] no PodDisruptionBudget {wname}"):
            f.check(pdb["apiVersion"] == "policy/v1", f"[{label}] PDB {wname} apiVersion {pdb['apiVersion']}")
            f.check(
                pdb["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"],
                f"[{label}] PDB {wname} does not select the pods of {workload['kind']} {wname}",
            )
            comp = "serve" if workload is dep else "pipelines"
            budget = v[comp]["podDisruptionBudget"]
            if budget.get("minAvailable") is not None:
                f.check(
                    pdb["spec"].get("minAvailable") == budget["minAvailable"]
                    and "maxUnavailable" not in pdb["spec"],
                    f"[{label}] PDB {wname}: {pdb['spec']}",
                )
            else:
                f.check(
                    pdb["spec"].get("maxUnavailable") == budget["maxUnavailable"],
                    f"[{label}] PDB {wname}: {pdb['spec']}",
                )
    f.check(
        len(pdbs) == sum(1 for w in (dep, sts) if w is not None),
        f"[{label}] PodDisruptionBudgets {sorted(pdbs)}",
    )
    sas = by_kind(objects, "ServiceAccount")
    f.check(len(sas) == int(v["serviceAccount"]["create"]), f"[{label}] {len(sas)} ServiceAccount(s)")
    for w in (dep, sts):
        if w is not None:
            want_image = f"{v['image']['repository']}:{v['image']['tag'] or '0.1.0'}"
            c = w["spec"]["template"]["spec"]["containers"][0]
            f.check(c["image"] == want_image, f"[{label}] {w['kind']} image {c['image']}, want {want_image}")


# ------------------------------------------------------------------------------------------ values.yaml


def check_values_documented(f: Failures) -> None:
    """Every key of values.yaml has a comment above it, or is a map whose keys have (a comment above
    a key documents its whole value: the fleet config, a probe, a security context)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys: list[tuple[int, int, str, bool]] = []  # (line index, indent, key, comment above)
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z0-9_.-]+):", line)
        if not m or line.lstrip().startswith("#"):
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        keys.append((i, len(m.group(1)), m.group(2), j >= 0 and lines[j].lstrip().startswith("#")))

    def children(k: int) -> list[int]:
        out, indent = [], keys[k][1]
        for n in range(k + 1, len(keys)):
            if keys[n][1] <= indent:
                break
            if keys[n][1] == indent + 2:
                out.append(n)
        return out

    def documented(k: int) -> bool:
        # A comment above a key documents its whole value; a map without one needs them on its keys.
        kids = children(k)
        return keys[k][3] or (bool(kids) and all(documented(n) for n in kids))

    def undocumented(k: int) -> list[int]:
        if keys[k][3]:
            return []
        kids = children(k)
        if not kids or keys[k][1] >= 4:
            return [] if documented(k) else [k]
        return [n for kid in kids for n in undocumented(kid)]

    for k in [n for n, key in enumerate(keys) if key[1] == 0]:
        for n in undocumented(k):
            f.check(False, f"values.yaml line {keys[n][0] + 1}: key {keys[n][2]!r} has no comment")


# ------------------------------------------------------------------------------------------ modes


def lint(values: dict[str, Any], namespace: str, label: str, f: Failures) -> None:
    for kube in ("v1.30.0", "v1.34.0"):
        report = helm.lint(str(CHART), values, strict=True, namespace=namespace, kube_version=kube)
        f.check(not report.get("errors"), f"[{label}] helm lint ({kube}): {report.get('errors')}")
        for m in report.get("messages", []):
            f.check(m["severity"] < 2, f"[{label}] helm lint ({kube}) {m['path']}: {m['error']}")


def check_value_set(
    label: str, release: str, namespace: str, values: dict[str, Any], f: Failures, tmp: Path
) -> int:
    """Lint, render, validate and check one value set; returns the validations passed."""
    lint(values, namespace, label, f)
    rendered = render(values, release, namespace)
    notes = rendered.get("vigil/templates/NOTES.txt", "")
    f.check("vigil" in notes and len(notes.splitlines()) > 5, f"[{label}] NOTES.txt rendered {notes!r}")
    docs = documents(rendered)
    objects = [yaml.safe_load(t) for _, t in docs]
    passed = validate(docs, label, f, tmp)
    check_semantics(label, release, values, objects, f)
    # Deterministic: a second render is the same, except a generated token.
    again = [yaml.safe_load(t) for _, t in documents(render(values, release, namespace))]
    for o in objects + again:
        if (
            o["kind"] == "Secret"
            and values.get("inference", {}).get("token", {}).get("create")
            and not values["inference"]["token"].get("value")
        ):
            o["data"] = {k: "<random>" for k in o.get("data", {})}
    f.check(objects == again, f"[{label}] two renders differ (beyond a generated token)")
    return passed


def run_check() -> int:
    start = time.monotonic()
    f = Failures()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-chart-"))
    total = 0
    try:
        check_values_documented(f)
        for label, release, namespace, values in VALUE_SETS:
            try:
                total += check_value_set(label, release, namespace, values, f, tmp)
            except Exception as e:  # a template or document that does not render or parse
                f.check(False, f"[{label}] {type(e).__name__}: {e}")
        # The manifests' kustomization builds the same objects.
        f.check(CHART.joinpath(".helmignore").is_file(), "no .helmignore")
        kubectl = shutil.which("kubectl")
        if kubectl and (REPO / "deploy/k8s/kustomization.yaml").is_file():
            out = subprocess.run(
                [kubectl, "kustomize", str(REPO / "deploy/k8s")], capture_output=True, text=True, timeout=60
            )
            if f.check(out.returncode == 0, f"kubectl kustomize deploy/k8s: {out.stderr}"):
                built = sorted(
                    (o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(out.stdout) if o
                )
                committed = sorted(
                    (o["kind"], o["metadata"]["name"]) for o in yaml.safe_load_all(MANIFESTS.read_text()) if o
                )
                f.check(
                    built == committed,
                    f"kubectl kustomize deploy/k8s gives {built}, vigil.yaml has {committed}",
                )
                print(f"kustomize: deploy/k8s builds the {len(built)} objects of vigil.yaml")
        else:
            print("kustomize: no kubectl on PATH: deploy/k8s/kustomization.yaml not built")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - start
    if f.items:
        for item in f.items:
            print(f"FAIL: {item}")
        print(f"{len(f.items)} failure(s) in {took:.1f} s")
        return 1
    versions = ", ".join(v.rsplit(".", 1)[0] for v in KUBERNETES_VERSIONS)
    print(
        f"PASS: {len(VALUE_SETS)} value sets linted, rendered and validated (kubernetes-validate --strict, "
        f"Kubernetes {versions}: {total} validations), semantics checked, in {took:.1f} s"
    )
    return 0


def run_stale() -> int:
    fresh = default_manifests()
    committed = MANIFESTS.read_text() if MANIFESTS.is_file() else ""
    if fresh == committed:
        print(f"PASS: {MANIFESTS.relative_to(REPO)} equals a fresh render of the chart's defaults")
        return 0
    diff = list(
        difflib.unified_diff(
            committed.splitlines(),
            fresh.splitlines(),
            "deploy/k8s/vigil.yaml (committed)",
            "fresh render",
            lineterm="",
        )
    )
    print("\n".join(diff[:80]) + ("\n…" if len(diff) > 80 else ""))
    print(
        f"FAIL: deploy/k8s/vigil.yaml is stale: it differs from a fresh render of deploy/helm/vigil; run {RENDER_SCRIPT} and commit the result"
    )
    return 1


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["check"]:
        return run_check()
    if args[:1] == ["stale"]:
        return run_stale()
    if args[:1] == ["render"] and len(args) <= 2:
        text = default_manifests()
        if len(args) == 2:
            out = Path(args[1])
            tmp = out.with_name(out.name + f".tmp.{os.getpid()}")
            tmp.write_text(text)
            tmp.replace(out)
        else:
            sys.stdout.write(text)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
