"""deploy/: yamllint-clean, every kustomization renders, core kinds validate against Kubernetes' schemas
(kubernetes-validate, strict), custom resources against the fields of their CRDs, and the pieces agree with
each other and with mlchaos (ports, names, labels, the policy, the admin API's paths)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.policy import load_policy_text
from proxy.policy.model import Policy

from .conftest import DEPLOY, ROOT, tool

CRDS = Path(__file__).resolve().parent / "crds"

jsonschema = pytest.importorskip("jsonschema")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[ecosystem]'")

Doc = dict[str, Any]
KUSTOMIZATIONS = ("base", "monitoring", "rollouts", "flagger", "kserve", "feast", "litmus", "chaos-mesh", "pipeline")
CORE_GROUPS = ("v1", "apps/v1", "batch/v1")


# ------------------------------------------------------------------------------------------- helpers

def load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def render(directory: Path) -> list[Doc]:
    """The resources of a kustomization (its ``resources``, recursively; these kustomizations use no
    transformers or generators, which the test below checks)."""
    kust = load(directory / "kustomization.yaml")[0]
    assert kust["kind"] == "Kustomization" and kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert set(kust) <= {"apiVersion", "kind", "resources"}, f"{directory}: more than resources: {set(kust)}"
    out: list[Doc] = []
    for entry in kust["resources"]:
        target = directory / entry
        out.extend(render(target) if target.is_dir() else load(target))
    return out


def everything() -> list[Doc]:
    return [doc for name in KUSTOMIZATIONS for doc in render(DEPLOY / name)] + load(DEPLOY / "base" / "secret.yaml")


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def container(pod_spec: Doc, name: str) -> Doc:
    return next(c for c in pod_spec["containers"] if c["name"] == name)


def port(c: Doc, name: str) -> int:
    return int(next(p["containerPort"] for p in c["ports"] if p.get("name") == name))


def env(c: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def policy_of(configmap: Doc) -> Policy:
    return load_policy_text(configmap["data"]["policy.yaml"])


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def core_validator(definition: str) -> Any:
    """A strict validator for one definition of Kubernetes' API (e.g. io.k8s.api.core.v1.Container)."""
    from referencing import Registry, Resource

    version = kubernetes_validate.utils.latest_version()
    defs = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    registry = Resource.from_contents(defs) @ Registry()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{definition}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


