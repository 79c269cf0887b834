#!/usr/bin/python3
"""Checks what can be checked of deploy/ without a container engine or a cluster
(`make check-deploy`, part of `make test`):

- every YAML file under deploy/ parses (python3-yaml), every document is a mapping;
- flags and variables: every --flag on a service's command line (compose, Kubernetes,
  systemd) and every YW_* variable given to it is one the service has: its option table
  in the sources (common/app.c, then services/<name>/ as main.c names it);
- Kubernetes: each kustomization (the base and every overlay) is rendered as kustomize
  would (resources, strategic-merge patches, ConfigMap generators; patches merge lists of
  named items by name); its references exist, each object has apiVersion, kind and
  metadata.name, selectors match pod labels, probes and Service target ports name ports
  the container declares, ConfigMaps, volumes and StatefulSet service names referenced
  exist;
- the attribution cluster wherever it appears (compose.cluster.yaml, overlays/cluster):
  the NATS configurations pass `nats-server -t` with each server's environment, name each
  server apart, route to every server and keep JetStream on a volume of each server's;
  the NATS servers are an odd number, at least 3; every attribution node names all of
  them in --cluster, a node id of its own, the address the others reach it at, the same
  --partitions and --replicas (no more replicas than servers); on Kubernetes the
  PodDisruptionBudgets keep NATS' quorum and take one attribution node at a time, and
  only readiness depends on the node's cluster state;
- creator profile and tier scoring on PostgreSQL (README, "Running on PostgreSQL"): the
  store's flags (--store, --store-read, --store-pool, YW_STORE*) only for those two, and
  taken as planned until the sources' option tables have them (a "note" line says so);
  on Kubernetes a service with YW_STORE is a Deployment of 2 or more replicas with no
  data volume, its store URIs from a Secret (never a flag, never the shared ConfigMap),
  readiness on the service's health and start-up/liveness on grpc.health.v1.Health (a
  database outage must not restart the replicas), a PodDisruptionBudget of one at a
  time; one without is a StatefulSet of one replica with its --data-dir on a claim;
  kustomize's `$patch: delete` patches are understood, and where kubectl (or
  kustomize) is installed its rendering must hold the same objects as this check's;
- compose: depends_on, volumes, bind mounts and the build files refer to what exists,
  every service has a health check (the image's probe binary for yaowei's), creator
  profile and tier scoring are the same in every compose file that runs them on SQLite,
  published host ports are one service's, peer addresses name a service (or network
  alias) of the file running that peer; with PostgreSQL: the image postgres:15, its data
  on a named volume, a pg_isready health check, POSTGRES_DB/USER/PASSWORD set; every
  service with YW_STORE names that server, its database and role (compose's ${VAR:-default}
  read with the defaults), waits for it to be healthy, has no data volume, and runs as 2
  or more replicas over one database;
- Containerfiles: each RUN's shell passes `sh -n` and `bash -n`, COPY --from names an
  earlier stage, COPY sources exist in the build context, the final stage is not root;
  the packages the main image requires at run time (libnats3.4 and libpq5 among them) are
  Debian packages installed here;
- systemd: every unit, with its drop-ins, passes `systemd-analyze verify` in a scratch
  root holding the system's units and a stub at each ExecStart path, with no warning at
  all; the environment files they read are in deploy/systemd.

Prints one line per check and "N passed, M failed"; exits 1 when anything failed.
`--repo DIR` checks another tree (the tests' altered copies); `--only SECTION,...` runs
some sections: yaml, flags, k8s, compose, containerfile, systemd.
"""

import argparse
import copy
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "deploy")
IMAGE_BINARIES = {"yaowei-creator-profile", "yaowei-tier-scoring", "yaowei-attribution",
                  "yaowei-health-probe"}
# The NATS image (deploy/container/nats.Containerfile) runs Debian's nats-server.
NATS_BINARY = "nats-server"
# Kubernetes' image names before the kustomizations' images: transformers.
K8S_IMAGES = {"yaowei": IMAGE_BINARIES, "yaowei-nats": {NATS_BINARY}}
ATTRIBUTION = "yaowei-attribution"
ATTRIBUTION_SERVICE = "yaowei.attribution.v1.AttributionService"
# Answers SERVING while the process serves at all, whatever the node's cluster state.
HEALTH_SERVICE = "grpc.health.v1.Health"
# The attribution flags' defaults (services/attribution/attr_service.c attr_options).
DEFAULT_PARTITIONS = 64
DEFAULT_REPLICAS = 3
# The PostgreSQL store (README, "Running on PostgreSQL"): creator profile and tier scoring
# only; attribution keeps its own store. Until the sources' option tables have these
# options they are taken as planned here (and said so, once); from then on the sources
# decide, as for every other flag.
STORE_BINARIES = {"yaowei-creator-profile", "yaowei-tier-scoring"}
STORE_OPTIONS = {"store": "YW_STORE", "store-read": "YW_STORE_READ",
                 "store-pool": "YW_STORE_POOL"}
# Store URIs hold the database's password: from a Secret (Kubernetes), never a flag.
STORE_SECRET_VARIABLES = ("YW_STORE", "YW_STORE_READ")
# grpc.health.v1 names the services' readiness asks for.
SERVICE_NAMES = {"yaowei-creator-profile": "yaowei.creator.v1.CreatorProfileService",
                 "yaowei-tier-scoring": "yaowei.tier.v1.TierScoringService",
                 "yaowei-attribution": ATTRIBUTION_SERVICE}
# The PostgreSQL image of the compose files (the official one, major version 15) and
# where it keeps its data.
POSTGRES_IMAGE = re.compile(r'^(.*/)?postgres:15([.-].*)?$')
POSTGRES_DATA = "/var/lib/postgresql/data"

passed = 0
failed = 0


def report(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % what)
    else:
        failed += 1
        print("FAIL %s%s" % (what, (": " + detail) if detail else ""))


def rel(path):
    return os.path.relpath(path, REPO)


# -- YAML ---------------------------------------------------------------------------------

def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def check_yaml_parses():
    docs = {}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "**", "*.y*ml"), recursive=True)):
        try:
            ds = load_all(path)
            bad = [i for i, d in enumerate(ds) if not isinstance(d, dict)]
            report(ds and not bad, "yaml parses: %s" % rel(path),
                   "empty" if not ds else "document(s) %s are not mappings" % bad)
            docs[path] = ds
        except yaml.YAMLError as e:
            report(False, "yaml parses: %s" % rel(path), str(e).replace("\n", " "))
    return docs


# -- flags and variables ------------------------------------------------------------------

def option_table(text, name):
    """{flag: variable} of the yw_option_t array `name` defined in C source `text`."""
    m = re.search(r'yw_option_t\s+%s\s*\[[^\]]*\]\s*=\s*\{' % re.escape(name), text)
    if not m:
        return None
    end = text.find("\n};", m.end())
    body = text[m.end():end if end >= 0 else len(text)]
    return dict(re.findall(r'\{\s*"([a-z0-9-]+)"\s*,\s*"(YW_[A-Z0-9_]+)"', body))


def service_options():
    """{binary: {flag: variable}} from the sources, or None (reported) when unreadable."""
    try:
        with open(os.path.join(REPO, "common", "app.c"), encoding="utf-8") as f:
            common = option_table(f.read(), "yw__common_options")
    except OSError:
        common = None
    if not common or "listen" not in common or "data-dir" not in common:
        report(False, "flags: the common options in common/app.c (yw__common_options)")
        return None
    out = {}
    for main in sorted(glob.glob(os.path.join(REPO, "services", "*", "main.c"))):
        sdir = os.path.dirname(main)
        binary = "yaowei-" + os.path.basename(sdir).replace("_", "-")
        # The app definition (its .options) lives in main.c or beside the service's init.
        m = None
        for src in [main] + sorted(glob.glob(os.path.join(sdir, "*.c"))):
            with open(src, encoding="utf-8") as f:
                m = re.search(r'\.options\s*=\s*(\w+)', f.read())
            if m:
                break
        opts = dict(common, help="")
        name = m.group(1) if m else "NULL"
        if name != "NULL":
            table = None
            for src in sorted(glob.glob(os.path.join(sdir, "*.c"))):
                with open(src, encoding="utf-8") as f:
                    table = option_table(f.read(), name)
                if table:
                    break
            if not table:
                report(False, "flags: %s's option table %s in %s" % (binary, name, rel(sdir)))
                continue
            opts.update(table)
        out[binary] = opts
    pending = {}
    for binary in sorted(STORE_BINARIES & set(out)):
        for flag, var in sorted(STORE_OPTIONS.items()):
            if flag not in out[binary]:
                out[binary][flag] = var
                pending.setdefault(binary, []).append("--" + flag)
    if pending:
        print("note flags: not in the sources yet, taken as planned: %s"
              % "; ".join("%s %s" % (b, " ".join(f)) for b, f in sorted(pending.items())))
    report(set(out) >= IMAGE_BINARIES - {"yaowei-health-probe"},
           "flags: option tables of %s read from the sources"
           % ", ".join("%s (%d)" % (b, len(o)) for b, o in sorted(out.items())))
    return out


