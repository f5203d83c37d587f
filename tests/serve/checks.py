"""What the client scripts share: a check prints one line and stops the run at the first failure."""
import sys
import urllib.request

from tritonclient.utils import InferenceServerException

COUNT = 0


def check(ok, what):
    global COUNT
    if not ok:
        print(f"FAILED: {what}")
        sys.exit(1)
    COUNT += 1
    print(f"ok: {what}")


def expect_error(call, text, what, status=None):
    """`call()` must raise Triton's client error whose message contains `text` (and status, if given)."""
    try:
        call()
    except InferenceServerException as e:
        ok = text in e.message() and (status is None or e.status() == status)
        check(ok, f"{what}: {e.status()} {e.message()!r} contains {text!r}")
        return
    check(False, f"{what}: no error")


# The metrics of Triton's /metrics that vigil serve has, per model and version.
TRITON_METRICS = [
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_request_duration_us", "nv_inference_queue_duration_us", "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
    "nv_inference_pending_request_count",
]


def metrics_checks(address, model="simple", version="1"):
    """GET http://ADDRESS/metrics: Prometheus's own parser (prometheus_client) reads it, and every metric of
    TRITON_METRICS has a sample for `model` and `version`. Returns {metric: value} of that model."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as r:
        check(r.status == 200, f"GET /metrics: {r.status}")
        text = r.read().decode("utf-8")
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except Exception as e:  # the parser raises ValueError and others on text it cannot read
        check(False, f"/metrics parses with prometheus_client: {type(e).__name__}: {e}")
    check(True, f"/metrics parses with prometheus_client: {len(families)} metric families")
    values = {}
    for name in TRITON_METRICS:
        family = families.get(name)
        samples = [s for s in (family.samples if family else [])
                   if s.labels.get("model") == model and s.labels.get("version") == version]
        check(family is not None and family.type in ("counter", "gauge") and len(samples) == 1,
              f"{name} ({family.type if family else 'missing'}) for {model} version {version}: "
              f"{samples[0].value if samples else 'no sample'}")
        values[name] = samples[0].value
    return values


def passed():
    print(f"PASS: {COUNT} checks")
