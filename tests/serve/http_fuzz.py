#!/usr/bin/env python3
"""boofuzz against the HTTP port of `vigil serve`, in the spirit of Triton's qa/L0_http_fuzz.

    http_fuzz.py [HOST:]PORT [--seconds S] [--max-cases N] [--seed N] [--only TEXT] [--strict] [--save DIR]

The server must serve the models of scripts/testmodels/make_triton_models.py (`simple`, `simple_int8`,
`simple_string`, `simple_identity`, `simple_fp32`); HOST must be a loopback address (default 127.0.0.1).

Requests fuzzed (boofuzz primitives, one element mutated per case): every GET route (health, server and
model metadata, configuration, readiness, statistics, shared memory) with fuzzed methods, paths, model
names, versions and HTTP versions; headers (names, values, Host, Content-Length, Transfer-Encoding and
chunk sizes, Expect, Content-Type); POST .../infer with JSON bodies (model, id, input names, shapes,
data types, data of INT32, FP32 and BYTES models, outputs and their parameters, JSON delimiters) and
with Triton's binary tensor extension (Inference-Header-Content-Length, binary_data_size, tensor bytes,
BYTES length prefixes); the repository index, load and unload; raw bytes, request lines and
pipelined requests. The cases of all elements are interleaved (round robin over the elements, each
element's own cases in an order shuffled by --seed), so a bounded run covers every element; without a
bound every case runs once. The same seed and --max-cases give the same cases.

Each case is sent on a new connection; the answer is read (a request that is not whole is half-closed
first, so the server answers or closes at once). After each case: GET /v2/health/live on a new connection must answer 200 within --hang-timeout (else
the server crashed or hangs: the run stops and fails); every --check-every cases and at the end a good
inference on `simple` must give the right sums. Findings (printed with the request, also saved under
--save; the first --print-findings of each kind): an answer 5xx other than 503 (501 "not supported" for
an extension vigil serve lacks is counted apart), no answer to a complete request within
--answer-timeout, a connection still open that long after an incomplete request was half-closed, a
malformed inference request answered 200, a valid one refused, or a 200 with wrong outputs (these
three by a reference validator of inference requests, judge()). Exit status: 0 when the server neither
crashed nor hung (and, with --strict, there was no finding), 1 otherwise. boofuzz runs without its web
interface; its result database lives in a temporary folder, removed at the end (kept with --save).
"""
import argparse
import ipaddress
import json
import math
import os
import random
import re
import shutil
import socket
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter

from boofuzz import (Block, Bytes, Delim, DWord, Group, Request, Session, Size, Static, String, Target,
                     TCPSocketConnection)
from boofuzz.mutation import Mutation
from boofuzz.mutation_context import MutationContext

CRLF = "\r\n"
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "CONNECT", "PRI", "get",
           "POST ", "G\x00T", "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"]
# Numbers as JSON text, for shapes, sizes and data: edges of every integer type, floats, non-numbers.
NUMBERS = ["0", "-1", "-16", "1.0", "1e1", "16.5", "-0", "+1", "01", "0x10", "8", "9", "17", "15", "127", "128",
           "-128", "-129", "255", "256", "65535", "65536", "2147483647", "2147483648", "-2147483648",
           "-2147483649", "4294967295", "4294967296", "3037000500", "9223372036854775807",
           "9223372036854775808", "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
           "18446744073709551616", "1" + "0" * 400, "1e308", "1e309", "-1e309", "1e-400", "3.4028235e38",
           "3.5e38", "NaN", "Infinity", "-Infinity", "null", "true", "false", '"16"', "[]", "{}", "[16]",
           "[[1]]", "", " ", "1 2", "1,2"]
# Whole shapes (the text between the brackets): overflowing products, wrong ranks, empty.
SHAPES = ["", "16", "1,16,1", "0,16", "9,16", "8,16", "2,16", "1,15", "1,17", "-1,16", "1,-16", "-1,-16",
          "3037000500,3037000500", "4294967296,4294967296", "65536,65536,65536,65536", "1,0",
          "4611686018427387904,16", "9223372036854775807,9223372036854775807", "1," * 64 + "16",
          "1.5,16", '"1",16', "null,16", "[1],16", "1e2,16", "1,16,", ",1,16"]
DATATYPES = ["INT32", "INT8", "INT16", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "BF16", "FP32",
             "FP64", "BOOL", "BYTES", "STRING", "int32", "TYPE_INT32", "INT32 ", "", "FP8", "INT4", "I"]
BOOLS = ["true", "false", "null", "0", "1", '"true"', "[]", "{}", "True"]
# JSON string contents: escapes, lone surrogates, control characters, non-UTF-8 bytes.
JSON_TEXT = ["", "\\u0000", "\\ud800", "\\udc00", "\\ud83d\\ude00", "\\ud800\\u0041", "\\uZZZZ", "\\x41",
             "\\", "\\\\", '\\"', "\x00", "\x01\x1f", "\x7f", "\u00e9", "\U0001f600", "\ufffe", "a\"b", "%00",
             "\\/", "\\b\\f\\n\\r\\t"]
MODELS = ["simple", "simple_int8", "simple_string", "simple_identity", "simple_fp32"]
# Path segments beyond boofuzz's library: encodings, traversal, routes' neighbours.
SEGMENTS = ["", ".", "..", "%2e%2e", "..%2f..%2f..%2fetc", "%2F", "simple%00", "%73imple", "SIMPLE", "simple/",
            "simple/versions", "simple?x=1", "simple#x", "%ff%fe", "%", "%g0", "simple;x", "*", "stats",
            "nope", "simple_identity", "simple_string", "v2", "\u00e9"]
VERSIONS = ["1", "0", "2", "-1", "01", "1.0", "", "18446744073709551615", "18446744073709551616", "x",
            "9223372036854775808", "%31", "1 ", "+1"]
