"""The Helm chart (deploy/helm/loramux), rendered without a cluster or network by Helm's own Go
SDK (the `helm-python-sdk` wheel bundles it), with its default values, each toggle and each
example values file; every manifest is validated against the Kubernetes schemas of the oldest
and the newest supported version (`kubernetes-validate` ships them), and the ConfigMap's config
is loaded by loramux's own loader, so the chart can never ship a config key loramux refuses."""

from __future__ import annotations

import base64
import copy
import functools
import json
import re
import typing
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from loramux.config import RegistrySettings, load_config, read_yaml
from loramux.config.load import check_admin_key
from tests.conftest import REPO

CHART = REPO / "deploy" / "helm" / "loramux"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
KUBE_VERSIONS = ("1.29.0", "1.37.0")
"""Chart.yaml's kubeVersion floor and the newest schemas kubernetes-validate ships."""
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
"""Kinds of operators, which have no schema in kubernetes-validate."""
NAMESPACE = "ai"
STRONG_KEY = "Zq7vW2mX9pL4rT8yB3nK6cH1sD5fG0jAeUoIuY"

POSTGRES_BUNDLED = {"database": {"kind": "postgres-bundled"}, "gateway": {"replicas": 2}}
POSTGRES_EXTERNAL = {
    "database": {
        "kind": "postgres-external",
        "external": {"url": "postgresql://lm:s3cr3t-pw@db.example:5432/lm"},
    },
    "gateway": {"replicas": 3},
}
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
    "postgres-bundled": POSTGRES_BUNDLED,
    "postgres-external-url": POSTGRES_EXTERNAL,
    "postgres-external-secret": {
        "database": {"kind": "postgres-external", "external": {"existingSecret": "db"}},
        "gateway": {"autoscaling": {"enabled": True}},
    },
    "disruption-budgets": {
        "gateway": {"podDisruptionBudget": {"enabled": True}},
        "vllm": {"podDisruptionBudget": {"enabled": True}},
    },
    "three-vllm-replicas": {"vllm": {"replicas": 3, "gpus": 2}},
    "model-from-pvc": {"vllm": {"modelSource": "pvc", "modelClaim": "llama", "modelSubPath": "8b"}},
    "existing-secret-and-claim": {
        "secrets": {"existingSecret": "mine"},
        "adaptersVolume": {"existingClaim": "adapters"},
    },
    "no-vllm-hf-engine": {"vllm": {"enabled": False}, "config": {"engine": {"kind": "hf"}}},
    **{f"example-{path.stem}": read_yaml(path) for path in EXAMPLES},
}