# Structural schemas of the custom resources, with the fields of their CRDs at the levels used here:
# an unknown field (a typo, or a field the CRD does not have) fails.
def obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
INT_OR_STR: dict[str, Any] = {"type": ["integer", "string"]}
ANY_OBJ: dict[str, Any] = {"type": "object"}
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
META = obj({"name": STR, "namespace": STR, "labels": LABELS, "annotations": LABELS}, ("name",))
ARG = obj({"name": STR, "value": STR, "valueFrom": ANY_OBJ}, ("name",))
METRIC = obj({
    "name": STR, "interval": STR, "initialDelay": STR, "count": INT_OR_STR, "successCondition": STR,
    "failureCondition": STR, "failureLimit": INT_OR_STR, "inconclusiveLimit": INT_OR_STR,
    "consecutiveErrorLimit": INT_OR_STR, "consecutiveSuccessLimit": INT_OR_STR,
    "provider": {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": {
        "web": obj({"url": STR, "method": {"enum": ["GET", "POST", "PUT"]}, "headers": {"type": "array", "items": obj(
            {"key": STR, "value": STR}, ("key", "value"))}, "body": STR, "jsonBody": ANY_OBJ,
            "timeoutSeconds": INT, "jsonPath": STR, "insecure": {"type": "boolean"}}, ("url",)),
        "prometheus": obj({"address": STR, "query": STR, "timeout": INT, "insecure": {"type": "boolean"},
                           "headers": {"type": "array"}, "authentication": ANY_OBJ}, ("query",)),
    }, "additionalProperties": False},
}, ("name", "provider"))
SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "PodMonitor"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({
            "selector": obj({"matchLabels": LABELS, "matchExpressions": {"type": "array"}}),
            "namespaceSelector": ANY_OBJ, "jobLabel": STR, "podTargetLabels": {"type": "array"},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": obj({
                "port": STR, "portNumber": INT, "path": STR, "interval": STR, "scrapeTimeout": STR,
                "scheme": {"enum": ["http", "https"]}, "honorLabels": {"type": "boolean"},
                "relabelings": {"type": "array"}, "metricRelabelings": {"type": "array"}})},
        }, ("selector", "podMetricsEndpoints")),
    }, ("apiVersion", "kind", "metadata", "spec")),
    ("monitoring.coreos.com/v1", "PrometheusRule"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"groups": {"type": "array", "minItems": 1, "items": obj({
            "name": STR, "interval": STR, "rules": {"type": "array", "minItems": 1, "items": obj({
                "alert": STR, "record": STR, "expr": STR, "for": STR, "keep_firing_for": STR,
                "labels": LABELS, "annotations": LABELS}, ("expr",))}}, ("name", "rules"))}}, ("groups",)),
    }, ("apiVersion", "kind", "metadata", "spec")),
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"args": {"type": "array", "items": ARG}, "metrics": {"type": "array", "minItems": 1,
                                                                          "items": METRIC},
                     "dryRun": {"type": "array"}, "measurementRetention": {"type": "array"}}, ("metrics",)),
    }, ("apiVersion", "kind", "metadata", "spec")),
    ("argoproj.io/v1alpha1", "Rollout"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({
            "replicas": INT, "selector": ANY_OBJ, "revisionHistoryLimit": INT, "minReadySeconds": INT,
            "workloadRef": obj({"apiVersion": STR, "kind": STR, "name": STR,
                                "scaleDown": {"enum": ["never", "onsuccess", "progressively"]}},
                               ("apiVersion", "kind", "name")),
            "strategy": obj({"canary": obj({
                "canaryService": STR, "stableService": STR, "maxSurge": INT_OR_STR, "maxUnavailable": INT_OR_STR,
                "analysis": obj({"templates": {"type": "array", "items": obj({"templateName": STR},
                                                                             ("templateName",))},
                                 "args": {"type": "array", "items": ARG}, "startingStep": INT}, ("templates",)),
                "steps": {"type": "array", "items": {"type": "object", "minProperties": 1, "maxProperties": 1,
                                                     "properties": {
                    "setWeight": INT, "pause": obj({"duration": INT_OR_STR}),
                    "analysis": obj({"templates": {"type": "array", "items": obj({"templateName": STR},
                                                                                 ("templateName",))},
                                     "args": {"type": "array", "items": ARG}}, ("templates",))},
                    "additionalProperties": False}},
            })}),
        }, ("selector", "strategy")),
    }, ("apiVersion", "kind", "metadata", "spec")),
    ("flagger.app/v1beta1", "Canary"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({
            "provider": STR, "progressDeadlineSeconds": INT, "skipAnalysis": {"type": "boolean"},
            "targetRef": obj({"apiVersion": STR, "kind": {"enum": ["Deployment", "DaemonSet"]}, "name": STR},
                             ("apiVersion", "kind", "name")),
            "autoscalerRef": ANY_OBJ,
            "service": obj({"name": STR, "port": INT, "portName": STR, "targetPort": INT_OR_STR,
                            "portDiscovery": {"type": "boolean"}, "appProtocol": STR}, ("port",)),
            "analysis": obj({
                "interval": STR, "threshold": INT, "iterations": INT, "maxWeight": INT, "stepWeight": INT,
                "stepWeights": {"type": "array"}, "mirror": {"type": "boolean"}, "metrics": {"type": "array"},
                "webhooks": {"type": "array", "items": obj({
                    "name": STR, "url": STR, "timeout": STR, "muteAlert": {"type": "boolean"},
                    "type": {"enum": ["confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase",
                                      "confirm-promotion", "post-rollout", "rollback", "event"]},
                    "metadata": LABELS}, ("name", "url"))}}, ("interval",)),
        }, ("targetRef", "service", "analysis")),
    }, ("apiVersion", "kind", "metadata", "spec")),
    ("serving.kserve.io/v1beta1", "InferenceService"): obj({
        "apiVersion": STR, "kind": STR, "metadata": META,
        "spec": obj({"predictor": obj({
            "minReplicas": INT, "maxReplicas": INT, "labels": LABELS, "annotations": LABELS,
            "serviceAccountName": STR, "containers": {"type": "array", "minItems": 1},
            "volumes": {"type": "array"}, "timeout": INT, "scaleTarget": INT, "scaleMetric": STR,
        }, ("containers",))}, ("predictor",)),
    }, ("apiVersion", "kind", "metadata", "spec")),
}



