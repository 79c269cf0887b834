"""tools/check_deploy.py against altered copies of deploy/: each case breaks one thing a
check is there for (mostly in the attribution cluster's and the PostgreSQL files) and
expects that check to fail, naming it; the unaltered copy passes. `make check-deploy` runs these after the
check itself; alone: python3 -m pytest -q tests/deploy
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(REPO, "tools", "check_deploy.py")

CLUSTER_K8S = "deploy/k8s/overlays/cluster/"
NATS_CONF = CLUSTER_K8S + "nats.conf"
NATS_YAML = CLUSTER_K8S + "nats.yaml"
ATTR_PATCH = CLUSTER_K8S + "attribution.yaml"
COMPOSE = "deploy/compose.cluster.yaml"
COMPOSE_NATS = "deploy/nats/compose.conf"
DROPIN = "deploy/systemd/yaowei-attribution.service.d/cluster.conf"
PG_COMPOSE = "deploy/compose.postgres.yaml"
PG_K8S = "deploy/k8s/overlays/postgres/"

# (id, file, text, replacement (count: how many of the text to replace, all when None),
#  section of check_deploy, what the failing check says)
CASES = [
    # NATS on Kubernetes: its configuration and StatefulSet.
    ("nats-conf-syntax", NATS_CONF, "  listen: 0.0.0.0:6222\n", "  listen: 0.0.0.0:6222 }}\n",
     "k8s", "nats-server -t accepts it"),
    ("nats-conf-unknown-field", NATS_CONF, "  max_file_store: 16GB\n",
     "  max_file_store: 16GB\n  max_files_store: 16GB\n", "k8s", "nats-server -t accepts it"),
    ("nats-conf-route-missing", NATS_CONF, "    nats-route://nats-2.nats-headless:6222\n", "",
     "k8s", "routes to every pod"),
    ("nats-conf-route-port", NATS_CONF, "nats-route://nats-1.nats-headless:6222",
     "nats-route://nats-1.nats-headless:4222", "k8s", "routes to every pod"),
    ("nats-conf-one-name", NATS_CONF, "server_name: $SERVER_NAME", "server_name: nats",
     "k8s", "servers named apart"),
    ("nats-conf-store-off-claim", NATS_CONF, "store_dir: /data", "store_dir: /tmp/js",
     "k8s", "JetStream on a claim"),
    ("nats-two-replicas", NATS_YAML, "  replicas: 3\n", "  replicas: 2\n", "k8s",
     "an odd number of servers"),
    ("nats-ordered-start", NATS_YAML, "  podManagementPolicy: Parallel\n", "", "k8s",
     "pods start together"),
    ("nats-headless-hides-unready", NATS_YAML, "  publishNotReadyAddresses: true\n", "", "k8s",
     "named through a headless Service"),
    ("nats-pdb-below-quorum", NATS_YAML, "  minAvailable: 2\n", "  minAvailable: 1\n", "k8s",
     "keeps the quorum"),
    ("nats-pdb-blocks-drains", NATS_YAML, "  minAvailable: 2\n", "  minAvailable: 3\n", "k8s",
     "keeps the quorum"),
    ("nats-config-not-mounted", NATS_YAML, "mountPath: /etc/nats\n", "mountPath: /etc/nats2\n",
     "k8s", "is a file of a ConfigMap mounted there"),
    ("nats-server-name-not-pod", NATS_YAML, "fieldPath: metadata.name\n",
     "fieldPath: metadata.namespace\n", "k8s", "servers named apart"),
    ("nats-probe-port", NATS_YAML, "              path: /healthz\n              port: monitor",
     "              path: /healthz\n              port: http", "k8s",
     "nats: probes, ports, command"),
    ("nats-short-grace", NATS_YAML, "terminationGracePeriodSeconds: 60",
     "terminationGracePeriodSeconds: 30", "k8s", "fits the grace period"),
    ("kustomization-missing-patch", CLUSTER_K8S + "kustomization.yaml",
     "  - path: attribution.yaml\n", "  - path: attribution-cluster.yaml\n", "k8s",
     "kustomization references exist: deploy/k8s/overlays/cluster"),
    ("kustomization-missing-conf", CLUSTER_K8S + "kustomization.yaml", "      - nats.conf\n",
     "      - nats-cluster.conf\n", "k8s",
     "kustomization references exist: deploy/k8s/overlays/cluster"),
    # Attribution on Kubernetes.
    ("attr-cluster-misses-a-server", ATTR_PATCH, ",nats://nats-2.nats-headless:4222", "",
     "k8s", "--cluster names every NATS pod"),
    ("attr-cluster-wrong-port", ATTR_PATCH, "nats://nats-0.nats-headless:4222",
     "nats://nats-0.nats-headless:6222", "k8s", "--cluster names every NATS pod"),
    ("attr-more-replicas-than-servers", ATTR_PATCH, '"--replicas", "3"', '"--replicas", "5"',
     "k8s", "--cluster names every NATS pod"),
    ("attr-flag-typo", ATTR_PATCH, '"--partitions", "64"', '"--partition", "64"', "k8s",
     "has no flag --partition"),
    ("attr-node-id-not-pod", ATTR_PATCH, "fieldPath: metadata.name",
     "fieldPath: spec.nodeName", "k8s", "node id from the pod's name"),
    ("attr-advertise-other-service", ATTR_PATCH, "$(YW_NODE_ID).attribution-peers:50053",
     "$(YW_NODE_ID).attribution:50053", "k8s", "advertised at its stable name"),
    ("attr-advertise-wrong-port", ATTR_PATCH, "$(YW_NODE_ID).attribution-peers:50053",
     "$(YW_NODE_ID).attribution-peers:50054", "k8s", "advertised at its stable name"),
    ("attr-liveness-on-cluster-state", ATTR_PATCH,
     "          livenessProbe:\n            grpc:\n              port: 50053\n"
     "              service: grpc.health.v1.Health\n", "", "k8s",
     "readiness on the node's cluster state, liveness not"),
    ("attr-peers-hide-unready", CLUSTER_K8S + "attribution-peers.yaml",
     "  publishNotReadyAddresses: true\n", "", "k8s", "advertised at its stable name"),
    ("attr-pdb-two-at-once", "deploy/k8s/base/attribution.yaml", "  maxUnavailable: 1\n",
     "  maxUnavailable: 2\n", "k8s", "takes one node at a time"),
    ("configmap-variable-typo", "deploy/k8s/base/configmap.yaml", "  YW_GRACE_MS:",
     "  YW_GRACE_MSEC:", "k8s", "ConfigMap yaowei-config: variables the services read"),
    # compose: the cluster file and its NATS configuration.
    ("compose-node-id-twice", COMPOSE, '"--node-id", "attribution-3"',
     '"--node-id", "attribution-2"', "compose", "own node id"),
    ("compose-cluster-misses-a-server", COMPOSE,
     '"nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",\n              '
     '"--node-id", "attribution-3"',
     '"nats://nats-1:4222,nats://nats-2:4222",\n              "--node-id", "attribution-3"',
     "compose", "attribution-3: --cluster names every NATS server"),
    ("compose-advertise-other-node", COMPOSE, '"--advertise-addr", "attribution-2:50053"',
     '"--advertise-addr", "attribution-1:50053"', "compose", "own node id and address"),
    ("compose-flag-typo", COMPOSE, '"--advertise-addr", "attribution-1:50053"',
     '"--advertise-address", "attribution-1:50053"', "compose",
     "has no flag --advertise-address"),
    ("compose-replicas-disagree", COMPOSE,
     '"--advertise-addr", "attribution-3:50053",\n              "--partitions", "64"',
     '"--advertise-addr", "attribution-3:50053",\n              "--partitions", "32"',
     "compose", "the nodes agree"),
    ("compose-no-wait-for-nats", COMPOSE,
     "    nats-3:\n      condition: service_healthy\n", "    nats-3:\n      condition: service_started\n",
     "compose", "waits for NATS"),
    ("compose-shared-nats-volume", COMPOSE, "      - nats-2-data:/data\n",
     "      - nats-1-data:/data\n", "compose", "NATS volumes are not shared"),
    ("compose-nats-name-clash", COMPOSE, "      SERVER_NAME: nats-3\n",
     "      SERVER_NAME: nats-1\n", "compose", "every NATS server has a name of its own"),
    ("compose-conf-not-mounted", COMPOSE, "./nats/compose.conf:/etc/nats/nats.conf:ro,z",
     "./nats/nats.conf:/etc/nats/nats.conf:ro,z", "compose", "bind mount"),
    ("compose-creator-profile-differs", COMPOSE, '"127.0.0.1:9091:9090"',
     '"127.0.0.1:9191:9090"', "compose", "creator-profile: as in deploy/compose.yaml"),
    ("compose-conf-syntax", COMPOSE_NATS, "jetstream {", "jetstream {{", "compose",
     "nats-server -t accepts it"),
    ("compose-conf-route-missing", COMPOSE_NATS, "    nats-route://nats-3:6222\n", "",
     "compose", "routes to every NATS service"),
    ("compose-conf-store-off-volume", COMPOSE_NATS, "store_dir: /data", "store_dir: /tmp/js",
     "compose", "JetStream on a volume"),
    ("compose-standalone-flag-typo", "deploy/compose.yaml",
     '["yaowei-attribution", "--listen", "0.0.0.0:50053"]',
     '["yaowei-attribution", "--listn", "0.0.0.0:50053"]', "compose", "has no flag --listn"),
    # PostgreSQL: compose.postgres.yaml.
    ("pg-compose-image", PG_COMPOSE, "image: docker.io/library/postgres:15\n",
     "image: docker.io/library/postgres:16\n", "compose", "PostgreSQL is the image postgres:15"),
    ("pg-compose-no-volume", PG_COMPOSE, "      - postgres-data:/var/lib/postgresql/data\n", "",
     "compose", "its data on a volume"),
    ("pg-compose-no-pg-isready", PG_COMPOSE, '"CMD-SHELL", "pg_isready -h',
     '"CMD-SHELL", "true; pg_ready -h', "compose", "pg_isready"),
    ("pg-compose-no-password", PG_COMPOSE, "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-yaowei}\n",
     "", "compose", "POSTGRES_PASSWORD is not set"),
    ("pg-compose-wrong-database", PG_COMPOSE, "@postgres:5432/${POSTGRES_DB:-yaowei}?",
     "@postgres:5432/yaowei_test?", "compose", "YW_STORE names the database"),
    ("pg-compose-wrong-host", PG_COMPOSE, "@postgres:5432/", "@db:5432/", "compose",
     "not a PostgreSQL service of this file"),
    ("pg-compose-no-wait", PG_COMPOSE,
     "    depends_on:\n      postgres:\n        condition: service_healthy\n"
     "    networks:\n      default:\n        aliases: [creator-profile]\n"
     "    ports:\n      - \"127.0.0.1:50054:50051\"",
     "    depends_on:\n      postgres:\n        condition: service_started\n"
     "    networks:\n      default:\n        aliases: [creator-profile]\n"
     "    ports:\n      - \"127.0.0.1:50054:50051\"", "compose",
     "creator-profile-2: YW_STORE names the database, waits for it"),
    ("pg-compose-data-volume", PG_COMPOSE,
     '    command: ["yaowei-tier-scoring", "--listen", "0.0.0.0:50052"]\n    depends_on:\n'
     '      postgres:\n        condition: service_healthy\n      creator-profile-1:\n'
     '        condition: service_healthy\n      creator-profile-2:\n'
     '        condition: service_healthy\n    networks:\n      default:\n'
     '        aliases: [tier-scoring]\n    ports:\n      - "127.0.0.1:50052:50052"\n',
     '    command: ["yaowei-tier-scoring", "--listen", "0.0.0.0:50052"]\n    depends_on:\n'
     '      postgres:\n        condition: service_healthy\n      creator-profile-1:\n'
     '        condition: service_healthy\n      creator-profile-2:\n'
     '        condition: service_healthy\n    networks:\n      default:\n'
     '        aliases: [tier-scoring]\n    volumes:\n      - attribution-data:/var/lib/yaowei\n'
     '    ports:\n      - "127.0.0.1:50052:50052"\n', "compose", "no data volume"),
    ("pg-compose-port-clash", PG_COMPOSE, '"127.0.0.1:50055:50052"', '"127.0.0.1:50054:50052"',
     "compose", "every published host port is one service's"),
    ("pg-compose-lost-alias", PG_COMPOSE, "        aliases: [tier-scoring]\n", "", "compose",
     "peer addresses name services of this file"),
    ("pg-compose-attribution-store", PG_COMPOSE,
     '["yaowei-attribution", "--listen", "0.0.0.0:50053"]',
     '["yaowei-attribution", "--listen", "0.0.0.0:50053", "--store", "postgresql://postgres/yaowei"]',
     "compose", "keeps its own store"),
    ("pg-compose-flag-typo", PG_COMPOSE, "YW_STORE_POOL:", "YW_STORE_POOLS:", "compose",
     "reads no variable YW_STORE_POOLS"),
    # PostgreSQL: the Kubernetes overlay.
    ("pg-k8s-one-replica", PG_K8S + "creator-profile.yaml", "  replicas: 2\n", "  replicas: 1\n",
     "k8s", "creator-profile on PostgreSQL: stateless replicas"),
    ("pg-k8s-store-literal", PG_K8S + "tier-scoring.yaml",
     "            - name: YW_STORE\n              valueFrom:\n                secretKeyRef:\n"
     "                  name: yaowei-store\n                  key: uri\n",
     "            - name: YW_STORE\n              value: postgresql://yaowei:pw@db/yaowei\n",
     "k8s", "YW_STORE from a Secret"),
    ("pg-k8s-store-flag", PG_K8S + "creator-profile.yaml",
     'args: ["--listen", "0.0.0.0:50051"]',
     'args: ["--listen", "0.0.0.0:50051", "--store", "postgresql://yaowei:pw@db/yaowei"]',
     "k8s", "on the command line"),
    ("pg-k8s-liveness-on-database", PG_K8S + "creator-profile.yaml",
     "          livenessProbe:\n            grpc:\n              port: 50051\n"
     "              service: grpc.health.v1.Health\n",
     "          livenessProbe:\n            grpc:\n              port: 50051\n",
     "k8s", "readiness on the database, liveness not"),
    ("pg-k8s-data-volume", PG_K8S + "tier-scoring.yaml",
     "        - name: tmp\n          emptyDir:\n",
     "        - name: data\n          persistentVolumeClaim:\n            claimName: data\n"
     "        - name: tmp\n          emptyDir:\n", "k8s", "no data volume"),
    ("pg-k8s-statefulset-kept", PG_K8S + "kustomization.yaml",
     "  - path: delete-tier-scoring-statefulset.yaml\n", "", "k8s",
     "selects one workload"),
    ("pg-k8s-delete-two-in-one-file", PG_K8S + "delete-tier-scoring-statefulset.yaml",
     "  name: tier-scoring\n",
     "  name: tier-scoring\n---\n$patch: delete\napiVersion: v1\nkind: Service\n"
     "metadata:\n  name: tier-scoring\n", "k8s", "must be the file's only document"),
    ("pg-k8s-pdb-two-at-once", "deploy/k8s/base/creator-profile.yaml", "  maxUnavailable: 1\n",
     "  maxUnavailable: 2\n", "k8s", "takes one replica at a time"),
    ("pg-k8s-store-in-configmap", "deploy/k8s/base/configmap.yaml", "  YW_LOG_LEVEL: info\n",
     "  YW_LOG_LEVEL: info\n  YW_STORE: postgresql://yaowei:pw@db/yaowei\n", "k8s",
     "no store URI"),
    ("sqlite-k8s-two-replicas", "deploy/k8s/base/tier-scoring.yaml", "  replicas: 1\n",
     "  replicas: 2\n", "k8s", "tier-scoring standalone (SQLite): one replica"),
    # Containerfiles.
    ("containerfile-no-libpq", "deploy/container/Containerfile",
     'REQUIRED_RUNTIME_PACKAGES="libnats3.4 libpq5"', 'REQUIRED_RUNTIME_PACKAGES="libnats3.4"',
     "containerfile", "libpq5 among them"),
    ("containerfile-runtime-package", "deploy/container/Containerfile",
     'REQUIRED_RUNTIME_PACKAGES="libnats3.4 libpq5"', 'REQUIRED_RUNTIME_PACKAGES="libnats3 libpq5"',
     "containerfile", "required runtime packages"),
    ("nats-containerfile-root", "deploy/container/nats.Containerfile", "USER 10002:10002\n",
     "USER root\n", "containerfile", "non-root user"),
    # systemd: the cluster node's drop-in and environment file.
    ("dropin-unknown-key", DROPIN, "[Service]\n", "[Service]\nRestartSecs=2\n", "systemd",
     "systemd-analyze verify yaowei-attribution.service"),
    ("dropin-flag-typo", DROPIN, "--data-dir ${STATE_DIRECTORY}",
     "--datadir ${STATE_DIRECTORY}", "systemd", "has no flag --datadir"),
    ("env-file-variable-typo", "deploy/systemd/attribution-cluster.env", "YW_NODE_ID=",
     "YW_NODEID=", "systemd", "reads no variable YW_NODEID"),
    ("dropin-env-file-without-example", DROPIN, "/etc/yaowei/attribution-cluster.env",
     "/etc/yaowei/attribution-node.env", "systemd", "has an example in deploy/systemd"),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """What check_deploy reads: deploy/, the option tables' sources, the build context's
    files the Containerfile copies."""
    root = tmp_path_factory.mktemp("pristine")
    shutil.copytree(os.path.join(REPO, "deploy"), root / "deploy")
    shutil.copytree(os.path.join(REPO, "services"), root / "services",
                    ignore=shutil.ignore_patterns("*.o", "__pycache__"))
    (root / "common").mkdir()
    shutil.copy(os.path.join(REPO, "common", "app.c"), root / "common")
    shutil.copy(os.path.join(REPO, "Makefile"), root)
    return root


def run_check(root, only=None):
    argv = [sys.executable, CHECK, "--repo", str(root)] + (["--only", only] if only else [])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_unaltered_copy_passes(pristine):
    rc, out = run_check(pristine)
    fails = [l for l in out.splitlines() if l.startswith("FAIL")]
    assert rc == 0 and not fails, out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_breaking_a_file_fails_its_check(pristine, tmp_path, case):
    _, path, old, new, section, expect = case
    root = tmp_path / "tree"
    shutil.copytree(pristine, root, symlinks=True)
    target = root / path
    text = target.read_text(encoding="utf-8")
    assert old in text, "%s no longer holds %r: update this case" % (path, old)
    target.write_text(text.replace(old, new), encoding="utf-8")
    rc, out = run_check(root, section)
    fails = [l for l in out.splitlines() if l.startswith("FAIL")]
    assert rc == 1, "check_deploy passed with %s altered:\n%s" % (path, out)
    assert any(expect in l for l in fails), \
        "no failing check says %r; failures:\n%s" % (expect, "\n".join(fails))
