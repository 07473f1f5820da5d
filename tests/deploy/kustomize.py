"""The part of kustomize that deploy/ uses: resources, patches and configMapGenerator.

Written here because no Python package renders kustomizations; test_k8s.py compares its output
with `kubectl kustomize` wherever kubectl is installed, so the subset cannot drift unnoticed.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
# Kinds whose lists kustomize merges by key (strategic merge); custom resources get JSON merge
# patch, which replaces lists whole.
STRATEGIC_KINDS = {"Deployment", "StatefulSet", "Job", "ConfigMap", "Service", "PodDisruptionBudget"}
MERGE_KEYS = {"containers": "name", "env": "name", "ports": "containerPort", "volumes": "name"}
SUPPORTED = {"apiVersion", "kind", "resources", "patches", "configMapGenerator", "generatorOptions"}


class KustomizeError(Exception):
    """A kustomization uses a field outside the subset, or refers to something missing."""


def build(folder: Path) -> list[Resource]:
    """The resources `folder`'s kustomization.yaml renders, in the order they were read."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise KustomizeError(f"{folder}: fields outside the subset: {sorted(unsupported)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        if path.is_dir():
            resources.extend(build(path))
        else:
            resources.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    resources.extend(_generated(folder, kustomization))
    for patch in kustomization.get("patches", []):
        for doc in yaml.safe_load_all((folder / patch["path"]).read_text()):
            if doc:
                _apply(resources, doc, folder)
    return resources


def _generated(folder: Path, kustomization: dict[str, Any]) -> list[Resource]:
    options = kustomization.get("generatorOptions", {})
    if kustomization.get("configMapGenerator") and not options.get("disableNameSuffixHash"):
        raise KustomizeError(f"{folder}: the subset does not compute name hashes; set disableNameSuffixHash")
    maps = []
    for generator in kustomization.get("configMapGenerator", []):
        data = {Path(file).name: (folder / file).read_text() for file in generator.get("files", [])}
        metadata: dict[str, Any] = {"name": generator["name"]}
        if options.get("labels"):
            metadata["labels"] = dict(options["labels"])
        maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
    return maps


def _apply(resources: list[Resource], patch: Resource, folder: Path) -> None:
    key = (patch["kind"], patch["metadata"]["name"])
    targets = [r for r in resources if (r["kind"], r["metadata"]["name"]) == key]
    if len(targets) != 1:
        raise KustomizeError(f"{folder}: patch {key} matches {len(targets)} resources")
    strategic = patch["kind"] in STRATEGIC_KINDS
    merged = _merge(targets[0], patch, strategic)
    resources[resources.index(targets[0])] = merged


def _merge(base: Any, patch: Any, strategic: bool, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = _merge(base.get(name), value, strategic, name) if name in base else value
        return merged
    if strategic and isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        # Strategic merge lists the patch's items first, in its order (merged into the base's
        # item of the same key), then the base's other items in theirs.
        by_key = {item.get(key): item for item in base}
        patched = [
            _merge(by_key[item.get(key)], item, strategic) if item.get(key) in by_key else item for item in patch
        ]
        keys = {item.get(key) for item in patch}
        return patched + [copy.deepcopy(item) for item in base if item.get(key) not in keys]
    return copy.deepcopy(patch)