def strict(schema: Any) -> Any:
    """A CRD's structural schema that refuses unknown fields: ``additionalProperties: false`` wherever
    ``properties`` are listed and nothing else is said. kubectl's default (--validate=strict) refuses them
    too, except under x-kubernetes-preserve-unknown-fields, which this ignores: Litmus's spec has it, and
    its operator drops a misspelt field without a word."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def vendored(name: str) -> tuple[tuple[str, str], dict[str, Any]]:
    """A CRD schema vendored by tests/ecosystem/crds/vendor.py (its "source" says from where), made strict,
    with the metadata the other schemas here check."""
    data = json.loads((CRDS / f"{name}.json").read_text(encoding="utf-8"))
    schema = strict(data["schema"])
    schema["properties"]["metadata"] = META
    return (data["apiVersion"], data["kind"]), schema


SCHEMAS.update(vendored(name) for name in ("chaosengines.litmuschaos.io", "workflows.chaos-mesh.org"))
# Chaos Mesh's template types (api/v1alpha1: TemplateType and the chaos kinds a template may embed); the CRD
# says only "string", its admission webhook refuses the rest.
CHAOS_MESH_TEMPLATE_TYPES = {"Task", "Serial", "Parallel", "Suspend", "StatusCheck", "Schedule", "AWSChaos",
                             "AzureChaos", "BlockChaos", "DNSChaos", "GCPChaos", "HTTPChaos", "IOChaos", "JVMChaos",
                             "KernelChaos", "NetworkChaos", "PhysicalMachineChaos", "PodChaos", "StressChaos",
                             "TimeChaos"}


# --------------------------------------------------------------------------------------------- tests

def test_yamllint_is_clean() -> None:
    yamllint = tool("yamllint")
    if yamllint is None:
        pytest.skip("yamllint is not installed (pip install -e '.[ecosystem]')")
    res = subprocess.run([str(yamllint), "--strict", "deploy"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_old_single_file_is_replaced_by_kustomizations() -> None:
    assert not (DEPLOY / "sidecar.yaml").exists()
    for name in KUSTOMIZATIONS:
        assert render(DEPLOY / name)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kubectl_kustomize_renders_the_same(name: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    res = subprocess.run([kubectl, "kustomize", str(DEPLOY / name)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert res.returncode == 0, res.stderr
    theirs = [d for d in yaml.safe_load_all(res.stdout) if d]
    key = lambda d: (d["apiVersion"], d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, theirs)) == sorted(map(key, render(DEPLOY / name)))


def test_core_kinds_validate_strictly() -> None:
    version = kubernetes_validate.utils.latest_version()
    core = [d for d in everything() if d["apiVersion"] in CORE_GROUPS]
    assert {d["kind"] for d in core} == {"ConfigMap", "Deployment", "Secret", "Service", "CronJob"}
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_wrong_field() -> None:
    """The check above is real: a misspelt field or a wrong type fails it."""
    version = kubernetes_validate.utils.latest_version()
    deployment = one(render(DEPLOY / "base"), "Deployment", "model")
    container(deployment["spec"]["template"]["spec"], "mlchaos")["readinessProbe"]["httpGett"] = {"port": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_custom_resources_match_their_crds() -> None:
    custom = [d for d in everything() if d["apiVersion"] not in CORE_GROUPS]
    assert {d["kind"] for d in custom} == {"PodMonitor", "PrometheusRule", "AnalysisTemplate", "Rollout", "Canary",
                                          "InferenceService", "ChaosEngine", "Workflow"}
    for doc in custom:
        jsonschema.validate(doc, SCHEMAS[(doc["apiVersion"], doc["kind"])])
    # A Chaos Mesh Task's container is Kubernetes' own Container.
    for template in one(custom, "Workflow")["spec"]["templates"]:
        if "task" in template:
            core_validator("io.k8s.api.core.v1.Container").validate(template["task"]["container"])
    # The pod parts of the InferenceService are Kubernetes' own types.
    isvc = one(custom, "InferenceService")
    for c in isvc["spec"]["predictor"]["containers"]:
        core_validator("io.k8s.api.core.v1.Container").validate(c)
    for v in isvc["spec"]["predictor"]["volumes"]:
        core_validator("io.k8s.api.core.v1.Volume").validate(v)


def test_every_policy_in_deploy_is_valid() -> None:
    configmaps = [d for d in everything() if d["kind"] == "ConfigMap" and "policy.yaml" in d["data"]]
    assert len(configmaps) == 4
    for cm in configmaps:
        policy = policy_of(cm)
        assert policy.experiments, cm["metadata"]["name"]
        assert not policy.admin.listen.is_loopback and policy.admin.token_env == "MLCHAOS_ADMIN_TOKEN"
        if cm["metadata"]["name"] == "mlchaos-pipeline-policy":
            continue  # an egress sidecar: its upstream is the remote store (test_pipeline_* below)
        assert policy.upstream.host == "127.0.0.1"  # the model in the same pod, on loopback
    load_policy_text((DEPLOY / "docker" / "policy.yaml").read_text(encoding="utf-8"))


def test_sidecar_deployment_agrees_with_its_policy_service_and_secret() -> None:
    docs = render(DEPLOY / "base")
    deployment = one(docs, "Deployment", "model")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    policy = policy_of(one(docs, "ConfigMap", "mlchaos-policy"))
    sidecar, model = container(spec, "mlchaos"), container(spec, "model")

    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert policy.listen.port == port(sidecar, "http") and policy.admin.listen.port == port(sidecar, "admin")
    # The model listens on loopback, on the port mlchaos forwards to, and declares no port of its own.
    assert env(model)["MLSERVER_HOST"] == "127.0.0.1" and int(env(model)["MLSERVER_HTTP_PORT"]) == policy.upstream.port
    assert "ports" not in model
    # The admin token comes from the Secret.
    secret = load(DEPLOY / "base" / "secret.yaml")[0]
    assert env(sidecar)[policy.admin.token_env] == {
        "secretKeyRef": {"name": secret["metadata"]["name"], "key": next(iter(secret["stringData"]))}}
    # The policy's ConfigMap is mounted as a directory (a subPath mount would never see an update).
    args = sidecar["args"]
    config = args[args.index("--config") + 1]
    mount = next(m for m in sidecar["volumeMounts"] if config.startswith(m["mountPath"] + "/"))
    assert "subPath" not in mount and mount.get("readOnly") is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "mlchaos-policy" and config.endswith("/policy.yaml")
    # The kill switch's state file is on a writable volume: the root filesystem is read-only.
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert policy.state_file is not None
    assert any(policy.state_file.startswith(m["mountPath"] + "/") and not m.get("readOnly")
               for m in sidecar["volumeMounts"])
    assert sidecar["securityContext"]["runAsNonRoot"] is True
    # Probes on the admin API, and resources on every container.
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    for c in spec["containers"]:
        assert "readinessProbe" in c and "livenessProbe" in c, c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
            c["resources"]["limits"]), c["name"]
    # The model's Service targets mlchaos's port; the admin Service its admin port.
    service = one(docs, "Service", "model")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    admin = one(docs, "Service", "model-mlchaos")
    assert [(p["port"], p["targetPort"]) for p in admin["spec"]["ports"]] == [(9000, "admin")]


def test_feast_sidecar_fronts_the_feature_server_on_loopback() -> None:
    docs = render(DEPLOY / "feast")
    deployment = one(docs, "Deployment", "feature-server")
    spec = deployment["spec"]["template"]["spec"]
    policy = policy_of(one(docs, "ConfigMap", "mlchaos-feast-policy"))
    sidecar, server = container(spec, "mlchaos"), container(spec, "feature-server")
    command = server["command"]
    # feast serve on loopback, on the port mlchaos forwards to; no port of its own.
    assert command[:2] == ["feast", "serve"] and command[command.index("-h") + 1] == "127.0.0.1"
    assert int(command[command.index("-p") + 1]) == policy.upstream.port and "ports" not in server
    assert policy.listen.port == port(sidecar, "http") and policy.admin.listen.port == port(sidecar, "admin")
    service = one(docs, "Service", "feature-server")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # The repo config is mounted where feast serve runs; every experiment is sticky on a driver and reads Feast.
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    assert mounts["repo"] == server["workingDir"]
    assert "feature_store.yaml" in one(docs, "ConfigMap", "feast-repo")["data"]
    for exp in policy.experiments:
        assert str(exp.sticky_key) == "entity:driver_id"
        assert exp.match.path is not None and exp.match.path.fullmatch("/get-online-features")


def test_pipeline_job_reads_its_store_through_an_egress_sidecar() -> None:
    docs = render(DEPLOY / "pipeline")
    job = one(docs, "CronJob", "events-daily")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]
    spec = pod["spec"]
    policy = policy_of(one(docs, "ConfigMap", "mlchaos-pipeline-policy"))
    # A native sidecar: an init container that keeps running (restartPolicy Always), so the Job completes when
    # the task ends, and the task starts only once mlchaos is ready.
    sidecar = next(c for c in spec["initContainers"] if c["name"] == "mlchaos")
    assert sidecar["restartPolicy"] == "Always" and spec["restartPolicy"] == "Never"
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    task = container(spec, "task")
    # The task's S3 client goes to mlchaos on loopback; mlchaos goes to the store, with the Host the client
    # signed (SigV4 covers it).
    assert env(task)["AWS_ENDPOINT_URL_S3"] == f"http://127.0.0.1:{policy.listen.port}"
    assert policy.listen.is_loopback and policy.upstream.host != "127.0.0.1" and policy.preserve_host
    assert policy.admin.listen.port == port(sidecar, "admin")
    # Samples and the kill switch's state go to a writable volume: the root filesystem is read-only.
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in sidecar["volumeMounts"] if not m.get("readOnly")]
    dirs = [e.samples.dir for e in policy.experiments if e.samples.dir] + [policy.state_file]
    assert dirs and all(any(str(d).startswith(w + "/") for w in writable) for d in dirs)
    assert "mlchaos.io/sidecar" in pod["metadata"]["labels"]
    task_py = one(docs, "ConfigMap", "events-daily-task")["data"]["task.py"]
    compile(task_py, "task.py", "exec")
    assert any(m["mountPath"] == "/opt/task" for m in task["volumeMounts"])


def test_monitoring_scrapes_the_sidecar_and_alerts_on_its_gauges() -> None:
    docs = render(DEPLOY / "monitoring")
    pod = one(render(DEPLOY / "base"), "Deployment", "model")["spec"]["template"]
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["path"] == "/metrics"
    port(container(pod["spec"], "mlchaos"), endpoint["port"])
    rules = {r["alert"]: r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    exprs = {name: r["expr"] for name, r in rules.items()}
    assert re.search(r"\bmlchaos_killswitch_tripped\b.*== 1$", exprs["MlchaosKillSwitchTripped"])
    assert re.search(r"\bmlchaos_sample_ratio_mismatch\b.*== 1$", exprs["MlchaosSampleRatioMismatch"])
    for r in rules.values():
        assert r["labels"]["severity"] and r["annotations"]["summary"] and r["annotations"]["description"]
    promql = pytest.importorskip("promql_parser")
    for expr in exprs.values():
        promql.parse(expr)


def test_grafana_dashboard_is_referenced() -> None:
    kust = load(DEPLOY / "grafana" / "kustomization.yaml")[0]
    (gen,) = kust["configMapGenerator"]
    assert gen["files"] == ["mlchaos.json"]
    assert gen["options"]["labels"] == {"grafana_dashboard": "1"}


def _experiments() -> set[str]:
    return {e.name for e in policy_of(one(render(DEPLOY / "base"), "ConfigMap", "mlchaos-policy")).experiments}


def _arg_defaults(template: Doc) -> dict[str, str]:
    return {a["name"]: a.get("value", "") for a in template["spec"]["args"]}


def test_argo_web_analysis_reads_the_gate_verdict() -> None:
    docs = render(DEPLOY / "rollouts")
    template = one(docs, "AnalysisTemplate", "mlchaos-gate")
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$.verdict}"
    assert re.fullmatch(r"http://\{\{args\.service}}\.\{\{args\.namespace}}\.svc:9000/gate\?experiment="
                        r"\{\{args\.experiment}}", web["url"])
    # pass -> Successful, fail -> Failed; inconclusive matches neither, so the measurement is Inconclusive.
    assert metric["successCondition"] == 'result == "pass"'
    assert metric["failureCondition"] == 'result == "fail"'
    assert metric["failureLimit"] == 0 and metric["inconclusiveLimit"] >= 1
    defaults = _arg_defaults(template)
    assert defaults["experiment"] in _experiments()
    # The Service the gate reads is the Rollout's canary Service, on mlchaos's admin port.
    rollout = one(docs, "Rollout", "model")
    assert rollout["spec"]["strategy"]["canary"]["canaryService"] == defaults["service"]
    canary_admin = one(docs, "Service", defaults["service"])
    assert [(p["port"], p["targetPort"]) for p in canary_admin["spec"]["ports"]] == [(9000, "admin")]
    assert rollout["spec"]["workloadRef"]["name"] == one(render(DEPLOY / "base"), "Deployment")["metadata"]["name"]
    used = {t["templateName"] for d in walk(rollout) if isinstance(d, dict) and "templates" in d
            for t in d["templates"]}
    assert used == {"mlchaos-gate", "mlchaos-error-rate"}


def test_argo_prometheus_analysis_compares_chaos_with_control() -> None:
    template = one(render(DEPLOY / "rollouts"), "AnalysisTemplate", "mlchaos-error-rate")
    defaults = _arg_defaults(template) | {"namespace": "models"}
    assert defaults["experiment"] in _experiments()
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    rate = metrics["chaos-vs-control-error-rate"]
    query = rate["provider"]["prometheus"]["query"]
    for needle in ("mlchaos_requests_total", 'cohort="chaos"', 'cohort="control"', 'code=~"5xx|dropped"'):
        assert needle in query
    assert "len(result) > 0" in rate["successCondition"] and "len(result) > 0" in rate["failureCondition"]
    assert "mlchaos_killswitch_tripped" in metrics["kill-switch"]["provider"]["prometheus"]["query"]
    promql = pytest.importorskip("promql_parser")
    for metric in metrics.values():
        resolved = re.sub(r"\{\{args\.([\w-]+)}}", lambda m: defaults[m[1]], metric["provider"]["prometheus"]["query"])
        assert "{{" not in resolved
        promql.parse(resolved)


def test_flagger_canary_calls_the_gate_hooks() -> None:
    canary = one(render(DEPLOY / "flagger"), "Canary", "model")
    base = render(DEPLOY / "base")
    deployment = one(base, "Deployment", "model")
    assert canary["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"}
    sidecar = container(deployment["spec"]["template"]["spec"], "mlchaos")
    port(sidecar, canary["spec"]["service"]["targetPort"])
    assert canary["spec"]["service"]["portDiscovery"] is True  # exposes the admin port on model-canary
    hooks = canary["spec"]["analysis"]["webhooks"]
    gates = {(h["type"], h["url"].split(":9000", 1)[1]) for h in hooks if ":9000/" in h["url"]}
    assert gates == {("pre-rollout", "/gate/flagger"), ("rollout", "/gate/flagger"),
                     ("rollback", "/gate/flagger/rollback")}
    for h in hooks:
        if ":9000/" in h["url"]:
            assert h["url"].startswith(f"http://{canary['metadata']['name']}-canary.")
            assert h["metadata"]["experiment"] in _experiments()
    # Load for the canary comes first, so the pre-rollout gate has chaos requests to judge.
    pre = [h for h in hooks if h["type"] == "pre-rollout"]
    assert "loadtester" in pre[0]["url"] and pre[-1]["url"].endswith("/gate/flagger")


def test_kserve_inference_service_has_the_sidecar() -> None:
    docs = render(DEPLOY / "kserve")
    predictor = one(docs, "InferenceService")["spec"]["predictor"]
    policy = policy_of(one(docs, "ConfigMap", "mlchaos-policy-kserve"))
    model, sidecar = container(predictor, "kserve-container"), container(predictor, "mlchaos")
    assert "ports" not in model and env(model)["MLSERVER_HOST"] == "127.0.0.1"
    assert int(env(model)["MLSERVER_HTTP_PORT"]) == policy.upstream.port
    assert policy.listen.port == port(sidecar, "http") == 8080  # KServe's serving port
    assert policy.admin.listen.port == port(sidecar, "admin")
    assert sidecar["ports"][0]["name"] == "http"
    mount = sidecar["volumeMounts"][0]
    volume = next(v for v in predictor["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == "mlchaos-policy-kserve" and mount["mountPath"] == "/etc/mlchaos"
    assert env(sidecar)["MLCHAOS_ADMIN_TOKEN"]["secretKeyRef"]["name"] == "mlchaos-admin"


# ---------------------------------------------------------------------- LitmusChaos and Chaos Mesh

def _verdict_path(url: str) -> str:
    """The experiment a verdict URL asks about, after checking it is the admin Service of deploy/base."""
    m = re.fullmatch(r"http://([\w-]+)\.([\w-]+)\.svc:(\d+)/experiments/([\w.-]+)/verdict", url)
    assert m, url
    service = one(render(DEPLOY / "base"), "Service", m[1])
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(int(m[3]), "admin")]
    return m[4]


def _judged_experiment(name: str) -> None:
    """``name`` is an experiment of deploy/base's policy that declares a hypothesis (else its verdict is 404)."""
    policy = policy_of(one(render(DEPLOY / "base"), "ConfigMap", "mlchaos-policy"))
    exp = next((e for e in policy.experiments if e.name == name), None)
    assert exp is not None, f"{name} is not an experiment of deploy/base"
    assert exp.hypothesis.asked(), f"{name} declares no hypothesis: its verdict endpoint answers 404"