BODY_MAX = 100_000
HEAD_MAX = 70_000


class Names:
    """Automatic unique names for the Static parts of a request."""

    def __init__(self):
        self.n = 0

    def static(self, text):
        self.n += 1
        return Static(f"s{self.n}", text)


def parts(names, items):
    """Request children from a list of str (static text) and boofuzz elements."""
    return [names.static(x) if isinstance(x, str) else x for x in items]


def http(name, method, path, headers=(), body=None, length="fuzz", methods=True, version=False):
    """An HTTP/1.1 request: the request line (the method fuzzed with `methods`, the HTTP version with
    `version`), `Host`, `Connection: close`, `headers` (each a list of str and elements, the line's CRLF
    added), `Content-Length` of `body` (`length`: "fuzz", "fixed" or None for none) and `body` (a list
    of str and elements)."""
    names = Names()
    line = []
    if methods:
        line.append(Group("method", values=[method] + [m for m in METHODS if m != method], default_value=method))
    else:
        line.append(method)
    line.append(" ")
    line += path if isinstance(path, list) else [path]
    line += [" ", String("version", "HTTP/1.1", max_len=HEAD_MAX, fuzz_values=[
        "HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 ", "HTTP/1.10", "http/1.1"]) if version else "HTTP/1.1", CRLF]
    children = [Block("line", children=parts(names, line))]
    head = ["Host: 127.0.0.1" + CRLF, "Connection: close" + CRLF]
    for h in headers:
        head += (h if isinstance(h, list) else [h]) + [CRLF]
    if body is not None and length is not None:
        head += ["Content-Length: ", Size("content-length", block_name="body", output_format="ascii",
                                          fuzzable=length == "fuzz"), CRLF]
    children.append(Block("headers", children=parts(names, head)))
    children.append(names.static(CRLF))
    if body is not None:
        children.append(Block("body", children=parts(names, body)))
    return Request(name, children=children)


def s(name, default, values=(), max_len=BODY_MAX):
    """A fuzzed string: boofuzz's library, long strings up to max_len, and `values`."""
    return String(name, default, max_len=max_len, fuzz_values=[v for v in values if v != default])


def model_path(default, tail):
    return ["/v2/models/", s("model", default, SEGMENTS + MODELS, HEAD_MAX), tail]


def json_input(name, shape, datatype, data, fuzz=True, tag=""):
    """One JSON input; with `fuzz` its name, shape dims, data type and one data element are fuzzed."""
    if not fuzz:
        return [json.dumps({"name": name, "shape": shape, "datatype": datatype, "data": data})]
    first, rest = json.dumps(data[0]), json.dumps(data[1:])[1:-1]
    element = NUMBERS if datatype != "BYTES" else [json.dumps(v)[1:-1] for v in ["", "1", "x" * 64]] + JSON_TEXT
    quote = '"' if datatype == "BYTES" else ""
    return ['{"name":"', s(f"name{tag}", name, ["INPUT0", "INPUT1", "OUTPUT0", "input0", ""] + JSON_TEXT),
            '","shape":[', s(f"batch{tag}", str(shape[0]), NUMBERS), ",", s(f"dim{tag}", str(shape[1]), NUMBERS),
            '],"datatype":"', s(f"datatype{tag}", datatype, DATATYPES), '","data":[',
            quote, s(f"element{tag}", first if not quote else first[1:-1], element), quote,
            ("," + rest) if rest else "", "]}"]


