"""schemathesis hooks of tests/tests/api_schema.rs: the test copy of docs/openapi.yaml and the network guard.

Network guard. `POST /streams` makes Vigil open its `uri`. Every request schemathesis sends must name a local
file of the test or a 127.0.0.1 URL, so this module
- narrows the schema it loads (the test copy, also written to $VIGIL_SCHEMA_COPY): `uri` is one of
  $VIGIL_SCHEMA_URIS (newline-separated: the test's clip as a path and as a file:// URI, 127.0.0.1 URLs);
- drops every generated case whose body names another URI with a scheme (negative cases of the narrowed
  field: the real API takes any URI, so they are not negative for it), and
- refuses to send one that slipped through (`before_call` raises: the run fails, the request never leaves).
The test runs all of this in a network namespace whose only route off loopback is a sink it counts.

Rules JSON Schema cannot state. Positive cases must be requests Vigil accepts, and a few of Vigil's checks
depend on the deployment or on several fields at once (docs/openapi.yaml describes them, and
pipelines/tests/api.rs checks their 400 answers): analytics labels are classes of the model (the test copy
makes them an enum of $VIGIL_SCHEMA_LABELS, which Vigil enforces, so its negative cases stay negative);
for the others a positive case is repaired before it is sent: a line's points distinct and crossed by its
`in_direction`, a zone's polygon with an area, rule names unique, `reconnect.max_interval_ms` not below
`interval_ms`, a calibration's points a valid square (and a calibration added where `speed` or a zone's
`speed_limit` needs one).

The stream the run was started with ($VIGIL_SCHEMA_KEEP) is never deleted: removing the last stream ends
the run by design, and the test checks the server is alive at the end.
"""

import json
import os
import re
import struct

import schemathesis

URIS = [u for u in os.environ.get("VIGIL_SCHEMA_URIS", "").split("\n") if u]
LABELS = [label for label in os.environ.get("VIGIL_SCHEMA_LABELS", "").split("\n") if label]
KEEP = os.environ.get("VIGIL_SCHEMA_KEEP", "")

LOOPBACK_URL = re.compile(r"(rtsp|http)://127\.0\.0\.1:[0-9]{1,5}/[A-Za-z0-9._/-]*")
# Vigil reads `scheme://` as a URI when the scheme is letters, digits, `+`, `-`, `.` (config.rs resolve_uri).
SCHEME = re.compile(r"^\s*[A-Za-z0-9+.-]+://")


def is_local(uri):
    """Whether Vigil, given `uri`, can only open a local file or a 127.0.0.1 URL."""
    if not isinstance(uri, str):
        return True  # not a string: refused before anything is opened
    u = uri.strip()
    if SCHEME.match(u) is None:
        return True  # a path: a local file (or refused as missing)
    if u.lower().startswith("file:///"):
        return True
    return LOOPBACK_URL.fullmatch(u) is not None


def body_is_local(body):
    return not isinstance(body, dict) or is_local(body.get("uri"))


@schemathesis.hook
def before_load_schema(context, raw_schema):
    assert URIS and LABELS and KEEP, "VIGIL_SCHEMA_URIS, VIGIL_SCHEMA_LABELS and VIGIL_SCHEMA_KEEP must be set"
    schemas = raw_schema["components"]["schemas"]
    # The spec's own examples are sent as they are (the examples phase): they must be local too.
    body = raw_schema["paths"]["/streams"]["post"]["requestBody"]["content"]["application/json"]
    examples = [body["example"]] if "example" in body else []
    examples += [e["value"] for e in body.get("examples", {}).values()]
    for example in examples:
        assert is_local(example.get("uri")), f"docs/openapi.yaml: an example's uri is not local: {example}"
    uris = URIS + [e["uri"] for e in examples if e.get("uri") not in URIS]
    schemas["NewStream"]["properties"]["uri"] = {"type": "string", "enum": uris}
    schemas["Labels"]["items"] = {"type": "string", "enum": LABELS}
    copy = os.environ.get("VIGIL_SCHEMA_COPY")
    if copy:
        with open(copy, "w", encoding="utf-8") as f:
            json.dump(raw_schema, f, indent=1)