def test_litmus_probes_judge_by_the_verdict_and_the_hypothesis_metric() -> None:
    engine = one(render(DEPLOY / "litmus"), "ChaosEngine")
    pod = one(render(DEPLOY / "base"), "Deployment", "model")["spec"]["template"]
    # The Litmus fault targets the model's pods, and the model container, not mlchaos's.
    key, value = engine["spec"]["appinfo"]["applabel"].split("=")
    assert pod["metadata"]["labels"][key] == value and engine["spec"]["appinfo"]["appkind"] == "deployment"
    (experiment,) = engine["spec"]["experiments"]
    env_of = {e["name"]: e["value"] for e in experiment["spec"]["components"]["env"]}
    container(pod["spec"], env_of["TARGET_CONTAINER"])
    assert env_of["TARGET_CONTAINER"] != "mlchaos"
    probes = {p["type"]: p for p in experiment["spec"]["probe"]}
    assert set(probes) == {"httpProbe", "promProbe"}
    http = probes["httpProbe"]["httpProbe/inputs"]
    _judged_experiment(_verdict_path(http["url"]))
    # 200 is held: the only answer that passes (503 deviated, 425 undecided fail it).
    assert http["method"] == {"get": {"criteria": "==", "responseCode": "200"}}
    prom = probes["promProbe"]["promProbe/inputs"]
    parsed = pytest.importorskip("promql_parser").parse(prom["query"])
    assert "mlchaos_hypothesis" in prom["query"] and 'check="verdict"' in prom["query"]
    name = re.search(r'experiment="([\w.-]+)"', prom["query"])
    assert name is not None and name[1] == _verdict_path(http["url"])
    # The gauge is 1 held, 0 inconclusive, -1 deviated: the minimum over the pods, at least 0.
    assert str(parsed).startswith("min(") and prom["comparator"] == {"criteria": ">=", "value": "0"}
    assert probes["promProbe"]["mode"] == "Continuous"


