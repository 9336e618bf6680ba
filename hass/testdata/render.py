# Renders Home Assistant value templates the way HA's MQTT integration does
# (a sandboxed Jinja environment with `value` and, when the payload is JSON,
# `value_json`), for hass's tests. Input on stdin: a JSON list of
# {"template": ..., "payload": ...}; output: a JSON list of rendered strings
# (or "ERROR: ..." when rendering fails).
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment

env = ImmutableSandboxedEnvironment()
out = []
for job in json.load(sys.stdin):
    variables = {"value": job["payload"]}
    try:
        variables["value_json"] = json.loads(job["payload"])
    except ValueError:
        pass
    try:
        out.append(env.from_string(job["template"]).render(**variables).strip())
    except Exception as e:  # noqa: BLE001 - report, do not stop
        out.append("ERROR: %s: %s" % (type(e).__name__, e))
json.dump(out, sys.stdout)
