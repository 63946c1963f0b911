#!/usr/bin/env python3
"""Writes gnocchi_resources.json: Ceilometer's own Gnocchi mapping, as the
`gnocchi` dispatcher embeds it.

Run with the interpreter of the Ceilometer venv (scripts/ceilometer-venv.sh):

    .venv-ceilometer/bin/python plugins/gnocchi/data/generate.py > plugins/gnocchi/data/gnocchi_resources.json

From ceilometer 27.0.0 (Apache-2.0): publisher/data/gnocchi_resources.yaml (the
archive policies, and which resource type each meter goes to with which
attributes) and gnocchi_client.py (the resource types' attribute schemas, as
`ceilometer-upgrade` leaves them once every update operation ran). Attributes
given as plugin definitions (dicts) are left out; the dispatcher reads the
JSONPath-like strings.
"""
import copy
import json
import os
import sys

import yaml
from ceilometer import gnocchi_client
from ceilometer.publisher import gnocchi as publisher

path = os.path.join(os.path.dirname(publisher.__file__), "data", "gnocchi_resources.yaml")
with open(path) as f:
    data = yaml.safe_load(f)

types = copy.deepcopy(gnocchi_client.resources_initial)
for op in gnocchi_client.resources_update_operations:
    if op["type"] == "create_resource_type":
        types[op["resource_type"]] = copy.deepcopy(op["data"][0]["attributes"])
    elif op["type"] == "update_attribute_type":
        for d in op["data"]:
            name = d["path"].replace("/attributes/", "")
            if d["op"] == "add":
                v = {k: x for k, x in d["value"].items() if k != "options"}
                types[op["resource_type"]][name] = v
            elif d["op"] == "remove":
                types[op["resource_type"]].pop(name, None)
    elif op["type"] == "update_attribute":
        pass
    else:
        raise SystemExit("unknown operation %r" % op["type"])

resources = []
for r in data["resources"]:
    metrics = r["metrics"]
    if isinstance(metrics, list):
        metrics = {m: None for m in metrics}
    resources.append({
        "resource_type": r["resource_type"],
        "metrics": {m: (extra or {}).get("archive_policy_name") for m, extra in metrics.items()},
        "attributes": {k: v for k, v in (r.get("attributes") or {}).items() if isinstance(v, str)},
    })

json.dump({
    "source": "ceilometer 27.0.0 publisher/data/gnocchi_resources.yaml and gnocchi_client.py",
    "archive_policy_default": data.get("archive_policy_default", "ceilometer-low"),
    "archive_policies": data.get("archive_policies", []),
    "resource_types": types,
    "resources": resources,
}, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
sys.stdout.write("\n")