OPTIONS = None  # {binary: {flag: variable}}, once read


def flag_problems(binary, argv, env_names=()):
    """Flags in argv[1:] and YW_* names in env_names that `binary` does not have."""
    if OPTIONS is None or binary not in OPTIONS:
        return []
    opts = OPTIONS[binary]
    variables = set(opts.values())
    bad = []
    for a in argv[1:]:
        if isinstance(a, str) and a.startswith("--"):
            flag = a[2:].split("=", 1)[0]
            if flag not in opts:
                bad.append("%s has no flag --%s" % (binary, flag))
            elif flag in STORE_OPTIONS and binary not in STORE_BINARIES:
                bad.append("%s keeps its own store: no --%s" % (binary, flag))
    for n in env_names:
        if n.startswith("YW_") and n not in variables:
            bad.append("%s reads no variable %s" % (binary, n))
        elif n in STORE_OPTIONS.values() and binary not in STORE_BINARIES:
            bad.append("%s keeps its own store: no %s" % (binary, n))
    return bad


def all_variables():
    return set() if OPTIONS is None else {v for o in OPTIONS.values() for v in o.values()}


def flag_value(argv, flag):
    """The value of --flag in argv ("--flag v" or "--flag=v"), or None."""
    for i, a in enumerate(argv):
        if a == "--" + flag and i + 1 < len(argv):
            return argv[i + 1]
        if isinstance(a, str) and a.startswith("--" + flag + "="):
            return a.split("=", 1)[1]
    return None


# -- NATS configuration -------------------------------------------------------------------

def nats_strip_comments(text):
    return "\n".join(re.sub(r'(^|\s)(#|//).*$', "", line) for line in text.splitlines())


def nats_block(text, name):
    """The text inside `name { ... }` (or `name: {`), or None."""
    m = re.search(r'(^|\n)\s*%s\s*[:=]?\s*\{' % re.escape(name), text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def nats_value(text, key):
    m = re.search(r'(^|\n)\s*%s\s*[:=]?\s*"?([^"\s,}]+)"?' % re.escape(key), text)
    return m.group(2) if m else None


def nats_port(addr, default):
    if addr is None:
        return default
    return int(addr.rsplit(":", 1)[1]) if ":" in addr else int(addr)


def nats_parse(text):
    """What the checks need of a nats-server configuration (its own syntax is
    nats-server -t's to check): server_name, client and cluster ports, routes, store_dir,
    pid_file, lame duck times (seconds)."""
    t = nats_strip_comments(text)
    top = re.sub(r'\{[^{}]*\}', "{}", t)
    while re.search(r'\{[^{}]+\}', top):
        top = re.sub(r'\{[^{}]*\}', "{}", top)
    cluster = nats_block(t, "cluster")
    js = nats_block(t, "jetstream")
    routes = []
    if cluster is not None:
        m = re.search(r'routes\s*[:=]?\s*\[(.*?)\]', cluster, re.S)
        if m:
            routes = [r.strip('"\'') for r in re.split(r'[\s,]+', m.group(1)) if r.strip('"\'')]

    def seconds(v):
        m = re.match(r'^(\d+)(ms|s|m|h)?$', v or "")
        if not m:
            return None
        return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]

    return {
        "server_name": nats_value(top, "server_name"),
        "client_port": nats_port(nats_value(top, "listen") or nats_value(top, "port"), 4222),
        "cluster_port": nats_port(nats_value(cluster, "listen"), 6222) if cluster else None,
        "routes": routes,
        "jetstream": js is not None,
        "store_dir": nats_value(js, "store_dir") if js else None,
        "pid_file": nats_value(top, "pid_file"),
        "ldm_seconds": (seconds(nats_value(top, "lame_duck_grace_period")) or 10)
        + (seconds(nats_value(top, "lame_duck_duration")) or 120),
    }


def nats_test(what, text, env):
    """Runs `nats-server -c FILE -t` on the configuration with the server's environment."""
    exe = shutil.which(NATS_BINARY) or ("/usr/sbin/" + NATS_BINARY
                                        if os.path.exists("/usr/sbin/" + NATS_BINARY) else None)
    if exe is None:
        report(False, "%s: nats-server is installed (Debian package nats-server)" % what)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="yw-nats-") as f:
        f.write(text)
        f.flush()
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        run_env.update({k: str(v) for k, v in env.items()})
        p = subprocess.run([exe, "-c", f.name, "-t"], capture_output=True, text=True,
                           env=run_env, cwd=tempfile.gettempdir())
    out = (p.stdout + p.stderr).strip().replace(f.name, "FILE")
    report(p.returncode == 0, "%s: nats-server -t accepts it" % what, out)


def nats_resolve(value, env):
    """server_name's value with $VAR from the server's environment (None: not defined)."""
    if value and value.startswith("$"):
        return env.get(value[1:])
    return value


def route_hosts(routes):
    out = []
    for r in routes:
        m = re.match(r'^(?:nats-route|nats)://(?:[^@/]*@)?([^:/]+):(\d+)$', r)
        out.append((m.group(1), int(m.group(2))) if m else (r, None))
    return out


def cluster_urls(value):
    out = []
    for u in (value or "").split(","):
        m = re.match(r'^(?:nats|tls)://(?:[^@/]*@)?([^:/]+)(?::(\d+))?$', u.strip())
        out.append((m.group(1), int(m.group(2) or 4222)) if m else (u.strip(), None))
    return out


def quorum(n):
    return n // 2 + 1


# -- Kubernetes ---------------------------------------------------------------------------

