#!/usr/bin/env python3
"""`vigil serve`'s metrics port read with Prometheus's Python parser.

    metrics_check.py ADDRESS [MODEL [VERSION]]     ADDRESS: HOST:PORT of the metrics port (--metrics-port)

GET /metrics must parse with prometheus_client.parser.text_string_to_metric_families and hold every
metric of Triton's that vigil serve has (checks.TRITON_METRICS) with a sample for MODEL (default
`simple`) and VERSION (default 1). Prints one line per check and `PASS: N checks`; exits 1 at the first
failure.
"""
import sys

from checks import metrics_checks, passed

if __name__ == "__main__":
    metrics_checks(sys.argv[1], *sys.argv[2:4])
    passed()