def requests():
    """The requests fuzzed."""
    r = []
    # Every GET route (as Triton's url list), and the whole URI as one string.
    for uri in ["/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/simple", "/v2/models/simple/versions/1",
                "/v2/models/simple/config", "/v2/models/simple/stats", "/v2/models/simple/ready",
                "/v2/models/stats", "/v2/systemsharedmemory/status", "/v2/cudasharedmemory/region/xx/status",
                "/v2/trace/setting", "/v2/logging"]:
        r.append(http("get " + uri, "GET", s("uri", uri, SEGMENTS, HEAD_MAX), version=uri == "/v2/health/live"))
    r.append(http("get model", "GET", model_path("simple", ""), version=True))
    r.append(http("get model version config", "GET",
                  model_path("simple_int8", "/versions/") + [s("v", "1", VERSIONS, HEAD_MAX), "/config"]))
    r.append(http("get model version stats", "GET",
                  model_path("simple_fp32", "/versions/") + [s("v", "1", VERSIONS, HEAD_MAX), "/stats"]))
    r.append(http("get model ready", "GET", model_path("simple_identity", "/ready")))
    r.append(http("get health segment", "GET", ["/v2/", s("segment", "health", SEGMENTS, HEAD_MAX), "/",
                                                s("probe", "ready", SEGMENTS + ["live"], HEAD_MAX)]))

    # Headers.
    r.append(http("headers", "GET", "/v2/health/ready", methods=False, headers=[
        [s("name", "X-Vigil-Fuzz", ["Host", "Content-Length", "Transfer-Encoding", "Authorization", "Expect",
                                    "Connection", " X", "X ", ""], HEAD_MAX), Delim("colon", ":"), " ",
         s("value", "value", ["\x00", "\r", "\n", "\r\n\r\n", "\x80", "\xff" * 16], HEAD_MAX)]]))
    r.append(http("header host", "GET", "/v2/models/simple", methods=False,
                  headers=[["Host: ", s("host", "127.0.0.1:8000", ["", "[::1]", "a" * 300, "127.0.0.1:99999"],
                                        HEAD_MAX)]]))
    r.append(http("header authorization", "GET", "/v2/models/simple/config", methods=False,
                  headers=[["Authorization: ", s("auth", "Bearer token", ["Bearer", "Bearer ", "Basic x"],
                                                 HEAD_MAX)]]))
    good = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]})
    r.append(http("header content-type", "POST", "/v2/models/simple/infer", methods=False, body=[good],
                  headers=[["Content-Type: ", s("type", "application/json", ["", "text/plain",
                                                                             "application/octet-stream"],
                                                HEAD_MAX)],
                           ["Expect: ", s("expect", "100-continue", ["", "200-ok"], HEAD_MAX)]]))
    r.append(http("header length", "POST", "/v2/models/simple/infer", methods=False, length=None, body=[good],
                  headers=[["Content-Length: ", s("length", str(len(good)), NUMBERS + [
                      f"{len(good)}, {len(good)}", f"{len(good)}\r\nContent-Length: 5", f" {len(good)} ",
                      f"+{len(good)}", f"0{len(good)}"], HEAD_MAX)]]))
    chunk = format(len(good), "x")
    r.append(http("chunked", "POST", "/v2/models/simple/infer", methods=False, length=None,
                  headers=[["Transfer-Encoding: ", s("te", "chunked", ["chunked, chunked", "gzip, chunked",
                                                                       "identity", "Chunked", " chunked"],
                                                     HEAD_MAX)]],
                  body=[s("chunk size", chunk, ["0", "1", "ffffffffffffffff", "10000000000000000", "-1",
                                                chunk + ";ext=1", chunk + " ", "0x" + chunk, chunk.upper()],
                          HEAD_MAX), CRLF, good, CRLF, s("last", "0", ["1", "00", "-0", ""], HEAD_MAX),
                        CRLF, s("trailer", "", ["X: 1\r\n", "Content-Length: 1\r\n"], HEAD_MAX), CRLF]))

    # Inference with JSON tensors.
    a = list(range(16))
    r.append(http("infer json", "POST", model_path("simple", "/infer"), version=True, body=[
        '{"id":"', s("id", "42", JSON_TEXT), '",', Delim("after id", " "), '"inputs":[',
        *json_input("INPUT0", [1, 16], "INT32", a, tag=" 0"), Delim("comma", ","),
        *json_input("INPUT1", [1, 16], "INT32", [1] * 16, fuzz=False),
        '],"outputs":[{"name":"', s("output", "OUTPUT0", ["OUTPUT1", "INPUT0", "OUTPUT2", ""] + JSON_TEXT),
        '","parameters":{"binary_data":', s("binary_data", "false", BOOLS), "}}]}"]))
    r.append(http("infer json shape", "POST", "/v2/models/simple/versions/1/infer", methods=False, body=[
        '{"inputs":[{"name":"INPUT0","shape":[', s("shape", "1,16", SHAPES),
        '],"datatype":"INT32","data":', s("data", json.dumps(a), [
            json.dumps([a]), json.dumps([a[:8], a[8:]]), json.dumps([[x] for x in a]), "[]", "[[]]", "[" * 300,
            json.dumps(a * 2), json.dumps(a[:15]), "{}", '"abc"', "null", json.dumps([a, [1]]),
            "[" * 20 + "1" + "]" * 20]),
        '},', json_input("INPUT1", [1, 16], "INT32", [1] * 16, fuzz=False)[0],
        '],', s("extra", '"parameters":{}', ['"parameters":{"sequence_id":1}', '"parameters":[]',
                                             '"outputs":{}', '"outputs":[{}]', '"outputs":[{"name":1}]',
                                             '"inputs":[]', '"id":1', '"id":null']), "}"]))
    r.append(http("infer json fp32", "POST", "/v2/models/simple_fp32/infer", methods=False, body=[
        '{"inputs":[', *json_input("INPUT0", [1, 16], "FP32", [0.5 * x for x in a], tag=" 0"), ",",
        *json_input("INPUT1", [1, 16], "FP32", [1.5] * 16, fuzz=False), "]}"]))
    r.append(http("infer json int8", "POST", "/v2/models/simple_int8/infer", methods=False, body=[
        '{"inputs":[', *json_input("INPUT0", [1, 16], "INT8", a, tag=" 0"), ",",
        *json_input("INPUT1", [1, 16], "INT8", [-1] * 16, fuzz=False), "]}"]))
    r.append(http("infer json bytes", "POST", "/v2/models/simple_identity/infer", methods=False, body=[
        '{"inputs":[', *json_input("INPUT0", [1, 2], "BYTES", ["hello", "world"], tag=" 0"),
        '],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":', s("binary_data", "false", BOOLS),
        "}}]}"]))
    r.append(http("infer json string", "POST", "/v2/models/simple_string/infer", methods=False, body=[
        '{"inputs":[', *json_input("INPUT0", [1, 16], "BYTES", [str(x) for x in a], tag=" 0"), ",",
        *json_input("INPUT1", [1, 16], "BYTES", ["1"] * 16, fuzz=False),
        '],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":', s("binary_data", "false", BOOLS + ["1e999"]),
        "}}]}"]))

    # Inference with binary tensors (Inference-Header-Content-Length, binary_data_size, the bytes).
    def binary_input(name, tag, datatype="INT32", shape="1,16"):
        return ['{"name":"', name, '","shape":[', s(f"shape{tag}", shape, SHAPES),
                '],"datatype":"', s(f"datatype{tag}", datatype, DATATYPES),
                '","parameters":{"binary_data_size":',
                Size(f"binary_data_size{tag}", block_name=f"tensor{tag}", output_format="ascii"), "}}"]

    r.append(http("infer binary", "POST", model_path("simple", "/infer"), headers=[[
        "Inference-Header-Content-Length: ", Size("header length", block_name="head", output_format="ascii")]],
        body=[Block("head", children=parts(Names(), [
            '{"inputs":[', *binary_input("INPUT0", "0"), ",", *binary_input("INPUT1", "1"),
            '],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":', s("binary_data", "true", BOOLS),
            '}},{"name":"OUTPUT1"}],"parameters":{"binary_data_output":', s("binary_data_output", "false", BOOLS),
            "}}"])),
            Block("tensor0", children=[Bytes("bytes0", struct.pack("<16i", *a), max_len=BODY_MAX)]),
            Block("tensor1", children=[Bytes("bytes1", struct.pack("<16i", *[2] * 16), max_len=BODY_MAX)])]))
    r.append(http("infer binary bytes", "POST", "/v2/models/simple_identity/infer", methods=False, headers=[[
        "Inference-Header-Content-Length: ", Size("header length", block_name="head", output_format="ascii")]],
        body=[Block("head", children=parts(Names(), [
            '{"inputs":[', *binary_input("INPUT0", "0", "BYTES", "1,2"),
            '],"outputs":[{"name":"OUTPUT0","parameters":{"binary_data":true}}]}'])),
            Block("tensor0", children=[
                DWord("length0", 5, endian="<"), Bytes("element0", b"hello", max_len=BODY_MAX),
                DWord("length1", 2, endian="<"), Bytes("element1", b"\x00\xff", max_len=BODY_MAX)])]))

    # The repository.
    r.append(http("repository index", "POST", "/v2/repository/index",
                  body=['{"ready":', s("ready", "true", BOOLS), "}"]))
    r.append(http("repository load", "POST", ["/v2/repository/models/",
                                              s("model", "simple", SEGMENTS + MODELS, HEAD_MAX), "/",
                                              Group("action", values=["load", "unload"])],
                  body=['{"parameters":{"', s("key", "unload_dependents", ["", "config", "file:1/model.onnx"]), '":',
                        s("value", "false", ['"{}"', '{"backend":"onnxruntime"}', "null", "1", "[]"]), "}}"]))

    # Raw bytes, the request line as one string, two requests pipelined.
    r.append(Request("raw", children=[Bytes("bytes", b"GET /v2/models/simple HTTP/1.1\r\nHost: x\r\n"
                                                     b"Connection: close\r\n\r\n", max_len=HEAD_MAX)]))
    r.append(Request("request line", children=[
        String("line", "POST /v2/repository/index HTTP/1.1", max_len=HEAD_MAX),
        Static("rest", "\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")]))
    r.append(Request("pipelined", children=[
        Static("first", "GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"),
        String("second", "GET /v2/models/simple/ready HTTP/1.1", max_len=HEAD_MAX),
        Static("end", "\r\nHost: x\r\nConnection: close\r\n\r\n")]))
    return r


