#!/usr/bin/python3
"""Checks what can be checked of deploy/ without a container engine or a cluster
(`make check-deploy`, part of `make test`):

- every YAML file under deploy/ parses (python3-yaml), every document is a mapping;
- Kubernetes: each kustomization's resources and patches exist (directories hold a
  kustomization), each object has apiVersion, kind and metadata.name, selectors match
  pod labels, gRPC probes and Service target ports name ports the container declares,
  ConfigMaps and StatefulSet service names referenced exist in the base;
- compose: depends_on, volumes and the build file refer to what exists, every service
  has a health check that runs the image's probe binary;
- Containerfile: each RUN's shell passes `sh -n` and `bash -n`, COPY --from names an
  earlier stage, COPY sources exist in the build context;
- systemd: every unit passes `systemd-analyze verify` in a scratch root holding the
  system's units and a stub at each ExecStart path, with no warning at all.

Prints one line per check and "N passed, M failed"; exits 1 when anything failed.
"""

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


# -- Kubernetes ---------------------------------------------------------------------------

def kustomize_files(kdir, seen=None):
    """Walks a kustomization and the ones it includes; returns object docs by path."""
    seen = set() if seen is None else seen
    kdir = os.path.normpath(kdir)
    if kdir in seen:
        return {}
    seen.add(kdir)
    kfile = os.path.join(kdir, "kustomization.yaml")
    what = "kustomization references exist: %s" % rel(kfile)
    if not os.path.isfile(kfile):
        report(False, what, "missing")
        return {}
    k = load_all(kfile)[0]
    objects = {}
    missing = []
    refs = list(k.get("resources", [])) + list(k.get("components", []))
    patch_files = [p["path"] for p in k.get("patches", []) if isinstance(p, dict) and "path" in p]
    patch_files += list(k.get("patchesStrategicMerge", []))
    for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        for f in gen.get("files", []):
            patch_files.append(f.split("=", 1)[-1])
    for r in refs:
        p = os.path.join(kdir, r)
        if os.path.isdir(p):
            objects.update(kustomize_files(p, seen))
        elif os.path.isfile(p):
            objects[p] = load_all(p)
        else:
            missing.append(r)
    for r in patch_files:
        if not os.path.isfile(os.path.join(kdir, r)):
            missing.append(r)
    report(not missing, what, "missing: %s" % missing)
    return objects


