"""Validates idbind's manifests; run by `cargo xtask validate-manifests` inside .tools/venv.

Built-in kinds go through kubernetes-validate (strict: unknown fields are errors). Custom resources
whose CRD is in --crd-dir are checked against that CRD's openAPIV3Schema, including the CEL-free
parts of a structural schema (types, required, patterns, lengths). Files passed with --invalid must
be rejected; a file that passes there is an error, so the check cannot silently accept everything.

A `kustomization.yaml` is not validated itself: its directory is rendered with `kubectl kustomize`
(kubectl bundles kustomize) and every rendered object is validated. The strategic-merge patches it
names are partial objects; they are checked only through the rendered output.
"""
import argparse
import os
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

from kubernetes_validate.utils import SchemaNotFoundError


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def to_json_schema(schema):
    """Maps Kubernetes OpenAPI v3 (nullable) onto JSON Schema."""
    if isinstance(schema, dict):
        out = {k: to_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        if schema.get("x-kubernetes-preserve-unknown-fields") is not True and out.get("type") == "object" \
                and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    return schema


def crd_schemas(crd_dir):
    schemas = {}
    for name in sorted(os.listdir(crd_dir)):
        if not name.endswith((".yaml", ".yml")):
            continue
        for crd in load_all(os.path.join(crd_dir, name)):
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                s = to_json_schema(v["schema"]["openAPIV3Schema"])
                s.setdefault("properties", {}).update({
                    "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                })
                s["additionalProperties"] = False
                schemas[(f"{group}/{v['name']}", kind)] = s
    return schemas


def check(doc, schemas):
    """Returns an error message, or None when the object is valid."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in schemas:
        errors = sorted(jsonschema.Draft202012Validator(schemas[key]).iter_errors(doc), key=str)
        if errors:
            e = errors[0]
            return "%s: %s" % (".".join(str(p) for p in e.absolute_path) or "<root>", e.message)
        return None
    try:
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    except SchemaNotFoundError:
        return "no schema for %s %s (neither built in nor a CRD in deploy/crds)" % key
    except kubernetes_validate.ValidationError as e:
        return "%s: %s" % (".".join(str(p) for p in e.path) or "<root>", e.message)
    return None


KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def is_kustomization(path):
    return os.path.basename(path) in KUSTOMIZATION_NAMES


def patch_paths(kustomization_path):
    """The patch files a kustomization names (strategic merge or JSON 6902 with a path)."""
    base = os.path.dirname(os.path.abspath(kustomization_path))
    paths = set()
    for doc in load_all(kustomization_path):
        entries = list(doc.get("patches") or []) + list(doc.get("patchesStrategicMerge") or [])
        for entry in entries:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if isinstance(path, str):
                paths.add(os.path.normpath(os.path.join(base, path)))
    return paths


def render(kustomization_path):
    """The objects `kubectl kustomize` renders from the kustomization's directory."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl is needed to render %s (it bundles kustomize); install it" % kustomization_path)
    directory = os.path.dirname(kustomization_path) or "."
    out = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return [d for d in yaml.safe_load_all(out.stdout) if d], None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crd-dir", required=True)
    ap.add_argument("--valid", action="append", default=[])
    ap.add_argument("--invalid", action="append", default=[])
    args = ap.parse_args()
    schemas = crd_schemas(args.crd_dir)
    failures = 0
    checked = 0
    kustomizations = [p for p in args.valid if is_kustomization(p)]
    patches = set()
    for path in kustomizations:
        patches |= patch_paths(path)
    for path in kustomizations:
        docs, err = render(path)
        if err is not None:
            failures += 1
            print("FAIL %s: kubectl kustomize failed: %s" % (path, err))
            continue
        for doc in docs:
            checked += 1
            err = check(doc, schemas)
            if err:
                failures += 1
                print("FAIL %s (rendered) %s/%s: %s" % (path, doc.get("kind"), doc.get("metadata", {}).get("name"), err))
    plain = [p for p in args.valid if not is_kustomization(p) and os.path.normpath(os.path.abspath(p)) not in patches]
    for path in plain:
        for doc in load_all(path):
            checked += 1
            err = check(doc, schemas)
            if err:
                failures += 1
                print("FAIL %s %s/%s: %s" % (path, doc.get("kind"), doc.get("metadata", {}).get("name"), err))
    for path in args.invalid:
        docs = load_all(path)
        rejected = [check(d, schemas) for d in docs]
        checked += len(docs)
        if not docs or not all(rejected):
            failures += 1
            print("FAIL %s was expected to be rejected but validated" % path)
        else:
            print("ok   %s rejected as expected: %s" % (path, "; ".join(rejected)))
    print("%d objects checked, %d failures" % (checked, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