# ------------------------------------------------------------------------------------ plain HTTP

def exchange(addr, data, timeout):
    """Sends `data` on a new connection and reads one answer; returns (status, headers, body) or
    raises OSError (refused, reset, timed out)."""
    with socket.create_connection(addr, timeout=timeout) as c:
        c.sendall(data)
        return read_answer(c, time.monotonic() + timeout)


def read_answer(c, deadline):
    """Reads one HTTP answer (status, lower-case headers, body) from socket `c` until `deadline`; status
    None when the connection closed or the time ran out before a status line came."""
    buf = b""
    while True:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            if m and m.group(1).startswith(b"1"):  # 100 Continue: the answer follows
                buf = buf[head_end + 4:]
                continue
            break
        left = deadline - time.monotonic()
        if left <= 0:
            return None, {}, b""
        c.settimeout(left)
        try:
            chunk = c.recv(65536)
        except socket.timeout:
            return None, {}, b""
        if not chunk:
            return None, {}, b""
        buf += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    if not m:
        return -1, {}, buf[:200]  # not HTTP
    status = int(m.group(1))
    headers = {}
    for line in buf[:head_end].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    body = buf[head_end + 4:]
    want = int(headers.get("content-length", "0") or 0)
    while len(body) < want and time.monotonic() < deadline:
        c.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = c.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body


def get(addr, path, timeout):
    return exchange(addr, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout)