def containers(obj):
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def check_kubernetes():
    base = os.path.join(DEPLOY, "k8s", "base")
    seen = set()
    objects = kustomize_files(base, seen)
    for overlay in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "overlays", "*"))):
        kustomize_files(overlay, seen)
    flat = [(p, d) for p, ds in objects.items() for d in ds]
    by_kind = {}
    for path, d in flat:
        ok = all(d.get(f) for f in ("apiVersion", "kind")) and d.get("metadata", {}).get("name")
        report(bool(ok), "k8s object has apiVersion, kind, name: %s %s/%s"
               % (rel(path), d.get("kind"), d.get("metadata", {}).get("name")))
        by_kind.setdefault(d.get("kind"), {})[d.get("metadata", {}).get("name")] = d
    workloads = dict(by_kind.get("StatefulSet", {}), **by_kind.get("Deployment", {}))
    report(bool(workloads), "k8s base has workloads")
    for name, w in sorted(workloads.items()):
        spec = w["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        sel = spec["selector"].get("matchLabels", {})
        report(sel and all(labels.get(k) == v for k, v in sel.items()),
               "k8s %s: selector matches the pod labels" % name)
        problems = []
        for c in containers(w):
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            numbers = set(ports.values())
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if pr is None:
                    problems.append("%s: no %s" % (c["name"], probe))
                elif "grpc" not in pr:
                    problems.append("%s: %s is not a grpc probe" % (c["name"], probe))
                elif pr["grpc"].get("port") not in numbers:
                    problems.append("%s: %s port %s not declared" % (c["name"], probe,
                                                                      pr["grpc"].get("port")))
            cmd = (c.get("command") or [""])[0]
            if cmd not in IMAGE_BINARIES:
                problems.append("%s: command %r is not a binary of the image" % (c["name"], cmd))
            res = c.get("resources", {})
            if not res.get("requests", {}).get("memory") or not res.get("limits", {}).get("memory"):
                problems.append("%s: memory request and limit are required" % c["name"])
            for ef in c.get("envFrom", []):
                cm = ef.get("configMapRef", {}).get("name")
                if cm and cm not in by_kind.get("ConfigMap", {}):
                    problems.append("%s: ConfigMap %s is not in the base" % (c["name"], cm))
        if w["kind"] == "StatefulSet" and spec.get("serviceName") not in by_kind.get("Service", {}):
            problems.append("serviceName %s is not a Service of the base" % spec.get("serviceName"))
        report(not problems, "k8s %s: probes, ports, command, resources, references" % name,
               "; ".join(problems))
    for kind in ("Service", "PodDisruptionBudget"):
        for name, o in sorted(by_kind.get(kind, {}).items()):
            sel = o["spec"].get("selector", {})
            sel = sel.get("matchLabels", sel)
            targets = [w for w in workloads.values()
                       if all(w["spec"]["template"]["metadata"].get("labels", {}).get(k) == v
                              for k, v in sel.items())]
            ok = bool(sel) and len(targets) == 1
            detail = "selects %d workloads" % len(targets)
            if ok and kind == "Service":
                names = {p.get("name") for c in containers(targets[0]) for p in c.get("ports", [])}
                bad = [p for p in o["spec"].get("ports", []) if isinstance(p.get("targetPort"), str)
                       and p["targetPort"] not in names]
                ok, detail = not bad, "targetPort(s) not declared: %s" % bad
            report(ok, "k8s %s %s: selects one workload" % (kind, name), detail)
    report(bool(by_kind.get("PodDisruptionBudget")), "k8s base has PodDisruptionBudgets")


# -- compose ------------------------------------------------------------------------------

def check_compose(docs):
    path = os.path.join(DEPLOY, "compose.yaml")
    if path not in docs:
        report(False, "compose: deploy/compose.yaml exists and parses")
        return
    c = docs[path][0]
    services = c.get("services", {})
    volumes = set((c.get("volumes") or {}).keys())
    report({"creator-profile", "tier-scoring", "attribution"} <= set(services),
           "compose: the three services are defined")
    for name, s in sorted(services.items()):
        problems = []
        for dep in (s.get("depends_on") or {}):
            if dep not in services:
                problems.append("depends_on %s: no such service" % dep)
        for v in s.get("volumes", []):
            src = v.split(":", 1)[0]
            if not src.startswith((".", "/")) and src not in volumes:
                problems.append("volume %s is not declared" % src)
        test = (s.get("healthcheck") or {}).get("test", [])
        if "yaowei-health-probe" not in test:
            problems.append("no health check running yaowei-health-probe")
        cmd = (s.get("command") or [""])[0]
        if cmd not in IMAGE_BINARIES:
            problems.append("command %r is not a binary of the image" % cmd)
        build = s.get("build") or {}
        if build:
            ctx = os.path.normpath(os.path.join(os.path.dirname(path), build.get("context", ".")))
            if not os.path.isfile(os.path.join(ctx, build.get("dockerfile", "Dockerfile"))):
                problems.append("build file %s not found" % build.get("dockerfile"))
        report(not problems, "compose %s: references, health check, command" % name,
               "; ".join(problems))


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


def check_containerfile():
    path = os.path.join(DEPLOY, "container", "Containerfile")
    if not os.path.isfile(path):
        report(False, "Containerfile exists")
        return
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
                report(p.returncode == 0, "Containerfile RUN passes %s -n: %s..." % (sh, script[:50]
                                                                                    .replace("\n", " ")),
                       p.stderr.strip())
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
                    if not glob.glob(os.path.join(REPO, s)):
                        problems.append("COPY %s: not in the build context" % s)
        elif kw == "UNTERMINATED":
            problems.append("an instruction ends with a continuation")
        elif kw not in ("ARG", "ENV", "WORKDIR", "USER", "EXPOSE", "VOLUME", "CMD",
                        "ENTRYPOINT", "STOPSIGNAL", "LABEL", "HEALTHCHECK", "SHELL", "ADD",
                        "ONBUILD"):
            problems.append("unknown instruction %s" % kw)
    if len(stages) < 2:
        problems.append("not multi-stage (%d FROM)" % len(stages))
    users = [arg for kw, arg in ins if kw == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append("the final stage must run as a non-root USER")
    report(not problems, "Containerfile: stages, COPY sources, non-root user", "; ".join(problems))
    helper = os.path.join(DEPLOY, "container", "runtime-packages.sh")
    if os.path.isfile(helper):
        for sh in ("sh", "bash"):
            p = subprocess.run([sh, "-n", helper], capture_output=True, text=True)
            report(p.returncode == 0, "%s passes %s -n" % (rel(helper), sh), p.stderr.strip())


# -- systemd ------------------------------------------------------------------------------

def check_systemd():
    units = sorted(glob.glob(os.path.join(DEPLOY, "systemd", "*.service")))
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
            with open(u, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("ExecStart="):
                        exe = line.split("=", 1)[1].split()[0].lstrip("-@+!:")
                        stub = os.path.join(root, exe.lstrip("/"))
                        os.makedirs(os.path.dirname(stub), exist_ok=True)
                        with open(stub, "w") as s:
                            s.write("#!/bin/sh\n")
                        os.chmod(stub, 0o755)
                        report(os.path.basename(exe) in IMAGE_BINARIES,
                               "systemd %s: ExecStart runs a binary of the image"
                               % os.path.basename(u), exe)
        for u in units:
            name = os.path.basename(u)
            p = subprocess.run([analyze, "verify", "--root=" + root,
                                "/etc/systemd/system/" + name],
                               capture_output=True, text=True)
            out = (p.stdout + p.stderr).strip()
            report(p.returncode == 0 and not out, "systemd-analyze verify %s" % name, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    docs = check_yaml_parses()
    check_kubernetes()
    check_compose(docs)
    check_containerfile()
    check_systemd()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