def postgres_case(values: dict[str, Any]) -> bool:
    return str(values.get("database", {}).get("kind", "sqlite")).startswith("postgres")


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart makes with these values (NOTES.txt left out); a fresh copy."""
    return copy.deepcopy(_render(json.dumps(values, sort_keys=True)))


@functools.lru_cache(maxsize=64)
def _render(values_json: str) -> list[dict[str, Any]]:
    values = json.loads(values_json)
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="demo", namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def secret_values(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {
        (d["metadata"]["name"], key): base64.b64decode(value).decode()
        for d in docs
        if d["kind"] == "Secret"
        for key, value in d.get("data", {}).items()
    }


def pod_environ(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The gateway container's environment, Secrets resolved (a strong key for Secrets the
    chart does not make)."""
    secrets = secret_values(docs)
    env: dict[str, str] = {}
    for item in container(find(docs, "Deployment"), "gateway")["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets.get((ref["name"], ref["key"]), STRONG_KEY)
    return env


def shipped_config(docs: list[dict[str, Any]], tmp_path: Path) -> Path:
    config_map = find(docs, "ConfigMap")
    path = tmp_path / "loramux.yaml"
    path.write_text(config_map["data"]["loramux.yaml"], encoding="utf-8")
    return path


def test_chart_passes_helm_lint_strict() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(case: str, version: str) -> None:
    docs = render(CASES[case])
    assert {d["kind"] for d in docs} >= {"ConfigMap", "Deployment", "Service", "Secret"} - (
        {"Secret"} if case == "existing-secret-and-claim" else set()
    )
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            assert doc["spec"]["endpoints"], doc["metadata"]["name"]
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("case", CASES)
def test_the_configmap_config_loads_with_loramux_own_loader(case: str, tmp_path: Path) -> None:
    values = CASES[case]
    store = RegistrySettings.model_fields["store"].annotation
    if postgres_case(values) and "postgres" not in typing.get_args(store):
        pytest.skip("registry.store postgres is not in this loramux yet (issue 17, item 1)")
    docs = render(values)
    config = load_config(shipped_config(docs, tmp_path), environ=pod_environ(docs))
    gateway = container(find(docs, "Deployment"), "gateway")
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    assert str(config.paths.data_dir) == mounts["data"]
    assert config.server.host == "0.0.0.0"
    assert config.server.port == gateway["ports"][0]["containerPort"]
    assert config.auth.enabled
    assert config.registry.store == ("postgres" if postgres_case(values) else "sqlite")
    assert "admin" in config.admin.keys
    assert config.kb.dir is not None
    assert str(config.kb.dir).startswith(mounts["local"])
    if values.get("vllm", {}).get("enabled", True):
        assert config.engine.kind == "remote"
        assert config.engine.remote.api_key  # from LORAMUX_REMOTE_API_KEY, not the ConfigMap
    else:
        assert config.engine.kind == values["config"]["engine"]["kind"]


@pytest.mark.parametrize("case", CASES)
def test_gateway_probes_point_at_ready_and_health(case: str) -> None:
    gateway = container(find(render(CASES[case]), "Deployment"), "gateway")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/health"
    assert gateway["readinessProbe"]["httpGet"]["port"] == gateway["ports"][0]["name"]


@pytest.mark.parametrize("case", [c for c, v in CASES.items() if postgres_case(v)])
def test_gateways_get_the_database_url_from_a_secret(case: str) -> None:
    docs = render(CASES[case])
    env = {e["name"]: e for e in container(find(docs, "Deployment"), "gateway")["env"]}
    ref = env["LORAMUX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    made = secret_values(docs)
    external = CASES[case]["database"].get("external", {})
    if external.get("existingSecret"):
        assert ref == {"name": external["existingSecret"], "key": "url"}
        assert (ref["name"], ref["key"]) not in made
    else:
        url = made[(ref["name"], ref["key"])]
        assert url.startswith("postgresql://")
        assert url == external.get("url", url)
    config_text = find(docs, "ConfigMap")["data"]["loramux.yaml"]
    assert "postgresql://" not in config_text


def test_bundled_postgres_uses_the_password_in_the_gateways_url() -> None:
    docs = render(POSTGRES_BUNDLED)
    postgres = container(find(docs, "StatefulSet", "demo-loramux-postgres"), "postgres")
    env = {e["name"]: e for e in postgres["env"]}
    ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    made = secret_values(docs)
    password = made[(ref["name"], ref["key"])]
    assert len(password) >= 32
    assert made[(ref["name"], "url")] == (
        f"postgresql://loramux:{password}@demo-loramux-postgres:5432/loramux"
    )
    service = find(docs, "Service", "demo-loramux-postgres")
    assert service["spec"]["ports"][0]["port"] == 5432


def test_no_secret_value_appears_outside_the_secrets() -> None:
    values = {
        **POSTGRES_EXTERNAL,
        "secrets": {"adminKey": STRONG_KEY, "vllmApiKey": "vllm-key-0123456789"},
        "metrics": {"serviceMonitor": {"enabled": True}},
    }
    docs = render(values)
    secrets = set(secret_values(docs).values())
    assert {
        STRONG_KEY,
        "vllm-key-0123456789",
        POSTGRES_EXTERNAL["database"]["external"]["url"],
    } <= (secrets)
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for secret in secrets:
            for form in (secret, base64.b64encode(secret.encode()).decode()):
                assert form not in text, f"a secret value in {doc['kind']} {doc['metadata']}"
    assert "s3cr3t-pw" not in json.dumps([d for d in docs if d["kind"] != "Secret"])


def test_random_keys_are_strong_enough_for_loramux() -> None:
    made = secret_values(render({}))
    check_admin_key(made[("demo-loramux-secrets", "admin-key")])
    assert len(made[("demo-loramux-secrets", "vllm-api-key")]) >= 32


@pytest.mark.parametrize("replicas", [1, 3])
def test_gateway_urls_name_every_vllm_replica(replicas: int, tmp_path: Path) -> None:
    docs = render({"vllm": {"replicas": replicas}})
    stateful = find(docs, "StatefulSet", "demo-loramux-vllm")
    service = find(docs, "Service", stateful["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    port = container(stateful, "vllm")["ports"][0]["containerPort"]
    name, svc = stateful["metadata"]["name"], service["metadata"]["name"]
    config = load_config(shipped_config(docs, tmp_path), environ=pod_environ(docs))
    assert config.engine.remote.urls == [
        f"http://{name}-{i}.{svc}.{NAMESPACE}.svc:{port}" for i in range(replicas)
    ]
    assert stateful["spec"]["replicas"] == replicas


def test_vllm_requests_gpus_and_serves_loras_under_the_model_id() -> None:
    docs = render({"vllm": {"gpus": 2, "maxLoras": 12, "extraArgs": ["--max-model-len=4096"]}})
    stateful = find(docs, "StatefulSet", "demo-loramux-vllm")
    vllm = container(stateful, "vllm")
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert vllm["resources"]["requests"]["memory"] == "16Gi"
    args = vllm["args"]
    assert "--enable-lora" in args
    assert "--max-loras=12" in args
    assert "--max-model-len=4096" in args
    assert "--served-model-name=SmolLM2-135M-Instruct" in args
    # vLLM logs its arguments at INFO: the key goes in the environment, never on the command line
    assert not any(arg.startswith("--api-key") for arg in args)
    env = {e["name"]: e for e in vllm["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "vllm-api-key"
    assert env["OMP_NUM_THREADS"]["value"] == "4"  # its CPU request, not every core of the node
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"]["path"] == "/health"
    unset = container(
        find(render({"vllm": {"ompThreads": 0}}), "StatefulSet", "demo-loramux-vllm"), "vllm"
    )
    assert "OMP_NUM_THREADS" not in {e["name"] for e in unset["env"]}


def test_vllm_reads_adapters_where_the_gateways_write_them() -> None:
    docs = render({})
    gateway = find(docs, "Deployment")
    vllm = find(docs, "StatefulSet", "demo-loramux-vllm")

    def data(workload: dict[str, Any], name: str) -> tuple[str, str, bool]:
        spec = workload["spec"]["template"]["spec"]
        (mount,) = [m for m in container(workload, name)["volumeMounts"] if m["name"] == "data"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "data"]
        claim = volume["persistentVolumeClaim"]["claimName"]
        return mount["mountPath"], claim, mount.get("readOnly", False)

    assert data(gateway, "gateway") == ("/var/lib/loramux", "demo-loramux-data", False)
    assert data(vllm, "vllm") == ("/var/lib/loramux", "demo-loramux-data", True)
    claim = find(docs, "PersistentVolumeClaim", "demo-loramux-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_pods_run_as_non_root_with_a_read_only_root() -> None:
    docs = render(POSTGRES_BUNDLED)
    for workload, name in ((find(docs, "Deployment"), "gateway"),):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        ctx = container(workload, name)["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
    postgres = find(docs, "StatefulSet", "demo-loramux-postgres")
    assert postgres["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container(postgres, "postgres")["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_loramux_variable_the_image_sets_is_set_by_the_chart() -> None:
    """The environment wins over the config file: an image default the chart left alone would
    silently override what the ConfigMap says."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    image_env = set(re.findall(r"\b(LORAMUX_[A-Z_]+)=", dockerfile))
    assert image_env >= {"LORAMUX_HOST", "LORAMUX_AUTH", "LORAMUX_DATA_DIR"}
    chart_env = {e["name"] for e in container(find(render({}), "Deployment"), "gateway")["env"]}
    assert image_env <= chart_env


def test_default_config_names_files_the_image_ships() -> None:
    config = yaml.safe_load(find(render({}), "ConfigMap")["data"]["loramux.yaml"])
    paths = [entry["path"] for entry in config["adapters"].values()]
    paths += [config["router"]["routes"], config["router"]["fitted"], *config["kb"]["sources"]]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    copied = re.findall(r"^COPY (\S+) \./", dockerfile, flags=re.M)
    for path in paths:
        relative = Path(path).relative_to("/app")
        assert (REPO / relative).exists(), path
        assert any(relative.is_relative_to(c.rstrip("/")) for c in copied), path


def test_sqlite_gateways_are_replaced_and_postgres_ones_roll() -> None:
    assert find(render({}), "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    rolling = find(render(POSTGRES_BUNDLED), "Deployment")["spec"]["strategy"]
    assert rolling == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_autoscaler_owns_the_replica_count() -> None:
    docs = render(CASES["postgres-external-secret"])
    hpa = find(docs, "HorizontalPodAutoscaler")
    deployment = find(docs, "Deployment")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }


def test_service_monitor_scrapes_metrics_with_the_admin_key() -> None:
    docs = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "p"}}}})
    monitor = find(docs, "ServiceMonitor", "demo-loramux")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["credentials"] == {
        "name": "demo-loramux-secrets",
        "key": "admin-key",
    }
    assert monitor["metadata"]["labels"]["release"] == "p"
    service = find(docs, "Service", "demo-loramux")
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert find(docs, "ServiceMonitor", "demo-loramux-vllm")


REFUSED = [
    ({"gateway": {"replicas": 2}}, "gateway.replicas > 1"),
    ({"gateway": {"autoscaling": {"enabled": True}}}, "need database.kind postgres"),
    ({"config": {"server": {"port": 9000}}}, "config.server.port is set by the chart"),
    ({"config": {"engine": {"remote": {"urls": ["http://x"]}}}}, "config.engine.remote.urls"),
    ({"config": {"paths": {"data_dir": "/x"}}}, "config.paths is set by the chart"),
    ({"config": {"registry": {"store": "sqlite"}}}, "config.registry.store"),
    ({"vllm": {"enabled": False}}, "set config.engine.kind"),
    ({"database": {"kind": "postgres-external"}}, "needs database.external.url"),
    ({"database": {"external": {"url": "postgresql://a@b/c"}}}, "set database.kind"),
    ({"vllm": {"modelSource": "pvc"}}, "needs vllm.modelClaim"),
    ({"vllm": {"maxLoraRank": 16}}, "max_rank (64) is above vllm.maxLoraRank (16)"),
    ({"secrets": {"existingSecret": "s", "adminKey": STRONG_KEY}}, "not both"),
    ({"gateway": {"replica": 2}}, "'replica' not allowed"),
    ({"secrets": {"adminKey": "short"}}, "/secrets/adminKey"),
    ({"database": {"kind": "mysql"}}, "/database/kind"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED, ids=[m for _, m in REFUSED])
def test_values_that_cannot_work_are_refused_with_a_message_naming_them(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)