def f32(x):
    """`x` as Vigil reads it (an f32)."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        return float("inf")


def clear_line(points, direction):
    """Whether the line's points are distinct and `direction` crosses it well away from Vigil's 6° limit."""
    (ax, ay), (bx, by) = [(f32(x), f32(y)) for x, y in points]
    dx, dy = bx - ax, by - ay
    if abs(dx) < 1 and abs(dy) < 1:
        return False
    if direction in ("left", "right"):
        return abs(dy) >= 0.5 * abs(dx) and abs(dy) >= 1
    if direction in ("up", "down"):
        return abs(dx) >= 0.5 * abs(dy) and abs(dx) >= 1
    return True


def clear_polygon(polygon):
    """Whether the polygon's area is far from 0 even in Vigil's f32 arithmetic."""
    pts = [(f32(x), f32(y)) for x, y in polygon]
    terms = [a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1])]
    return abs(sum(terms)) > 1.0 + 1e-4 * sum(abs(t) for t in terms)


def unique_names(rules):
    seen = set()
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and isinstance(rule.get("name"), str):
            if rule["name"] in seen:
                rule["name"] = f"{rule['name']}-{i}"
            seen.add(rule["name"])


def repair(body):
    """Makes a schema-valid body meet the rules JSON Schema cannot state (see the module's text)."""
    reconnect = body.get("reconnect")
    if isinstance(reconnect, dict):
        a, b = reconnect.get("interval_ms"), reconnect.get("max_interval_ms")
        if isinstance(a, int) and isinstance(b, int) and b < a:
            reconnect["max_interval_ms"] = a
    analytics = body.get("analytics")
    if not isinstance(analytics, dict):
        return
    lines = analytics.get("lines") or []
    zones = analytics.get("zones") or []
    for line in lines:
        if not clear_line(line["points"], line.get("in_direction")):
            line["points"] = [[0, 0], [100, 100]]  # crossed by all four directions
    for zone in zones:
        if not clear_polygon(zone["polygon"]):
            zone["polygon"] = [[0, 0], [100, 0], [100, 100]]
    unique_names(lines)
    unique_names(zones)
    # A calibration: any generated points are replaced by a valid square (four points, no three on a
    # line, the same order on the ground), keeping the generated form (world, or width and length).
    # `speed` and zones' `speed_limit` need one.
    needs = analytics.get("speed") is not None or any(
        isinstance(z, dict) and z.get("speed_limit") is not None for z in zones
    )
    calibration = analytics.get("calibration")
    if isinstance(calibration, dict) or needs:
        calibration = calibration if isinstance(calibration, dict) else {}
        calibration["image"] = [[0, 0], [100, 0], [100, 100], [0, 100]]
        if calibration.get("width") is not None or calibration.get("length") is not None:
            calibration.pop("world", None)
            calibration["width"] = 3.5
            calibration["length"] = 20.0
        else:
            calibration["world"] = [[0, 0], [3.5, 0], [3.5, 20], [0, 20]]
            calibration.pop("width", None)
            calibration.pop("length", None)
        analytics["calibration"] = calibration


@schemathesis.hook
def filter_case(context, case):
    if not body_is_local(case.body):
        return False
    return (case.path_parameters or {}).get("id") != KEEP


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and isinstance(case.body, dict):
        repair(case.body)
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    if not body_is_local(case.body):
        raise AssertionError(f"network guard: refusing to send a uri that is not local: {case.body.get('uri')!r}")
    if (case.path_parameters or {}).get("id") == KEEP:
        raise AssertionError(f"refusing to delete the run's own stream {KEEP!r}")