def good_infer(addr, timeout):
    """A good JSON inference on `simple`; returns None when right, else what was wrong."""
    body = json.dumps({"inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [3] * 16}]}).encode()
    head = (f"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    try:
        status, _, answer = exchange(addr, head + body, timeout)
    except OSError as e:
        return f"no answer ({e})"
    try:
        out = {o["name"]: o["data"] for o in json.loads(answer)["outputs"]}
        ok = status == 200 and out == {"OUTPUT0": [x + 3 for x in range(16)],
                                       "OUTPUT1": [x - 3 for x in range(16)]}
    except (ValueError, KeyError, TypeError):
        ok = False
    return None if ok else f"{status} {answer[:300]!r}"


# ------------------------------------------------------------------------------------ the oracle

# model: (inputs {name: (datatype, per-item count or None for any)}, outputs)
SPECS = {
    "simple": ({"INPUT0": ("INT32", 16), "INPUT1": ("INT32", 16)}, {"OUTPUT0", "OUTPUT1"}),
    "simple_int8": ({"INPUT0": ("INT8", 16), "INPUT1": ("INT8", 16)}, {"OUTPUT0", "OUTPUT1"}),
    "simple_fp32": ({"INPUT0": ("FP32", 16), "INPUT1": ("FP32", 16)}, {"OUTPUT0", "OUTPUT1"}),
    "simple_string": ({"INPUT0": ("BYTES", 16), "INPUT1": ("BYTES", 16)}, {"OUTPUT0", "OUTPUT1"}),
    "simple_identity": ({"INPUT0": ("BYTES", None)}, {"OUTPUT0"}),
}
RANGES = {"INT32": (-2 ** 31, 2 ** 31 - 1), "INT8": (-128, 127)}
SIZES = {"INT32": 4, "INT8": 1, "FP32": 4}
MAX_BATCH = 8


class Unknown(Exception):
    """The reference does not say (the server may accept or refuse)."""


class Invalid(Exception):
    """The request is malformed: the server must refuse it."""


def no_constants(name):
    raise Invalid(f"JSON has {name}")


def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise Unknown("a JSON key twice")
    return dict(pairs)


def judge(raw):
    """What a correct server does with the request bytes `raw` if it is an inference request:
    ("valid", expected outputs or None), ("invalid", why) or ("unknown", why)."""
    try:
        return "valid", judge_infer(raw)
    except Invalid as e:
        return "invalid", str(e)
    except Unknown as e:
        return "unknown", str(e)


def judge_infer(raw):
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise Unknown("no end of the headers")
    lines = head.split(b"\r\n")
    m = re.fullmatch(rb"(\S+) (/v2/models/([A-Za-z0-9_]+)(?:/versions/([0-9]+))?/infer) HTTP/1\.1", lines[0])
    if not m:
        raise Unknown("not an inference request line")
    if m.group(1) != b"POST":
        raise Invalid("not POST")
    model = m.group(3).decode()
    if model not in SPECS:
        raise Invalid(f"unknown model {model}")
    if m.group(4) is not None and int(m.group(4)) != 1:
        raise Invalid("unknown version")
    headers = {}
    for line in lines[1:]:
        k, colon, v = line.partition(b":")
        if not colon or not re.fullmatch(rb"[A-Za-z0-9-]+", k) or re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", v):
            raise Unknown("a header line that is not plain")
        k = k.lower().decode()
        if k in headers:
            raise Unknown(f"{k} twice")
        headers[k] = v.strip().decode("latin-1")
    if "transfer-encoding" in headers or "expect" in headers:
        raise Unknown("framing or Expect")
    if headers.get("host", "") == "" or headers.get("content-type", "application/json") != "application/json":
        raise Unknown("Host or Content-Type")
    if not re.fullmatch(r"[0-9]+", headers.get("content-length", "")) or int(headers["content-length"]) != len(body):
        raise Unknown("Content-Length is not the body's")
    json_len = len(body)
    if "inference-header-content-length" in headers:
        v = headers["inference-header-content-length"]
        if not re.fullmatch(r"[0-9]+", v) or int(v) > len(body):
            raise Invalid(f"Inference-Header-Content-Length {v!r}")
        json_len = int(v)
    try:
        text = body[:json_len].decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the JSON is not UTF-8")
    if re.search(r"\\u[dD][89a-fA-F]", text):
        raise Unknown("a surrogate escape")
    try:
        req = json.loads(text, parse_constant=no_constants, object_pairs_hook=unique_keys)
    except ValueError:
        raise Invalid("not JSON")
    binary = body[json_len:]
    if not isinstance(req, dict):
        raise Invalid("JSON is not an object")
    if set(req) - {"id", "inputs", "outputs", "parameters"}:
        raise Unknown("other keys")
    if "id" in req and not isinstance(req["id"], str):
        raise Unknown("id not a string")
    params = req.get("parameters", {})
    if not isinstance(params, dict):
        raise Unknown("parameters not an object")
    if set(params) - {"binary_data_output"} or not isinstance(params.get("binary_data_output", False), bool):
        raise Unknown("request parameters")
    inputs, outputs = SPECS[model]
    given = req.get("inputs")
    if not isinstance(given, list) or not given:
        raise Invalid("no inputs")
    names = [i.get("name") if isinstance(i, dict) else None for i in given]
    if len(set(map(str, names))) != len(names):
        raise Unknown("an input twice")
    if set(names) != set(inputs):
        raise Invalid(f"inputs {names}")
    batches = set()
    values = {}
    for i in given:
        if set(i) - {"name", "shape", "datatype", "data", "parameters"}:
            raise Unknown("input keys")
        datatype, per_item = inputs[i["name"]]
        if i.get("datatype") != datatype:
            raise Invalid(f"datatype {i.get('datatype')!r}")
        shape = i.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise Invalid(f"shape {shape!r}")
        if len(shape) != 2 or not 1 <= shape[0] <= MAX_BATCH or (per_item is not None and shape[1] != per_item):
            raise Invalid(f"shape {shape}")
        if shape[1] < 1:
            raise Unknown("an empty tensor")
        batches.add(shape[0])
        count = shape[0] * shape[1]
        p = i.get("parameters", {})
        if not isinstance(p, dict) or set(p) - {"binary_data_size"}:
            raise Unknown("input parameters")
        if ("data" in i) == ("binary_data_size" in p):
            raise Invalid("data and binary_data_size: one of them")
        if "data" in i:
            values[i["name"]] = flat = judge_data(i["data"], datatype, count)
        else:
            size = p["binary_data_size"]
            if type(size) is not int or size < 0 or size > len(binary):
                raise Invalid(f"binary_data_size {size!r}")
            chunk, binary = binary[:size], binary[size:]
            values[i["name"]] = flat = judge_binary(chunk, datatype, count)
        if model == "simple_string" and not all(re.fullmatch(r"-?[0-9]{1,9}", v) for v in flat):
            raise Unknown("strings that are not small numbers")
    if binary:
        raise Unknown("binary data left over")
    if len(batches) != 1:
        raise Invalid("batch sizes differ")
    wanted = req.get("outputs", [])
    if not isinstance(wanted, list):
        raise Invalid("outputs not a list")
    for o in wanted:
        if not isinstance(o, dict) or set(o) - {"name", "parameters"}:
            raise Unknown("output keys")
        if o.get("name") not in outputs:
            raise Invalid(f"output {o.get('name')!r}")
        op = o.get("parameters", {})
        if not isinstance(op, dict) or set(op) - {"binary_data"} or not isinstance(op.get("binary_data", False), bool):
            raise Unknown("output parameters")
    return expected_outputs(model, values)


def judge_data(data, datatype, count):
    flat = []

    def walk(v, depth):
        if depth > 64:
            raise Unknown("deep data")
        if isinstance(v, list):
            for x in v:
                walk(x, depth + 1)
        else:
            flat.append(v)

    walk(data, 0)
    if not isinstance(data, list) or len(flat) != count:
        raise Invalid(f"{len(flat)} elements for {count}")
    for v in flat:
        if datatype == "BYTES":
            if not isinstance(v, str):
                raise Invalid(f"BYTES element {v!r}")
        elif datatype == "FP32":
            if type(v) not in (int, float):
                raise Invalid(f"FP32 element {v!r}")
            if abs(v) > 3.4028234663852886e38 or (v != 0 and abs(v) < 1.2e-38):
                raise Unknown("beyond FP32")
        else:
            lo, hi = RANGES[datatype]
            if type(v) is not int or not lo <= v <= hi:
                raise Invalid(f"{datatype} element {v!r}")
    return flat


def judge_binary(chunk, datatype, count):
    if datatype == "BYTES":
        flat, at = [], 0
        while at < len(chunk):
            if at + 4 > len(chunk):
                raise Invalid("a cut BYTES length")
            (n,) = struct.unpack_from("<I", chunk, at)
            if at + 4 + n > len(chunk):
                raise Invalid("a BYTES element past the end")
            flat.append(chunk[at + 4:at + 4 + n])
            at += 4 + n
        if len(flat) != count:
            raise Invalid(f"{len(flat)} BYTES elements for {count}")
        try:
            return [b.decode("ascii") for b in flat]
        except UnicodeDecodeError:
            return None  # not checked against the answer
    if len(chunk) != count * SIZES[datatype]:
        raise Invalid(f"{len(chunk)} bytes for {count} {datatype}")
    return list(struct.unpack(f"<{count}{ {'INT32': 'i', 'INT8': 'b', 'FP32': 'f'}[datatype]}", chunk))


def wrap(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


def expected_outputs(model, values):
    """The outputs a right answer has (JSON form), where the reference can compute them."""
    if model == "simple_identity":
        return None if values["INPUT0"] is None else {"OUTPUT0": values["INPUT0"]}
    a, b = values["INPUT0"], values["INPUT1"]
    if model == "simple_string":
        return {"OUTPUT0": [str(int(x) + int(y)) for x, y in zip(a, b)],
                "OUTPUT1": [str(int(x) - int(y)) for x, y in zip(a, b)]}
    if model == "simple_fp32":
        return {"OUTPUT0": [x + y for x, y in zip(a, b)], "OUTPUT1": [x - y for x, y in zip(a, b)]}
    bits = 32 if model == "simple" else 8
    return {"OUTPUT0": [wrap(x + y, bits) for x, y in zip(a, b)],
            "OUTPUT1": [wrap(x - y, bits) for x, y in zip(a, b)]}


def check_outputs(expected, headers, body):
    """None when the answer's JSON outputs are the expected ones (binary outputs are not checked)."""
    if expected is None:
        return None
    n = headers.get("inference-header-content-length")
    try:
        answer = json.loads(body[:int(n)] if n else body)
        got = {o["name"]: o for o in answer["outputs"]}
    except (ValueError, KeyError, TypeError):
        return "the answer is not JSON with outputs"
    for name, data in got.items():
        if "data" not in data or name not in expected:
            continue
        want = expected[name]
        have = data["data"]
        if isinstance(want[0], float) or isinstance(have[0] if have else 0, float):
            same = len(have) == len(want) and all(
                math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-30) or (math.isinf(x) and x == y)
                for x, y in zip(have, want))
        else:
            same = have == want
        if not same:
            return f"{name} is {str(have)[:200]}, expected {str(want)[:200]}"
    return None


# ------------------------------------------------------------------------------------ the run

class Stop(BaseException):
    """Ends the boofuzz session from a callback (boofuzz catches every Exception of callbacks)."""


def complete(raw):
    """Whether `raw` is a whole HTTP request that a server answers without waiting for more bytes."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    low = head.lower()
    if b"transfer-encoding" in low or b"expect:" in low:
        return False
    lengths = re.findall(rb"\r\ncontent-length:[ \t]*([^\r\n]*)", low)
    if not lengths:
        return True
    if len(lengths) > 1 or not re.fullmatch(rb"[0-9]{1,15}", lengths[0].strip()):
        return True  # a server refuses a bad length at once
    return int(lengths[0].strip()) <= len(body)


def shrink(v):
    """Values longer than 4 KiB kept compressed until used (long strings repeat, so this is small)."""
    if not isinstance(v, (str, bytes)) or len(v) <= 4096:
        return v
    if isinstance(v, bytes):
        z = zlib.compress(v, 1)
        return lambda _default: zlib.decompress(z)
    z = zlib.compress(v.encode("utf-8", "surrogatepass"), 1)
    return lambda _default: zlib.decompress(z).decode("utf-8", "surrogatepass")


class Fuzz:
    """One run: boofuzz's session with the cases in turn, the checks after each case, the summary."""

    def __init__(self, args):
        self.args = args
        self.addr = (args.host, args.port)
        self.start = time.monotonic()
        self.deadline = self.start + args.seconds if args.seconds else None
        self.cases = 0
        self.statuses = Counter()
        self.verdicts = Counter()
        self.per_request = Counter()
        self.findings = 0
        self.unsupported = 0
        self.kinds = Counter()
        self.failure = None
        self.context = None  # the case being sent

    def elements(self, reqs):
        """[(request, element, [mutation lists] in a seeded order)] for every fuzzable element."""
        out = []
        for req in reqs:
            for item in req.walk():
                if not getattr(item, "fuzzable", False) or isinstance(item, (Block, Request)):
                    continue
                mutations = []
                for ms in item.get_mutations():
                    mutations.append([Mutation(value=shrink(m.value), qualified_name=m.qualified_name,
                                               index=m.index) for m in ms])
                random.Random(f"{self.args.seed}:{item.qualified_name}").shuffle(mutations)
                if mutations:
                    out.append((req, item, mutations))
        return out

    def cases_in_turn(self, session, elements, edges):
        """Round robin over the elements: MutationContexts for boofuzz's main loop."""
        position = [0] * len(elements)
        left = True
        while left:
            left = False
            for k, (req, item, mutations) in enumerate(elements):
                if position[k] >= len(mutations):
                    continue
                left = True
                ms = mutations[position[k]]
                position[k] += 1
                session.fuzz_node = req
                req.mutant = item
                session.mutant_index = position[k]
                session.total_mutant_index += 1
                self.context = MutationContext(message_path=edges[req.name],
                                               mutations={m.qualified_name: m for m in ms})
                yield self.context

    def before_case(self, target=None, fuzz_data_logger=None, session=None, sock=None, **_):
        """boofuzz's pre-send callback: forget the last case's bytes (boofuzz keeps them when a send fails)."""
        session.last_send = None

    def after_case(self, target=None, fuzz_data_logger=None, session=None, sock=None, **_):
        """boofuzz's post-test-case callback: the answer, the oracle, then is the server alive."""
        self.cases += 1
        sent = session.last_send
        if sent is None:  # the send failed (the server closed the connection): the bytes meant
            sent = session.fuzz_node.render(self.context)
        name = session.fuzz_node.name
        self.per_request[name] += 1
        whole = complete(sent)
        status, headers, body = None, {}, b""
        start = time.monotonic()
        try:
            raw_sock = target._target_connection._sock
            if not whole:
                # The rest of the request never comes: say so (half-close), and the server must answer
                # or close the connection at once rather than wait.
                raw_sock.shutdown(socket.SHUT_WR)
            status, headers, body = read_answer(raw_sock, start + self.args.answer_timeout)
        except OSError:
            status = "reset"
        waited = time.monotonic() - start
        if status is None:
            status = "none" if waited < self.args.answer_timeout else "timeout"
        self.statuses[status] += 1
        case = session.current_test_case_name
        if status == "timeout":
            self.finding("no answer" if whole else "kept open",
                         f"no answer within {self.args.answer_timeout} s to a complete request" if whole else
                         f"no answer and the connection still open {self.args.answer_timeout} s after the end "
                         f"of an incomplete request (half-closed)", case, sent)
        elif status == 501 and b"not supported" in body:
            self.unsupported += 1  # an extension vigil serve does not have (classification, load with a config)
        elif isinstance(status, int) and status >= 500 and status != 503:
            self.finding(f"answer {status}", f"answer {status} {body[:300]!r}", case, sent)
        if name.startswith("infer") or name.startswith("chunked") or name == "header length":
            verdict, detail = judge(sent)
            self.verdicts[verdict] += 1
            if verdict == "invalid" and status == 200:
                self.finding("malformed, answered 200", f"a malformed request answered 200 ({detail}): {body[:300]!r}",
                             case, sent)
            elif verdict == "valid" and isinstance(status, int) and status != 200 and status < 500:
                self.finding(f"valid, refused with {status}", f"a valid request refused: {status} {body[:300]!r}",
                             case, sent)
            elif verdict == "valid" and status == 200:
                wrong = check_outputs(detail, headers, body)
                if wrong:
                    self.finding("wrong outputs", f"a wrong answer: {wrong}", case, sent)
        self.alive(case, sent)
        if self.args.check_every and self.cases % self.args.check_every == 0:
            wrong = good_infer(self.addr, self.args.hang_timeout)
            if wrong:
                self.fail(f"a good inference request is answered wrongly after the case: {wrong}", case, sent)
        if self.args.progress and self.cases % self.args.progress == 0:
            print(f"http_fuzz: {self.cases} cases, {time.monotonic() - self.start:.0f} s", flush=True)
        if (self.args.max_cases and self.cases >= self.args.max_cases) or (
                self.deadline and time.monotonic() >= self.deadline):
            raise Stop()

    def alive(self, case, sent):
        try:
            status, _, _ = get(self.addr, "/v2/health/live", self.args.hang_timeout)
        except ConnectionRefusedError:
            self.fail("the server is gone (connection refused): it crashed", case, sent)
        except OSError as e:
            self.fail(f"the server does not answer /v2/health/live within {self.args.hang_timeout} s ({e}): "
                      f"it hangs or crashed", case, sent)
        else:
            if status is None:
                self.fail(f"the server accepts connections but does not answer /v2/health/live within "
                          f"{self.args.hang_timeout} s (or closes them unanswered): it hangs", case, sent)
            elif status != 200:
                self.fail(f"/v2/health/live answered {status}", case, sent)

    def finding(self, kind, what, case, sent):
        """Records a finding; prints it and saves its request for the first --print-findings of each kind
        and request."""
        self.findings += 1
        self.kinds[kind, case.split(":[")[0]] += 1
        if self.kinds[kind, case.split(":[")[0]] > self.args.print_findings:
            return
        print(f"FINDING {self.findings}: {what}\n  case {case}\n  request {sent[:600]!r}"
              f"{' (%d bytes)' % len(sent) if len(sent) > 600 else ''}", flush=True)
        self.save(f"finding-{self.findings}", sent)

    def fail(self, what, case, sent):
        self.failure = what
        print(f"FAILED: {what}\n  case {case}\n  request {sent[:2000]!r}", flush=True)
        self.save("failure", sent)
        raise Stop()

    def save(self, name, sent):
        if self.args.save:
            os.makedirs(self.args.save, exist_ok=True)
            with open(os.path.join(self.args.save, name + ".bin"), "wb") as f:
                f.write(sent)

    def run(self):
        try:
            status, _, _ = get(self.addr, "/v2/health/live", self.args.hang_timeout)
        except OSError as e:
            print(f"FAILED: the server at {self.addr[0]}:{self.addr[1]} does not answer ({e})")
            return 1
        if status != 200 or good_infer(self.addr, self.args.hang_timeout):
            print(f"FAILED: the server is not live ({status}) or does not serve `simple` right before fuzzing: "
                  f"{good_infer(self.addr, self.args.hang_timeout)}")
            return 1
        reqs = [r for r in requests() if not self.args.only or self.args.only in r.name]
        t = time.monotonic()
        elements = self.elements(reqs)
        total = sum(len(m) for _, _, m in elements)
        print(f"http_fuzz: {len(reqs)} requests, {len(elements)} fuzzed elements, {total} cases in all "
              f"(seed {self.args.seed}; made in {time.monotonic() - t:.1f} s); bound: "
              f"{self.args.seconds or 'no'} s, {self.args.max_cases or 'no'} cases", flush=True)
        workdir = tempfile.mkdtemp(prefix="vigil-http-fuzz-")
        try:
            session = Session(
                target=Target(connection=TCPSocketConnection(self.addr[0], self.addr[1], send_timeout=10.0)),
                web_port=None, keep_web_open=False, fuzz_loggers=[], db_filename=os.path.join(workdir, "boofuzz.db"),
                fuzz_db_keep_only_n_pass_cases=20, receive_data_after_fuzz=False,
                receive_data_after_each_request=False, pre_send_callbacks=[self.before_case],
                post_test_case_callbacks=[self.after_case],
                restart_threshold=1, restart_sleep_time=0.5, crash_threshold_request=10 ** 9,
                crash_threshold_element=10 ** 9)
            for req in reqs:
                session.connect(req)
            edges = {req.name: session._path_names_to_edges([req.name]) for req in reqs}
            session.total_num_mutations = total
            session.total_mutant_index = 0
            self.start = time.monotonic()
            if self.args.seconds:
                self.deadline = self.start + self.args.seconds
            try:
                session._main_fuzz_loop(self.cases_in_turn(session, elements, edges))
            except Stop:
                session.targets[0].close()
            elapsed = time.monotonic() - self.start
            if self.failure is None:
                # boofuzz ends its loop by itself when it cannot connect: the checks below tell why.
                self.alive("(after the last case)", session.last_send or b"")
        except Stop:
            elapsed = time.monotonic() - self.start
        finally:
            if self.args.save:
                os.makedirs(self.args.save, exist_ok=True)
                shutil.copy(os.path.join(workdir, "boofuzz.db"), self.args.save)
            shutil.rmtree(workdir, ignore_errors=True)
        if self.failure is None:
            wrong = good_infer(self.addr, self.args.hang_timeout)
            if wrong:
                self.failure = f"a good inference request is answered wrongly after fuzzing: {wrong}"
                print(f"FAILED: {self.failure}")
        rate = self.cases / elapsed if elapsed else 0.0
        print(f"http_fuzz: {self.cases} cases in {elapsed:.1f} s ({rate:.1f} cases/s)")
        print("http_fuzz: cases per request: " + ", ".join(f"{k} {v}" for k, v in sorted(self.per_request.items())))
        print("http_fuzz: answers: " + ", ".join(f"{k} {v}" for k, v in
                                                 sorted(self.statuses.items(), key=lambda kv: str(kv[0]))))
        print("http_fuzz: inference requests judged: "
              + ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())))
        print(f"http_fuzz: {self.unsupported} answers 501 'not supported' (extensions vigil serve does not have)")
        print(f"http_fuzz: {self.findings} findings")
        for (kind, request), n in sorted(self.kinds.items()):
            print(f"http_fuzz:   {n} x {kind} (request '{request}')")
        if self.failure is not None:
            print(f"FAILED: {self.failure}")
            return 1
        if self.args.strict and self.findings:
            print(f"FAILED: {self.findings} findings (--strict)")
            return 1
        print(f"PASS: {self.cases} cases in {elapsed:.1f} s, the server neither crashed nor hung")
        return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address", help="[HOST:]PORT of vigil serve's HTTP port (HOST: a loopback address)")
    p.add_argument("--seconds", type=float, default=0, help="stop after this long (0: no bound)")
    p.add_argument("--max-cases", type=int, default=0, help="stop after this many cases (0: no bound)")
    p.add_argument("--seed", type=int, default=1, help="the order of each element's cases")
    p.add_argument("--answer-timeout", type=float, default=10.0,
                   help="how long a request may wait for its answer, or an incomplete one (half-closed) for the "
                        "connection to close (s)")
    p.add_argument("--hang-timeout", type=float, default=10.0, help="how long /v2/health/live may take (s)")
    p.add_argument("--check-every", type=int, default=100, help="a good inference every N cases (0: at the end)")
    p.add_argument("--progress", type=int, default=1000, help="a progress line every N cases (0: none)")
    p.add_argument("--print-findings", type=int, default=10,
                   help="print and save at most this many findings of each kind and request")
    p.add_argument("--only", help="fuzz only the requests whose name contains this text")
    p.add_argument("--strict", action="store_true", help="findings fail the run too")
    p.add_argument("--save", help="keep the boofuzz database and the findings' requests in this folder")
    args = p.parse_args()
    host, _, port = args.address.rpartition(":")
    args.host, args.port = host.strip("[]") or "127.0.0.1", int(port)
    if not ipaddress.ip_address(args.host).is_loopback:
        p.error(f"{args.host} is not a loopback address: only a server on this machine is fuzzed")
    if not args.seconds and not args.max_cases:
        print("http_fuzz: no --seconds or --max-cases: every case runs once", flush=True)
    sys.exit(Fuzz(args).run())


if __name__ == "__main__":
    main()