def test_chaos_mesh_workflow_starts_the_experiment_and_aborts_on_the_verdict() -> None:
    workflow = one(render(DEPLOY / "chaos-mesh"), "Workflow")
    templates = {t["name"]: t for t in workflow["spec"]["templates"]}
    assert len(templates) == len(workflow["spec"]["templates"])
    for t in templates.values():
        assert t["templateType"] in CHAOS_MESH_TEMPLATE_TYPES, t["name"]
        for child in t.get("children", []):
            assert child in templates, f"{t['name']}: no template {child}"
    # The entry runs the Task first, then the StatusCheck beside the chaos.
    entry = templates[workflow["spec"]["entry"]]
    assert entry["templateType"] == "Serial"
    task = templates[entry["children"][0]]
    assert task["templateType"] == "Task"
    together = templates[entry["children"][1]]
    kinds = {templates[c]["templateType"] for c in together["children"]}
    assert together["templateType"] == "Parallel" and kinds == {"StatusCheck", "StressChaos"}
    check = next(templates[c] for c in together["children"] if templates[c]["templateType"] == "StatusCheck")
    assert check["abortWithStatusCheck"] is True
    status = check["statusCheck"]
    assert status["type"] == "HTTP" and status["http"]["method"] == "GET"
    assert status["http"]["criteria"] == {"statusCode": "200"}
    experiment = _verdict_path(status["http"]["url"])
    _judged_experiment(experiment)
    # The Task starts that experiment on the same admin Service, with the token of the Secret mlchaos-admin.
    c = task["task"]["container"]
    script = " ".join(c["args"])
    assert re.search(r"curl -f\w* .*-X POST .*Authorization: Bearer \$MLCHAOS_ADMIN_TOKEN", script), script
    start = re.search(r"(http://\S+)/experiments/([\w.-]+)/start", script)
    assert start is not None and start[2] == experiment
    assert start[1] == status["http"]["url"].split("/experiments/")[0]
    secret = load(DEPLOY / "base" / "secret.yaml")[0]
    assert env(c)["MLCHAOS_ADMIN_TOKEN"] == {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "token"}}
    # The stress hits the model container of deploy/base's pods.
    stress = next(templates[c]["stressChaos"] for c in together["children"]
                  if templates[c]["templateType"] == "StressChaos")
    pod = one(render(DEPLOY / "base"), "Deployment", "model")["spec"]["template"]
    assert stress["selector"]["labelSelectors"].items() <= pod["metadata"]["labels"].items()
    for name in stress["containerNames"]:
        assert name != "mlchaos"
        container(pod["spec"], name)