def strategic_merge(base, patch, where, problems):
    """kustomize's strategic merge, as far as deploy/ uses it: mappings merge, lists of
    mappings that all have a "name" merge by name, other lists and values are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if k.startswith("$"):
                problems.append("%s: directive %s is not understood by this check" % (where, k))
                continue
            out[k] = strategic_merge(base[k], v, where, problems) if k in base else v
        return out
    if (isinstance(base, list) and isinstance(patch, list) and base and patch
            and all(isinstance(x, dict) and "name" in x for x in base + patch)):
        out, new = [dict(x) for x in base], []
        for p in patch:
            for i, b in enumerate(out):
                if b["name"] == p["name"]:
                    out[i] = strategic_merge(b, p, where, problems)
                    break
            else:
                new.append(copy.deepcopy(p))
        return new + out  # as kustomize renders it: a patch's new items first, in order
    return copy.deepcopy(patch)


def kustomize_build(kdir, cache):
    """Renders a kustomization: [(path, object)], reporting missing references and patches
    that match no object. ConfigMap generators give objects with a "_files" key."""
    kdir = os.path.normpath(kdir)
    if kdir in cache:
        return copy.deepcopy(cache[kdir])
    cache[kdir] = []
    kfile = os.path.join(kdir, "kustomization.yaml")
    what = "kustomization references exist: %s" % rel(kfile)
    if not os.path.isfile(kfile):
        report(False, what, "missing")
        return []
    k = load_all(kfile)[0]
    objects, missing, problems = [], [], []
    for r in list(k.get("resources", [])) + list(k.get("components", [])):
        p = os.path.join(kdir, r)
        if os.path.isdir(p):
            objects += kustomize_build(p, cache)
        elif os.path.isfile(p):
            objects += [(p, d) for d in load_all(p)]
        else:
            missing.append(r)
    for gen in k.get("configMapGenerator", []):
        files, data = {}, dict(gen.get("literals") and
                               [l.split("=", 1) for l in gen["literals"]] or [])
        for f in gen.get("files", []):
            key, _, src = f.rpartition("=")
            path = os.path.join(kdir, src)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    data[key or os.path.basename(src)] = fh.read()
                files[key or os.path.basename(src)] = path
            else:
                missing.append(src)
        objects.append((kfile, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": gen.get("name")}, "data": data,
                                "_files": files}))
    for gen in k.get("secretGenerator", []):
        for f in gen.get("files", []):
            if not os.path.isfile(os.path.join(kdir, f.rpartition("=")[2])):
                missing.append(f.rpartition("=")[2])
    patch_files = [p["path"] for p in k.get("patches", []) if isinstance(p, dict) and "path" in p]
    patch_files += list(k.get("patchesStrategicMerge", []))
    for r in patch_files:
        path = os.path.join(kdir, r)
        if not os.path.isfile(path):
            missing.append(r)
            continue
        docs = load_all(path)
        deletes = [pd for pd in docs if pd.get("$patch") == "delete"]
        if deletes and len(docs) > 1:
            # kustomize 5.5 panics on a patch file that deletes and holds more.
            problems.append("patch %s: a $patch: delete must be the file's only document" % r)
        for pd in docs:
            key = (pd.get("kind"), pd.get("metadata", {}).get("name"))
            delete = pd.get("$patch") == "delete"
            if delete:
                pd = {k: v for k, v in pd.items() if k != "$patch"}
            for i, (src, o) in enumerate(objects):
                if (o.get("kind"), o.get("metadata", {}).get("name")) == key:
                    if delete:
                        del objects[i]
                    else:
                        objects[i] = (src, strategic_merge(o, pd, r, problems))
                    break
            else:
                problems.append("patch %s: no %s %s to %s" % (r, key[0], key[1],
                                                             "delete" if delete else "patch"))
    report(not missing and not problems, what,
           "; ".join((["missing: %s" % missing] if missing else []) + problems))
    cache[kdir] = objects
    return copy.deepcopy(objects)


def containers(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def selects(selector, workload):
    labels = workload["spec"]["template"]["metadata"].get("labels", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_value(c, name):
    """(value, fieldPath) of a container's variable."""
    for e in c.get("env", []):
        if e.get("name") == name:
            return e.get("value"), (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    return None, None


def check_k8s_objects(label, flat):
    by_kind = {}
    for path, d in flat:
        ok = all(d.get(f) for f in ("apiVersion", "kind")) and d.get("metadata", {}).get("name")
        if "_files" not in d:
            report(bool(ok), "k8s [%s] object has apiVersion, kind, name: %s %s/%s"
                   % (label, rel(path), d.get("kind"), d.get("metadata", {}).get("name")))
        by_kind.setdefault(d.get("kind"), {})[d.get("metadata", {}).get("name")] = d
    workloads = dict(by_kind.get("StatefulSet", {}), **by_kind.get("Deployment", {}))
    report(bool(workloads), "k8s [%s] has workloads" % label)
    configmaps = by_kind.get("ConfigMap", {})
    for name, w in sorted(workloads.items()):
        spec = w["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        sel = spec["selector"].get("matchLabels", {})
        report(sel and all(labels.get(k) == v for k, v in sel.items()),
               "k8s [%s] %s: selector matches the pod labels" % (label, name))
        problems = []
        pod = spec["template"]["spec"]
        volumes = {v.get("name"): v for v in pod.get("volumes", [])}
        claims = {t.get("metadata", {}).get("name") for t in spec.get("volumeClaimTemplates", [])}
        for v in volumes.values():
            cm = (v.get("configMap") or {}).get("name")
            if cm and cm not in configmaps:
                problems.append("volume %s: ConfigMap %s does not exist" % (v["name"], cm))
        for c in containers(w):
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            numbers = set(ports.values())
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if pr is None:
                    problems.append("%s: no %s" % (c["name"], probe))
                elif "grpc" in pr:
                    if pr["grpc"].get("port") not in numbers:
                        problems.append("%s: %s port %s not declared"
                                        % (c["name"], probe, pr["grpc"].get("port")))
                elif "httpGet" in pr:
                    port = pr["httpGet"].get("port")
                    if port not in numbers and port not in ports:
                        problems.append("%s: %s port %s not declared" % (c["name"], probe, port))
                else:
                    problems.append("%s: %s is neither a grpc nor an httpGet probe"
                                    % (c["name"], probe))
            cmd = (c.get("command") or [""])[0]
            image_binaries = K8S_IMAGES.get(c.get("image"))
            if image_binaries is None:
                problems.append("%s: image %r is not one of %s" % (c["name"], c.get("image"),
                                                                   sorted(K8S_IMAGES)))
            elif cmd not in image_binaries:
                problems.append("%s: command %r is not a binary of the image %s"
                                % (c["name"], cmd, c.get("image")))
            if cmd in IMAGE_BINARIES:
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if c.get(probe) and "grpc" not in c[probe]:
                        problems.append("%s: %s is not a grpc probe" % (c["name"], probe))
            problems += flag_problems(cmd, (c.get("command") or []) + (c.get("args") or []),
                                      [e.get("name", "") for e in c.get("env", [])])
            res = c.get("resources", {})
            if not res.get("requests", {}).get("memory") or not res.get("limits", {}).get("memory"):
                problems.append("%s: memory request and limit are required" % c["name"])
            for ef in c.get("envFrom", []):
                cm = ef.get("configMapRef", {}).get("name")
                if cm and cm not in configmaps:
                    problems.append("%s: ConfigMap %s does not exist" % (c["name"], cm))
            for vm in c.get("volumeMounts", []):
                if vm.get("name") not in volumes and vm.get("name") not in claims:
                    problems.append("%s: volumeMount %s names no volume or claim"
                                    % (c["name"], vm.get("name")))
        if w["kind"] == "StatefulSet" and spec.get("serviceName") not in by_kind.get("Service", {}):
            problems.append("serviceName %s is not a Service" % spec.get("serviceName"))
        report(not problems, "k8s [%s] %s: probes, ports, command, flags, resources, references"
               % (label, name), "; ".join(problems))
    known = all_variables()
    for name, cm in sorted(configmaps.items()):
        if not any(k.startswith("YW_") for k in (cm.get("data") or {})):
            continue
        secret = [k for k in cm["data"] if k in STORE_SECRET_VARIABLES]
        report(not secret, "k8s [%s] ConfigMap %s: no store URI (it holds a password: a "
               "Secret)" % (label, name), "holds %s" % secret)
        bad = [k for k in (cm.get("data") or {}) if k.startswith("YW_") and k not in known]
        if known and any(k.startswith("YW_") for k in (cm.get("data") or {})):
            report(not bad, "k8s [%s] ConfigMap %s: variables the services read" % (label, name),
                   "no service reads %s" % bad)
    for kind in ("Service", "PodDisruptionBudget"):
        for name, o in sorted(by_kind.get(kind, {}).items()):
            sel = o["spec"].get("selector", {})
            sel = sel.get("matchLabels", sel)
            # Every workload of every kind: a StatefulSet and a Deployment may share a name.
            targets = [w for kind_ in ("StatefulSet", "Deployment")
                       for w in by_kind.get(kind_, {}).values() if selects(sel, w)]
            ok = bool(sel) and len(targets) == 1
            detail = "selects %d workloads" % len(targets)
            if ok and kind == "Service":
                names = {p.get("name") for c in containers(targets[0]) for p in c.get("ports", [])}
                bad = [p for p in o["spec"].get("ports", []) if isinstance(p.get("targetPort"), str)
                       and p["targetPort"] not in names]
                ok, detail = not bad, "targetPort(s) not declared: %s" % bad
            report(ok, "k8s [%s] %s %s: selects one workload" % (label, kind, name), detail)
    report(bool(by_kind.get("PodDisruptionBudget")), "k8s [%s] has PodDisruptionBudgets" % label)
    return by_kind, workloads


def pdb_for(by_kind, workload):
    for name, o in sorted(by_kind.get("PodDisruptionBudget", {}).items()):
        if selects(o["spec"].get("selector", {}).get("matchLabels", {}), workload):
            return name, o["spec"]
    return None, None


def headless_problems(by_kind, service_name, workload, what):
    svc = by_kind.get("Service", {}).get(service_name)
    if svc is None:
        return ["%s: no Service %s" % (what, service_name)]
    out = []
    if svc["spec"].get("clusterIP") != "None":
        out.append("%s: Service %s is not headless (clusterIP: None)" % (what, service_name))
    if not svc["spec"].get("publishNotReadyAddresses"):
        out.append("%s: Service %s does not publish pods before they are ready "
                   "(publishNotReadyAddresses)" % (what, service_name))
    return out


def check_k8s_nats(label, by_kind, name, w):
    """A NATS StatefulSet: quorum, routes through its headless Service, configuration."""
    spec, pod = w["spec"], w["spec"]["template"]["spec"]
    c = [c for c in containers(w) if (c.get("command") or [""])[0] == NATS_BINARY][0]
    replicas = spec.get("replicas", 1)
    what = "k8s [%s] NATS %s" % (label, name)
    report(w["kind"] == "StatefulSet" and replicas >= 3 and replicas % 2 == 1,
           "%s: a StatefulSet of an odd number of servers, at least 3 (%s)" % (what, replicas))
    problems = headless_problems(by_kind, spec.get("serviceName"), w, "serviceName")
    if spec.get("podManagementPolicy") != "Parallel":
        problems.append("podManagementPolicy is not Parallel (one server alone is never ready)")
    report(not problems, "%s: pods start together, named through a headless Service" % what,
           "; ".join(problems))
    argv = (c.get("command") or []) + (c.get("args") or [])
    conf_path = flag_value(argv, "config") or (argv[argv.index("-c") + 1]
                                               if "-c" in argv[:-1] else None)
    text, source = None, None
    mounts = {vm["mountPath"]: vm["name"] for vm in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if conf_path:
        vol = volumes.get(mounts.get(os.path.dirname(conf_path)), {})
        cm = by_kind.get("ConfigMap", {}).get((vol.get("configMap") or {}).get("name"))
        if cm:
            text = (cm.get("data") or {}).get(os.path.basename(conf_path))
            source = cm.get("_files", {}).get(os.path.basename(conf_path))
    report(text is not None, "%s: --config %s is a file of a ConfigMap mounted there"
           % (what, conf_path))
    if text is None:
        return None
    env = {}
    for e in c.get("env", []):
        fp = (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        env[e["name"]] = "%s-0" % name if fp == "metadata.name" else e.get("value", "")
    conf_what = "%s config %s" % (what, rel(source) if source else conf_path)
    nats_test(conf_what, text, env)
    conf = nats_parse(text)
    problems = []
    sn = conf["server_name"] or ""
    var = sn[1:] if sn.startswith("$") else None
    if var is None or env_value(c, var)[1] != "metadata.name":
        problems.append("server_name %r is not a variable set from the pod's name" % sn)
    if not conf["jetstream"]:
        problems.append("JetStream is off")
    store = conf["store_dir"] or ""
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    on_claim = [m for m, v in mounts.items() if v in claims
                and (store == m or store.startswith(m.rstrip("/") + "/"))]
    if not on_claim:
        problems.append("jetstream store_dir %r is not on a volume claim" % store)
    ports = {p["containerPort"] for p in c.get("ports", [])}
    if conf["client_port"] not in ports or conf["cluster_port"] not in ports:
        problems.append("client port %s and cluster port %s must be container ports"
                        % (conf["client_port"], conf["cluster_port"]))
    svc = spec.get("serviceName")
    want = {("%s-%d" % (name, i), svc) for i in range(replicas)}
    got = set()
    for host, port in route_hosts(conf["routes"]):
        parts = host.split(".")
        got.add((parts[0], parts[1] if len(parts) > 1 else None))
        if port != conf["cluster_port"]:
            problems.append("route %s:%s is not to the cluster port %s"
                            % (host, port, conf["cluster_port"]))
    if got != want:
        problems.append("routes name %s, the pods are %s"
                        % (sorted("%s.%s" % g for g in got), sorted("%s.%s" % g for g in want)))
    report(not problems, "%s: servers named apart, JetStream on a claim, routes to every pod"
           % conf_what, "; ".join(problems))
    pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
    if any("ldm" in a for a in pre):
        grace = pod.get("terminationGracePeriodSeconds", 30)
        ok = conf["pid_file"] and any(a.endswith("=" + conf["pid_file"]) for a in pre)
        report(bool(ok) and grace > conf["ldm_seconds"],
               "%s: lame duck preStop signals the config's pid_file and fits the grace period"
               % what, "pid_file %s, %s; grace %s s, lame duck %s s"
               % (conf["pid_file"], pre, grace, conf["ldm_seconds"]))
    pdb_name, pdb = pdb_for(by_kind, w)
    q = quorum(replicas)
    if pdb is None:
        report(False, "%s: a PodDisruptionBudget keeps the quorum" % what, "none selects it")
    else:
        lo = pdb.get("minAvailable", replicas - pdb.get("maxUnavailable", replicas))
        report(isinstance(lo, int) and q <= lo < replicas,
               "%s: PodDisruptionBudget %s keeps the quorum (%s of %d available; quorum %d)"
               % (what, pdb_name, lo, replicas, q),
               "needs %d <= available < %d (below: a drain can break Raft; all: no drain ever)"
               % (q, replicas))
    return {"replicas": replicas, "service": svc, "client_port": conf["client_port"]}


def check_k8s_attribution(label, by_kind, name, w, nats):
    spec = w["spec"]
    c = [c for c in containers(w) if (c.get("command") or [""])[0] == ATTRIBUTION][0]
    argv = (c.get("command") or []) + (c.get("args") or [])
    what = "k8s [%s] attribution cluster %s" % (label, name)
    replicas = spec.get("replicas", 1)
    report(w["kind"] == "StatefulSet" and replicas >= 2,
           "%s: a StatefulSet of several nodes (%d)" % (what, replicas))
    problems = []
    urls = flag_value(argv, "cluster") or env_value(c, "YW_CLUSTER")[0]
    if not nats:
        problems.append("no NATS StatefulSet in this kustomization for --cluster")
    for nname, n in sorted(nats.items()):
        want = {("%s-%d" % (nname, i), n["service"]) for i in range(n["replicas"])}
        got = set()
        for host, port in cluster_urls(urls):
            parts = host.split(".")
            got.add((parts[0], parts[1] if len(parts) > 1 else None))
            if port != n["client_port"]:
                problems.append("--cluster %s:%s is not NATS' client port %s"
                                % (host, port, n["client_port"]))
        if got != want:
            problems.append("--cluster names %s, the NATS pods are %s"
                            % (sorted("%s.%s" % g for g in got),
                               sorted("%s.%s" % g for g in want)))
        rep = int(flag_value(argv, "replicas") or env_value(c, "YW_REPLICAS")[0]
                  or DEFAULT_REPLICAS)
        if rep > n["replicas"]:
            problems.append("--replicas %d is more than the %d NATS servers" % (rep, n["replicas"]))
    report(not problems, "%s: --cluster names every NATS pod through the headless Service" % what,
           "; ".join(problems))
    # Node id: the pod's name. Advertised address: the pod's stable name and gRPC port.
    problems = []
    env_names = [e.get("name") for e in c.get("env", [])]

    def from_pod_name(v):
        m = re.fullmatch(r'\$\((\w+)\)', v or "")
        return bool(m) and env_value(c, m.group(1))[1] == "metadata.name"

    node = flag_value(argv, "node-id")
    if node is not None:
        if not from_pod_name(node):
            problems.append("--node-id %r is not the pod's name" % node)
    elif env_value(c, "YW_NODE_ID")[1] != "metadata.name":
        problems.append("YW_NODE_ID is not set from the pod's name (fieldRef metadata.name)")
    adv = flag_value(argv, "advertise-addr") or env_value(c, "YW_ADVERTISE_ADDR")[0] or ""
    m = re.fullmatch(r'\$\((\w+)\)\.([a-z0-9-]+)(\.[a-z0-9.-]+)?:(\d+)', adv)
    listen = flag_value(argv, "listen") or env_value(c, "YW_LISTEN")[0] or ""
    if not m:
        problems.append("advertised address %r is not $(POD NAME).SERVICE:PORT" % adv)
    else:
        var, svc, port = m.group(1), m.group(2), int(m.group(4))
        if env_value(c, var)[1] != "metadata.name":
            problems.append("$(%s) in the advertised address is not the pod's name" % var)
        elif var in env_names and "YW_ADVERTISE_ADDR" in env_names and \
                env_names.index(var) > env_names.index("YW_ADVERTISE_ADDR"):
            problems.append("$(%s) is defined after YW_ADVERTISE_ADDR" % var)
        if svc != spec.get("serviceName"):
            problems.append("advertised service %s is not the StatefulSet's serviceName %s"
                            % (svc, spec.get("serviceName")))
        if not listen.endswith(":%d" % port):
            problems.append("advertised port %d is not --listen's (%s)" % (port, listen))
        problems += headless_problems(by_kind, spec.get("serviceName"), w, "serviceName")
    report(not problems, "%s: node id from the pod's name, advertised at its stable name" % what,
           "; ".join(problems))
    # Probes: readiness follows the cluster state, start-up and liveness do not.
    problems = []
    rd = (c.get("readinessProbe") or {}).get("grpc", {})
    if rd.get("service") != ATTRIBUTION_SERVICE:
        problems.append("readiness asks for %r, not %s" % (rd.get("service", ""),
                                                           ATTRIBUTION_SERVICE))
    for probe in ("startupProbe", "livenessProbe"):
        g = (c.get(probe) or {}).get("grpc", {})
        if g.get("service") != HEALTH_SERVICE:
            problems.append("%s asks for %r, which is NOT_SERVING while NATS is away: ask %s"
                            % (probe, g.get("service", ""), HEALTH_SERVICE))
    report(not problems, "%s: readiness on the node's cluster state, liveness not" % what,
           "; ".join(problems))
    pdb_name, pdb = pdb_for(by_kind, w)
    if pdb is None:
        report(False, "%s: a PodDisruptionBudget" % what, "none selects it")
    else:
        down = pdb.get("maxUnavailable", replicas - pdb.get("minAvailable", replicas))
        report(down == 1, "%s: PodDisruptionBudget %s takes one node at a time (%s)"
               % (what, pdb_name, down))


def env_secret(c, name):
    """(Secret name, key, optional) of a container's variable set from a Secret, or None."""
    for e in c.get("env", []):
        if e.get("name") == name:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            return (ref.get("name"), ref.get("key"), bool(ref.get("optional"))) if ref else None
    return None


def check_k8s_store(label, by_kind, name, w, c):
    """Creator profile or tier scoring: stateless replicas on PostgreSQL (YW_STORE), or
    the standalone StatefulSet of one replica over its SQLite volume."""
    spec, pod = w["spec"], w["spec"]["template"]["spec"]
    binary = c["command"][0]
    argv = (c.get("command") or []) + (c.get("args") or [])
    env_names = [e.get("name") for e in c.get("env", [])]
    replicas = spec.get("replicas", 1)
    claims = {t.get("metadata", {}).get("name") for t in spec.get("volumeClaimTemplates", [])}
    pvcs = {v["name"] for v in pod.get("volumes", []) if v.get("persistentVolumeClaim")}
    data_dir = flag_value(argv, "data-dir") or env_value(c, "YW_DATA_DIR")[0]
    mounts = {vm.get("mountPath"): vm.get("name") for vm in c.get("volumeMounts", [])}
    on_store = "YW_STORE" in env_names or flag_value(argv, "store") is not None
    if not on_store:
        what = "k8s [%s] %s standalone (SQLite)" % (label, name)
        p = []
        if w["kind"] != "StatefulSet" or replicas != 1:
            p.append("a %s of %s replicas: SQLite has one writer, so one replica of a "
                     "StatefulSet (or YW_STORE for more)" % (w["kind"], replicas))
        if not data_dir or mounts.get(data_dir) not in claims:
            p.append("--data-dir %s is not on a volume claim" % data_dir)
        report(not p, "%s: one replica, its data on a claim" % what, "; ".join(p))
        return
    what = "k8s [%s] %s on PostgreSQL" % (label, name)
    p = []
    if w["kind"] != "Deployment" or replicas < 2:
        p.append("a %s of %s replicas, not a Deployment of 2 or more" % (w["kind"], replicas))
    if claims or pvcs or (data_dir and data_dir in mounts):
        p.append("holds a data volume (%s): the data is the database's"
                 % sorted(claims | pvcs | ({mounts[data_dir]} if data_dir in mounts else set())))
    report(not p, "%s: stateless replicas, no data volume" % what, "; ".join(p))
    # The URIs hold a password: a Secret's, never a flag or a plain value.
    p = []
    for flag, var in (("store", "YW_STORE"), ("store-read", "YW_STORE_READ")):
        if flag_value(argv, flag) is not None:
            p.append("--%s on the command line (every process sees it): use %s from a Secret"
                     % (flag, var))
        if var in env_names:
            ref = env_secret(c, var)
            if ref is None:
                p.append("%s is not from a Secret (valueFrom.secretKeyRef)" % var)
            elif not ref[0] or not ref[1]:
                p.append("%s: secretKeyRef without name or key" % var)
            elif var == "YW_STORE" and ref[2]:
                p.append("YW_STORE's secretKeyRef is optional: without it the service "
                         "would start on SQLite")
    pool = flag_value(argv, "store-pool") or env_value(c, "YW_STORE_POOL")[0]
    if pool is not None and not re.fullmatch(r'[1-9][0-9]*', str(pool)):
        p.append("--store-pool %r is not a positive number" % pool)
    report(not p, "%s: YW_STORE from a Secret, --store-pool a number" % what, "; ".join(p))
    # Probes: readiness follows the database, start-up and liveness do not.
    p = []
    rd = (c.get("readinessProbe") or {}).get("grpc", {})
    if rd.get("service") != SERVICE_NAMES[binary]:
        p.append("readiness asks for %r, not %s" % (rd.get("service", ""), SERVICE_NAMES[binary]))
    for probe in ("startupProbe", "livenessProbe"):
        g = (c.get(probe) or {}).get("grpc", {})
        if g.get("service") != HEALTH_SERVICE:
            p.append("%s asks for %r, which is NOT_SERVING while the database is away "
                     "(the replicas would be restarted): ask %s"
                     % (probe, g.get("service", ""), HEALTH_SERVICE))
    report(not p, "%s: readiness on the database, liveness not" % what, "; ".join(p))
    pdb_name, pdb = pdb_for(by_kind, w)
    if pdb is None:
        report(False, "%s: a PodDisruptionBudget" % what, "none selects it")
    else:
        down = pdb.get("maxUnavailable", replicas - pdb.get("minAvailable", replicas))
        report(down == 1, "%s: PodDisruptionBudget %s takes one replica at a time (%s)"
               % (what, pdb_name, down))


def real_kustomize(root, label, objects):
    """Where kubectl (or kustomize) is installed, its rendering must hold the same objects
    as this check's (kinds and names): the check's rendering is what everything else here
    looks at. Without one, says so and checks nothing."""
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if not kubectl and not kustomize:
        print("note k8s [%s]: no kubectl or kustomize here: the rendering is this check's only"
              % label)
        return
    argv = [kubectl, "kustomize", root] if kubectl else [kustomize, "build", root]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        report(False, "k8s [%s] %s renders it" % (label, os.path.basename(argv[0])), "timeout")
        return
    if p.returncode != 0:
        report(False, "k8s [%s] %s renders it" % (label, os.path.basename(argv[0])),
               (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[0])
        return
    got = sorted((d.get("kind"), d.get("metadata", {}).get("name"))
                 for d in yaml.safe_load_all(p.stdout) if d)
    want = sorted((d.get("kind"), d.get("metadata", {}).get("name")) for _, d in objects)
    # Generated ConfigMaps and Secrets carry a hash of their content in their names.
    got = sorted((k, n[:-11] if k in ("ConfigMap", "Secret") and (k, n) not in want
                  and re.search(r'-[a-z0-9]{10}$', n or "") else n) for k, n in got)
    report(got == want, "k8s [%s] %s renders the same objects" % (label, os.path.basename(argv[0])),
           "%s: %s; this check: %s" % (os.path.basename(argv[0]), got, want))


def check_kubernetes():
    k8s = os.path.join(DEPLOY, "k8s")
    cache = {}
    roots = [os.path.join(k8s, "base")] + sorted(
        d for d in glob.glob(os.path.join(k8s, "overlays", "*")) if os.path.isdir(d))
    for root in roots:
        label = os.path.relpath(root, k8s)
        objects = kustomize_build(root, cache)
        real_kustomize(root, label, objects)
        by_kind, workloads = check_k8s_objects(label, objects)
        nats, attrs = {}, {}
        for name, w in sorted(workloads.items()):
            for c in containers(w):
                cmd = (c.get("command") or [""])[0]
                argv = (c.get("command") or []) + (c.get("args") or [])
                if cmd == NATS_BINARY:
                    n = check_k8s_nats(label, by_kind, name, w)
                    if n:
                        nats[name] = n
                elif cmd in STORE_BINARIES:
                    check_k8s_store(label, by_kind, name, w, c)
                elif cmd == ATTRIBUTION and (flag_value(argv, "cluster")
                                             or env_value(c, "YW_CLUSTER")[0]):
                    attrs[name] = w
        for name, w in sorted(attrs.items()):
            check_k8s_attribution(label, by_kind, name, w, nats)
        if nats and not attrs:
            report(False, "k8s [%s]: NATS runs for an attribution cluster" % label,
                   "no attribution workload has --cluster")


# -- compose ------------------------------------------------------------------------------

def compose_command(s):
    cmd = s.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def compose_env(s):
    env = s.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def check_compose_file(path, c, standalone):
    services = c.get("services", {})
    volumes = set((c.get("volumes") or {}).keys())
    base = os.path.dirname(path)
    name = rel(path)
    runs = {compose_command(s)[:1][0] if compose_command(s) else "" for s in services.values()}
    report(IMAGE_BINARIES - {"yaowei-health-probe"} <= runs,
           "compose %s: the three services are defined" % name,
           "missing %s" % sorted(IMAGE_BINARIES - {"yaowei-health-probe"} - runs))
    for sname, s in sorted(services.items()):
        problems = []
        for dep in (s.get("depends_on") or {}):
            if dep not in services:
                problems.append("depends_on %s: no such service" % dep)
        for v in (s.get("volumes") or []):
            src = v.split(":", 1)[0]
            if src.startswith((".", "/")):
                if not os.path.exists(os.path.normpath(os.path.join(base, src))):
                    problems.append("bind mount %s does not exist" % src)
            elif src not in volumes:
                problems.append("volume %s is not declared" % src)
        cmd = compose_command(s)
        exe = (cmd or [""])[0]
        test = (s.get("healthcheck") or {}).get("test", [])
        image = s.get("image", "")
        if exe in IMAGE_BINARIES:
            if "yaowei-health-probe" not in test:
                problems.append("no health check running yaowei-health-probe")
            if not re.match(r'^(.*/)?yaowei(:|$)', image):
                problems.append("image %s is not yaowei's" % image)
        elif exe == NATS_BINARY:
            if not test:
                problems.append("no health check")
            if not re.match(r'^(.*/)?yaowei-nats(:|$)', image):
                problems.append("image %s is not the NATS image" % image)
        elif not cmd and POSTGRES_IMAGE.match(image):
            pass  # the image's own server (check_compose_store)
        else:
            problems.append("command %r is not a binary of the images" % exe)
        problems += flag_problems(exe, cmd, compose_env(s))
        build = s.get("build") or {}
        if build:
            ctx = os.path.normpath(os.path.join(base, build.get("context", ".")))
            if not os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))):
                problems.append("build file %s not found" % build.get("dockerfile"))
        report(not problems, "compose %s %s: references, health check, command, flags"
               % (name, sname), "; ".join(problems))
    if standalone is not None and path != standalone[0]:
        for sname in ("creator-profile", "tier-scoring"):
            if "yaowei-" + sname in compose_store_binaries(services):
                continue  # on PostgreSQL: check_compose_store's
            report(services.get(sname) == standalone[1].get(sname),
                   "compose %s %s: as in %s" % (name, sname, rel(standalone[0])),
                   "differs" if sname in services else "missing")
    # Published host ports: one service each.
    published = {}
    for sname, s in sorted(services.items()):
        for port in s.get("ports", []):
            parts = str(port).split(":")
            if len(parts) >= 2:
                published.setdefault(tuple(parts[:-1]), []).append(sname)
    clash = {":".join(k): v for k, v in published.items() if len(v) > 1}
    report(not clash, "compose %s: every published host port is one service's" % name,
           "%s" % clash)
    # Peer addresses: a service of this file (or a network alias) running that peer.
    names = {}
    for sname, s in services.items():
        exe = (compose_command(s) or [""])[0]
        names.setdefault(sname, set()).add(exe)
        nets = s.get("networks") if isinstance(s.get("networks"), dict) else {}
        for net in nets.values():
            for alias in (net or {}).get("aliases", []):
                names.setdefault(alias, set()).add(exe)
    p = []
    for sname, s in sorted(services.items()):
        if (compose_command(s) or [""])[0] not in IMAGE_BINARIES:
            continue
        env, cmd = compose_env(s), compose_command(s)
        for flag, var, peer in (("creator-profile-addr", "YW_CREATOR_PROFILE_ADDR",
                                 "yaowei-creator-profile"),
                                ("tier-scoring-addr", "YW_TIER_SCORING_ADDR",
                                 "yaowei-tier-scoring")):
            addr = flag_value(cmd, flag) or env.get(var)
            if addr and names.get(addr.rsplit(":", 1)[0]) != {peer}:
                p.append("%s: %s %s is not a service (or alias) running %s only"
                         % (sname, var, addr, peer))
    report(not p, "compose %s: peer addresses name services of this file" % name, "; ".join(p))
    check_compose_cluster(path, services, volumes)
    check_compose_store(path, services, volumes)


def check_compose_cluster(path, services, volumes):
    name = rel(path)
    base = os.path.dirname(path)
    nats = {n: s for n, s in services.items() if compose_command(s)[:1] == [NATS_BINARY]}
    nodes = {n: s for n, s in services.items()
             if compose_command(s)[:1] == [ATTRIBUTION]
             and (flag_value(compose_command(s), "cluster")
                  or compose_env(s).get("YW_CLUSTER"))}
    if not nats and not nodes:
        return
    report(len(nats) >= 3 and len(nats) % 2 == 1,
           "compose %s: an odd number of NATS servers, at least 3 (%d)" % (name, len(nats)))
    confs, names, problems = {}, {}, []
    for n, s in sorted(nats.items()):
        cmd = compose_command(s)
        conf_path = flag_value(cmd, "config") or (cmd[cmd.index("-c") + 1]
                                                  if "-c" in cmd[:-1] else None)
        src = None
        for v in (s.get("volumes") or []):
            parts = v.split(":")
            if len(parts) >= 2 and parts[1] == conf_path and parts[0].startswith((".", "/")):
                src = os.path.normpath(os.path.join(base, parts[0]))
        if src is None or not os.path.isfile(src):
            report(False, "compose %s %s: --config %s is a file mounted from the repository"
                   % (name, n, conf_path))
            continue
        with open(src, encoding="utf-8") as f:
            text = f.read()
        env = compose_env(s)
        nats_test("compose %s %s config %s" % (name, n, rel(src)), text, env)
        conf = confs[n] = nats_parse(text)
        names[n] = nats_resolve(conf["server_name"], env)
        p = []
        if not conf["jetstream"]:
            p.append("JetStream is off")
        store = conf["store_dir"] or ""
        vols = [v.split(":") for v in (s.get("volumes") or [])]
        if not any(len(v) >= 2 and v[0] in volumes and (store == v[1] or store.startswith(
                v[1].rstrip("/") + "/")) for v in vols):
            p.append("jetstream store_dir %r is not on a named volume" % store)
        hosts = route_hosts(conf["routes"])
        if {h for h, _ in hosts} != set(nats):
            p.append("routes name %s, the NATS services are %s"
                     % (sorted(h for h, _ in hosts), sorted(nats)))
        if any(port != conf["cluster_port"] for _, port in hosts):
            p.append("routes %s are not all to the cluster port %s"
                     % (conf["routes"], conf["cluster_port"]))
        report(not p, "compose %s %s: JetStream on a volume, routes to every NATS service"
               % (name, n), "; ".join(p))
    dup = sorted({v for v in names.values() if list(names.values()).count(v) > 1 or not v})
    report(not dup, "compose %s: every NATS server has a name of its own" % name,
           "server_name %s" % dup)
    stores = [v.split(":")[0] for s in nats.values() for v in (s.get("volumes") or [])
              if v.split(":")[0] in volumes]
    report(len(stores) == len(set(stores)), "compose %s: NATS volumes are not shared" % name)
    # The attribution nodes.
    report(len(nodes) >= 2, "compose %s: several attribution nodes (%d)" % (name, len(nodes)))
    seen_ids, settings, data = {}, set(), []
    client_ports = {conf["client_port"] for conf in confs.values()}
    for n, s in sorted(nodes.items()):
        cmd, env = compose_command(s), compose_env(s)
        p = []

        def val(flag, var):
            v = flag_value(cmd, flag)
            return v if v is not None else env.get(var)

        urls = cluster_urls(val("cluster", "YW_CLUSTER"))
        if {h for h, _ in urls} != set(nats):
            p.append("--cluster names %s, the NATS services are %s"
                     % (sorted(h for h, _ in urls), sorted(nats)))
        if client_ports and any(port not in client_ports for _, port in urls):
            p.append("--cluster ports %s are not NATS' client port %s"
                     % (sorted({port for _, port in urls}), sorted(client_ports)))
        node = val("node-id", "YW_NODE_ID")
        if not node:
            p.append("no --node-id (the default, the container's host name, changes)")
        elif node in seen_ids:
            p.append("--node-id %s is also %s's" % (node, seen_ids[node]))
        seen_ids.setdefault(node, n)
        listen = val("listen", "YW_LISTEN") or ""
        adv = val("advertise-addr", "YW_ADVERTISE_ADDR")
        want = "%s:%s" % (n, listen.rsplit(":", 1)[-1])
        if adv != want:
            p.append("--advertise-addr %s is not %s (its service name and --listen port)"
                     % (adv, want))
        for dep in nats:
            cond = ((s.get("depends_on") or {}).get(dep) or {})
            if not isinstance(cond, dict) or cond.get("condition") != "service_healthy":
                p.append("does not wait for %s to be healthy" % dep)
        rep = int(val("replicas", "YW_REPLICAS") or DEFAULT_REPLICAS)
        if rep > len(nats):
            p.append("--replicas %d is more than the %d NATS servers" % (rep, len(nats)))
        settings.add((val("cluster", "YW_CLUSTER"),
                      val("partitions", "YW_PARTITIONS") or str(DEFAULT_PARTITIONS),
                      str(rep), val("lease-ttl-ms", "YW_LEASE_TTL_MS") or ""))
        data += [v.split(":")[0] for v in (s.get("volumes") or []) if v.split(":")[0] in volumes]
        report(not p, "compose %s %s: --cluster names every NATS server, own node id and "
               "address, waits for NATS" % (name, n), "; ".join(p))
    report(len(settings) <= 1, "compose %s: the nodes agree on --cluster, --partitions, "
           "--replicas, --lease-ttl-ms" % name, "%s" % sorted(settings))
    report(len(data) == len(set(data)), "compose %s: attribution nodes' volumes are not shared"
           % name)


def interpolate(value):
    """compose's ${VAR:-default}, ${VAR-default} and ${VAR} (the defaults: what a local
    `compose up` with nothing set gets), $$ for $."""
    value = re.sub(r'(?<!\$)\$\{(\w+)(:?-([^}]*))?\}', lambda m: m.group(3) or "", str(value))
    return value.replace("$$", "$")


def parse_pg_uri(uri):
    """{hosts: [(host, port)], user, password, dbname, params} of a postgresql:// URI, or
    None when it is not one."""
    m = re.fullmatch(r'(?:postgresql|postgres)://(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]*)'
                     r'(?:/([^?]*))?(?:\?(.*))?', uri or "")
    if not m:
        return None
    hosts = []
    for h in (m.group(3) or "").split(","):
        host, _, port = h.rpartition(":") if ":" in h else (h, "", "")
        hosts.append((host, int(port) if port.isdigit() else (5432 if not port else None)))
    params = dict(kv.split("=", 1) if "=" in kv else (kv, "")
                  for kv in (m.group(5) or "").split("&") if kv)
    return {"hosts": hosts, "user": m.group(1), "password": m.group(2),
            "dbname": m.group(4), "params": params}


def compose_store_binaries(services):
    return {(compose_command(s) or [""])[0] for s in services.values()
            if compose_env(s).get("YW_STORE") or flag_value(compose_command(s), "store")}


def check_compose_store(path, services, volumes):
    """PostgreSQL in a compose file: the server (image, volume, health check, its
    database and role) and the replicas of creator profile and tier scoring on it."""
    name = rel(path)
    pgs = {n: s for n, s in services.items()
           if POSTGRES_IMAGE.match(str(s.get("image", ""))) and not compose_command(s)}
    stored = {n: s for n, s in services.items()
              if (compose_command(s) or [""])[0] in IMAGE_BINARIES
              and (compose_env(s).get("YW_STORE") or flag_value(compose_command(s), "store"))}
    others = [n for n, s in services.items() if re.match(r'^(.*/)?postgres(:|$)',
                                                         str(s.get("image", ""))) and n not in pgs]
    if not pgs and not stored and not others:
        return
    report(not others, "compose %s: PostgreSQL is the image postgres:15" % name,
           "%s run another image or command" % others)
    for n, s in sorted(pgs.items()):
        p = []
        env = {k: interpolate(v) for k, v in compose_env(s).items()}
        for var in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
            if not env.get(var):
                p.append("%s is not set (with a default for local use)" % var)
        vols = [str(v).split(":") for v in (s.get("volumes") or [])]
        if not any(len(v) >= 2 and v[0] in volumes and v[1] == POSTGRES_DATA for v in vols):
            p.append("%s is not on a named volume" % POSTGRES_DATA)
        test = (s.get("healthcheck") or {}).get("test", [])
        test = " ".join(test) if isinstance(test, list) else str(test)
        if "pg_isready" not in test:
            p.append("no health check running pg_isready")
        report(not p, "compose %s %s: postgres:15, its data on a volume, pg_isready, database "
               "and role from the environment" % (name, n), "; ".join(p))
    binaries = {}
    for n, s in sorted(stored.items()):
        cmd, env = compose_command(s), compose_env(s)
        binary = cmd[0]
        binaries.setdefault(binary, []).append(n)
        p = []
        if binary not in STORE_BINARIES:
            report(False, "compose %s %s: on PostgreSQL" % (name, n),
                   "%s keeps its own store" % binary)
            continue
        uri = interpolate(flag_value(cmd, "store") or env.get("YW_STORE"))
        u = parse_pg_uri(uri)
        if u is None:
            p.append("YW_STORE %r is not a postgresql:// URI" % uri)
        else:
            for host, port in u["hosts"]:
                pg = pgs.get(host)
                if pg is None:
                    p.append("YW_STORE names %s, not a PostgreSQL service of this file %s"
                             % (host, sorted(pgs)))
                    continue
                penv = {k: interpolate(v) for k, v in compose_env(pg).items()}
                if port != 5432:
                    p.append("YW_STORE port %s is not the server's 5432" % port)
                if u["dbname"] != penv.get("POSTGRES_DB"):
                    p.append("YW_STORE database %r is not POSTGRES_DB %r"
                             % (u["dbname"], penv.get("POSTGRES_DB")))
                if u["user"] != penv.get("POSTGRES_USER"):
                    p.append("YW_STORE user %r is not POSTGRES_USER %r"
                             % (u["user"], penv.get("POSTGRES_USER")))
                if u["password"] is not None and u["password"] != penv.get("POSTGRES_PASSWORD"):
                    p.append("YW_STORE's password is not POSTGRES_PASSWORD")
                cond = (s.get("depends_on") or {}).get(host) or {}
                if not isinstance(cond, dict) or cond.get("condition") != "service_healthy":
                    p.append("does not wait for %s to be healthy" % host)
        data = [str(v).split(":")[0] for v in (s.get("volumes") or [])
                if str(v).split(":")[0] in volumes]
        if data:
            p.append("holds the data volume(s) %s: the data is the database's" % data)
        pool = flag_value(cmd, "store-pool") or env.get("YW_STORE_POOL")
        if pool is not None and not re.fullmatch(r'[1-9][0-9]*', str(pool)):
            p.append("--store-pool %r is not a positive number" % pool)
        report(not p, "compose %s %s: YW_STORE names the database, waits for it, no data "
               "volume" % (name, n), "; ".join(p))
    for binary, ns in sorted(binaries.items()):
        report(len(ns) >= 2, "compose %s: %s runs as several replicas on PostgreSQL (%s)"
               % (name, binary, ", ".join(ns)))
        if len(ns) >= 2:
            stores = {interpolate(compose_env(services[n]).get("YW_STORE")
                                  or flag_value(compose_command(services[n]), "store"))
                      for n in ns}
            report(len(stores) == 1, "compose %s: the %s replicas share one database"
                   % (name, binary), "%d different YW_STORE" % len(stores))
    if pgs:
        report(bool(stored), "compose %s: PostgreSQL runs for a service on it" % name,
               "no service has YW_STORE")


def check_compose(docs):
    path = os.path.join(DEPLOY, "compose.yaml")
    if path not in docs:
        report(False, "compose: deploy/compose.yaml exists and parses")
        standalone = None
    else:
        standalone = (path, docs[path][0].get("services", {}))
    for p in sorted(glob.glob(os.path.join(DEPLOY, "compose*.yaml"))):
        if p in docs:
            check_compose_file(p, docs[p][0], standalone)


# -- Containerfile ------------------------------------------------------------------------

def instructions(path):
    """(keyword, argument text) per instruction, continuation lines joined."""
    out, cur = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if cur and s.lstrip().startswith("#"):
                continue  # a comment inside a continued instruction
            if s.endswith("\\"):
                cur += s[:-1]  # as the builders do: the escaped newline goes away
                continue
            cur += s
            kw, _, arg = cur.strip().partition(" ")
            out.append((kw.upper(), arg.strip()))
            cur = ""
    if cur:
        out.append(("UNTERMINATED", cur))
    return out


def check_containerfile(path, context, multi_stage):
    name = rel(path)
    ins = instructions(path)
    stages, problems = [], []
    for kw, arg in ins:
        if kw == "FROM":
            m = re.match(r'(\S+)(?:\s+AS\s+(\S+))?$', arg, re.I)
            if not m:
                problems.append("FROM %s" % arg)
            stages.append(m.group(2) if m else None)
        elif kw == "RUN":
            script = arg
            if script.startswith("["):
                continue  # exec form: no shell
            for sh in ("sh", "bash"):
                p = subprocess.run([sh, "-n", "-c", script], capture_output=True, text=True)
                report(p.returncode == 0, "%s RUN passes %s -n: %s..."
                       % (name, sh, script[:50].replace("\n", " ")), p.stderr.strip())
        elif kw == "COPY":
            words = shlex.split(arg)
            opts = [w for w in words if w.startswith("--")]
            srcs = [w for w in words if not w.startswith("--")][:-1]
            frm = [o.split("=", 1)[1] for o in opts if o.startswith("--from=")]
            if frm:
                if frm[0] not in stages:
                    problems.append("COPY --from=%s: no earlier stage of that name" % frm[0])
            else:
                for s in srcs:
                    if not glob.glob(os.path.join(context, s)):
                        problems.append("COPY %s: not in the build context" % s)
        elif kw == "UNTERMINATED":
            problems.append("an instruction ends with a continuation")
        elif kw not in ("ARG", "ENV", "WORKDIR", "USER", "EXPOSE", "VOLUME", "CMD",
                        "ENTRYPOINT", "STOPSIGNAL", "LABEL", "HEALTHCHECK", "SHELL", "ADD",
                        "ONBUILD"):
            problems.append("unknown instruction %s" % kw)
    if multi_stage and len(stages) < 2:
        problems.append("not multi-stage (%d FROM)" % len(stages))
    if not stages:
        problems.append("no FROM")
    users = [arg for kw, arg in ins if kw == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append("the final stage must run as a non-root USER")
    report(not problems, "%s: stages, COPY sources, non-root user" % name, "; ".join(problems))
    return ins


def check_containerfiles():
    main = os.path.join(DEPLOY, "container", "Containerfile")
    if not os.path.isfile(main):
        report(False, "Containerfile exists")
    else:
        ins = check_containerfile(main, REPO, True)
        # Packages the binaries must load at run time (the build stops without them).
        req = [re.match(r'REQUIRED_RUNTIME_PACKAGES=(.*)$', arg) for kw, arg in ins if kw == "ARG"]
        req = [m.group(1).strip('"\'').split() for m in req if m]
        pkgs = req[0] if req else []
        bad = []
        for p in pkgs:
            q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                               text=True)
            if "install ok installed" not in q.stdout:
                bad.append(p)
        report(bool(pkgs) and {"libnats3.4", "libpq5"} <= set(pkgs) and not bad,
               "Containerfile: required runtime packages %s are Debian packages installed "
               "here, libnats3.4 and libpq5 among them" % pkgs,
               "not installed: %s" % bad if bad else "")
    nats = os.path.join(DEPLOY, "container", "nats.Containerfile")
    if os.path.isfile(nats):
        ins = check_containerfile(nats, os.path.dirname(nats), False)
        runs = " ".join(arg for kw, arg in ins if kw == "RUN")
        cmd = [arg for kw, arg in ins if kw == "CMD"]
        report("nats-server" in runs.split() and cmd and NATS_BINARY in cmd[-1],
               "%s: installs Debian's nats-server and runs it" % rel(nats))
    helper = os.path.join(DEPLOY, "container", "runtime-packages.sh")
    if os.path.isfile(helper):
        for sh in ("sh", "bash"):
            p = subprocess.run([sh, "-n", helper], capture_output=True, text=True)
            report(p.returncode == 0, "%s passes %s -n" % (rel(helper), sh), p.stderr.strip())


# -- systemd ------------------------------------------------------------------------------

def unit_lines(path, key):
    with open(path, encoding="utf-8") as f:
        return [l.split("=", 1)[1].strip() for l in f if l.startswith(key + "=")]


def env_file_names(path):
    with open(path, encoding="utf-8") as f:
        return [l.split("=", 1)[0].strip() for l in f
                if "=" in l and not l.lstrip().startswith("#")]


def check_systemd():
    sdir = os.path.join(DEPLOY, "systemd")
    units = sorted(glob.glob(os.path.join(sdir, "*.service")))
    dropins = sorted(glob.glob(os.path.join(sdir, "*.service.d", "*.conf")))
    report(len(units) >= 3, "systemd: one unit per service (%d)" % len(units))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        report(False, "systemd-analyze is installed (Debian package systemd)")
        return
    root = tempfile.mkdtemp(prefix="yw-units-")
    try:
        os.makedirs(os.path.join(root, "etc", "systemd", "system"))
        os.makedirs(os.path.join(root, "usr", "lib", "systemd"))
        # The scratch root needs the system's own units (sysinit.target, ...).
        shutil.copytree("/usr/lib/systemd/system", os.path.join(root, "usr", "lib", "systemd",
                                                                "system"), symlinks=True)
        for u in units:
            shutil.copy(u, os.path.join(root, "etc", "systemd", "system"))
        for d in dropins:
            unit = os.path.basename(os.path.dirname(d))[:-2]
            report(os.path.join(sdir, unit) in units, "systemd %s: a drop-in for a unit here"
                   % os.path.relpath(d, sdir))
            dst = os.path.join(root, "etc", "systemd", "system", os.path.basename(os.path.dirname(d)))
            os.makedirs(dst, exist_ok=True)
            shutil.copy(d, dst)
        env_files = {os.path.basename(p): p for p in glob.glob(os.path.join(sdir, "*.env"))}
        for u in units + dropins:
            unit = os.path.basename(u if u.endswith(".service")
                                    else os.path.dirname(u)[:-2])
            name = os.path.relpath(u, sdir)
            binary = None
            for cmdline in unit_lines(u, "ExecStart"):
                if not cmdline:
                    continue  # "ExecStart=" clears the unit's
                argv = cmdline.split()
                exe = argv[0].lstrip("-@+!:")
                binary = os.path.basename(exe)
                stub = os.path.join(root, exe.lstrip("/"))
                os.makedirs(os.path.dirname(stub), exist_ok=True)
                with open(stub, "w") as s:
                    s.write("#!/bin/sh\n")
                os.chmod(stub, 0o755)
                report(binary in IMAGE_BINARIES,
                       "systemd %s: ExecStart runs a binary of the image" % name, exe)
                bad = flag_problems(binary, argv)
                report(not bad, "systemd %s: ExecStart's flags" % name, "; ".join(bad))
            binary = binary or "yaowei-" + unit[len("yaowei-"):-len(".service")]
            names = [e.split("=", 1)[0] for line in unit_lines(u, "Environment")
                     for e in shlex.split(line)]
            for ef in unit_lines(u, "EnvironmentFile"):
                example = env_files.get(os.path.basename(ef.lstrip("-")))
                if example:
                    names += env_file_names(example)
                elif not ef.startswith("-"):
                    report(False, "systemd %s: EnvironmentFile %s has an example in %s"
                           % (name, ef, rel(sdir)))
            bad = flag_problems(binary, [binary], names)
            report(not bad, "systemd %s: the variables it sets" % name, "; ".join(bad))
        for u in units:
            name = os.path.basename(u)
            p = subprocess.run([analyze, "verify", "--root=" + root,
                                "/etc/systemd/system/" + name],
                               capture_output=True, text=True)
            out = (p.stdout + p.stderr).strip()
            with_dropins = [os.path.basename(d) for d in dropins
                            if os.path.basename(os.path.dirname(d)) == name + ".d"]
            report(p.returncode == 0 and not out, "systemd-analyze verify %s%s"
                   % (name, " with %s" % ", ".join(with_dropins) if with_dropins else ""), out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


SECTIONS = ("yaml", "flags", "k8s", "compose", "containerfile", "systemd")


def main(argv=None):
    global REPO, DEPLOY, OPTIONS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", default=REPO, help="the tree to check (default: this one)")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections: %s" % ", ".join(SECTIONS))
    args = ap.parse_args(argv)
    REPO = os.path.abspath(args.repo)
    DEPLOY = os.path.join(REPO, "deploy")
    only = set(args.only.split(","))
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error("unknown section(s) %s" % sorted(unknown))
    docs = check_yaml_parses() if "yaml" in only or "compose" in only else {}
    if only & {"flags", "k8s", "compose", "systemd"}:
        OPTIONS = service_options()
    if "k8s" in only:
        check_kubernetes()
    if "compose" in only:
        check_compose(docs)
    if "containerfile" in only:
        check_containerfiles()
    if "systemd" in only:
        check_systemd()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