def _fails(doc: Doc) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMAS[(doc["apiVersion"], doc["kind"])])


def test_vendored_crd_schemas_catch_broken_copies() -> None:
    """The CRD checks above are real: each of these broken copies fails."""
    engine = one(render(DEPLOY / "litmus"), "ChaosEngine")
    jsonschema.validate(engine, SCHEMAS[(engine["apiVersion"], engine["kind"])])
    probe = lambda d, i: d["spec"]["experiments"][0]["spec"]["probe"][i]  # noqa: E731
    broken = copy.deepcopy(engine)
    probe(broken, 0)["httpProbe/input"] = probe(broken, 0).pop("httpProbe/inputs")  # misspelt
    _fails(broken)
    broken = copy.deepcopy(engine)
    probe(broken, 0)["mode"] = "AtTheEnd"  # not SOT, EOT, Edge, Continuous or OnChaos
    _fails(broken)
    broken = copy.deepcopy(engine)
    probe(broken, 0)["httpProbe/inputs"]["method"]["get"]["responseCode"] = 200  # a string in the CRD
    _fails(broken)
    broken = copy.deepcopy(engine)
    del probe(broken, 1)["runProperties"]
    _fails(broken)
    broken = copy.deepcopy(engine)
    broken["spec"]["experiments"][0]["spec"]["probes"] = broken["spec"]["experiments"][0]["spec"].pop("probe")
    _fails(broken)  # under Litmus's x-kubernetes-preserve-unknown-fields: strict() still refuses it

    workflow = one(render(DEPLOY / "chaos-mesh"), "Workflow")
    jsonschema.validate(workflow, SCHEMAS[(workflow["apiVersion"], workflow["kind"])])
    check = next(t for t in workflow["spec"]["templates"] if t["templateType"] == "StatusCheck")
    broken = copy.deepcopy(workflow)
    next(t for t in broken["spec"]["templates"] if t["name"] == check["name"])["abortWithStatusChecks"] = True
    _fails(broken)
    broken = copy.deepcopy(workflow)
    next(t for t in broken["spec"]["templates"] if t["name"] == check["name"])["statusCheck"]["http"][
        "criteria"] = {"statusCode": 200}
    _fails(broken)
    broken = copy.deepcopy(workflow)
    next(t for t in broken["spec"]["templates"] if t["templateType"] == "StressChaos")["stressChaos"]["mode"] = "half"
    _fails(broken)
    broken = copy.deepcopy(workflow)
    del broken["spec"]["entry"]
    _fails(broken)
    task = next(t for t in workflow["spec"]["templates"] if t["templateType"] == "Task")
    container_copy = copy.deepcopy(task["task"]["container"])
    container_copy["env"][0]["valueFrom"]["secretKeyRef"]["key"] = 1
    with pytest.raises(jsonschema.ValidationError):
        core_validator("io.k8s.api.core.v1.Container").validate(container_copy)


def test_vendored_crd_schemas_say_where_they_came_from() -> None:
    for path in sorted(CRDS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert re.fullmatch(r"[\w.-]+/[\w.-]+ \S+\.ya?ml@[0-9a-f]{40}", data["source"]), path.name
        group, version = data["apiVersion"].split("/")
        assert path.name.startswith(f"{data['kind'].lower()}s.{group}") and version.startswith("v")
        # vendor.py leaves the description texts out (a property may still be called "description").
        assert not [n for n in walk(data["schema"]) if isinstance(n, dict) and isinstance(n.get("description"), str)]
