"""One instance of a Triton Python-backend model, run by Vigil's engine in a process of its own
(as Triton's stub does): `python3 vigil_python_stub.py SOCKET INPUT_SHM OUTPUT_SHM BLS_IN BLS_OUT`.

`python3 vigil_python_stub.py --auto-complete MODEL_FILE` instead reads a configuration (Triton's
JSON) on standard input, passes it to `TritonPythonModel.auto_complete_config` as a
`pb_utils.ModelConfig` and writes `{"ok": true, "config": {...}}` (or `{"ok": false, "error"}`) on
standard output; the model's own prints go to standard error.

It connects to the engine's Unix socket first (standard library only, so that a missing numpy is
reported over the socket, not lost), then serves messages, each a little-endian u32 length and a
JSON object:

- `{"op": "init", "model_file", "args"}`: imports `model.py` (its folder on `sys.path`), makes
  `TritonPythonModel()` and calls `initialize(args)` where it has one;
- `{"op": "execute", "input_size", "requests": [{"inputs": [{"name", "datatype", "shape",
  "offset", "size"}], "outputs": [names], "request_id"}]}`: the inputs are numpy views of the
  input shared memory (written by the engine); `execute(requests)` is called once with every
  request of the batch, and each response's outputs are written to the output shared memory (this
  process grows it); the reply lists them per request (`{"outputs": [...]}` or `{"error": msg}`);
- `{"op": "finalize"}`: calls `finalize()` where the model has one, replies and exits.

While `execute` runs, `InferenceRequest(...).exec()` (business-logic scripting) sends
`{"op": "bls", "model_name", "model_version", "input_size", "inputs", "outputs"}` with the inputs in
the BLS input shared memory (this process grows it); the engine runs the model and answers
`{"ok": true, "output_size", "outputs": [...]}` (outputs in the BLS output shared memory, which the
engine grows) or `{"ok": false, "error"}`; `execute`'s own reply comes after.

A decoupled model (`"decoupled": true` in `execute`, each request with its `id`) answers through
`request.get_response_sender()`, from `execute` or any thread, at any time: each
`send(response, flags)` writes the response's outputs to a new file in the socket's folder and sends
`{"op": "response", "id", "final", "file", "size", "outputs"}` (or `"error"`; a final flag alone has
neither); `execute` itself must return None, and its reply (`{"ok": true}`) only frees the instance.
A BLS request with `exec(decoupled=True)` carries `"decoupled": true` and its answer lists every
response (`"responses": [{"outputs"} | {"error"}]`). Messages from several threads are sent whole
(one lock).

`pb_utils.MetricFamily(...).Metric(labels)` updates send `{"op": "metric", "family", "description",
"kind", "labels", "action": "create" | "set" | "increment", "value"}` (no reply): the engine serves them.

Every reply is `{"ok": true, ...}` or `{"ok": false, "error": message}`. BYTES tensors are laid out
as Triton serialises them: per element a little-endian u32 length and the bytes.
"""

import asyncio
import json
import mmap
import os
import socket
import struct
import sys
import threading
import traceback

ALIGN = 64


def recv_exact(sock, n):
    chunks = []
    while n > 0:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(sock):
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head)
    body = recv_exact(sock, length)
    return None if body is None else json.loads(body)


SEND_LOCK = threading.Lock()


def send(sock, obj):
    body = json.dumps(obj).encode()
    with SEND_LOCK:
        sock.sendall(struct.pack("<I", len(body)) + body)


class Execution:
    """Which thread runs `execute` now (BLS requests read the socket, which only that thread may)."""

    thread = None


def error_text(exc):
    """`Type: message`, with file and line for a syntax error and the model's frame otherwise."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        where = f" ({last.filename}, line {last.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


class Shm:
    """A shared-memory file mapped whole; `ensure` grows (owner) or re-maps (reader) it."""

    def __init__(self, path, create):
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o600)
        self.map = None
        self.size = 0

    def ensure(self, size, grow):
        if size <= self.size and self.map is not None:
            return
        if grow:
            size = max(size, 2 * self.size, 1 << 20)
            os.ftruncate(self.fd, size)
        else:
            size = os.fstat(self.fd).st_size
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:
                pass  # arrays of an earlier request still look at it; it goes with them
        self.map = mmap.mmap(self.fd, size)
        self.size = size


def load_model_module(model_file):
    """Imports `model_file` (its folder on `sys.path`, as Triton's stub has it)."""
    import importlib.util

    sys.path.insert(0, os.path.dirname(model_file))
    spec = importlib.util.spec_from_file_location("model", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "TritonPythonModel"):
        raise RuntimeError(f"{model_file} defines no class TritonPythonModel")
    return module


def auto_complete(model_file):
    answer = sys.stdout
    sys.stdout = sys.stderr
    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import triton_python_backend_utils as pb

        config = json.load(sys.stdin)
        cls = load_model_module(model_file).TritonPythonModel
        complete = getattr(cls, "auto_complete_config", None)
        if complete is not None:
            completed = complete(pb.ModelConfig(config))
            if not isinstance(completed, pb.ModelConfig):
                raise TypeError(f"auto_complete_config returned a {type(completed).__name__}, not a pb_utils.ModelConfig")
            config = completed.as_dict()
        answer.write(json.dumps({"ok": True, "config": config}))
    except BaseException as e:  # noqa: BLE001 (everything the user's code raises is reported)
        answer.write(json.dumps({"ok": False, "error": error_text(e)}))
    answer.flush()
    return 0


def main():
    if sys.argv[1] == "--auto-complete":
        return auto_complete(sys.argv[2])
    sock_path, in_path, out_path, bls_in_path, bls_out_path = sys.argv[1:6]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    # Both files are open before the engine hears back: it then removes their names.
    inputs = Shm(in_path, create=False)
    outputs = Shm(out_path, create=True)
    bls_inputs = Shm(bls_in_path, create=True)
    bls_outputs = Shm(bls_out_path, create=False)
    msg = recv(sock)
    if msg is None or msg.get("op") != "init":
        return 1
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, here)
        import numpy as np
        import triton_python_backend_utils as pb

        module = load_model_module(msg["model_file"])
        pb._bls_call = lambda request, decoupled: bls(np, pb, sock, bls_inputs, bls_outputs, request, decoupled)
        responses = ResponseFiles(np, pb, sock, os.path.dirname(sock_path))
        pb._send_response = responses.send
        pb._send_metric = lambda update: send(sock, dict(update, op="metric"))
        model = module.TritonPythonModel()
        if hasattr(model, "initialize"):
            model.initialize(msg["args"])
    except BaseException as e:  # noqa: BLE001 (everything the user's code raises is reported)
        send(sock, {"ok": False, "error": error_text(e)})
        return 1
    send(sock, {"ok": True})

    while True:
        msg = recv(sock)
        if msg is None:
            return 0
        op = msg.get("op")
        if op == "finalize":
            try:
                if hasattr(model, "finalize"):
                    model.finalize()
                send(sock, {"ok": True})
            except BaseException as e:  # noqa: BLE001
                send(sock, {"ok": False, "error": error_text(e)})
            return 0
        if op != "execute":
            send(sock, {"ok": False, "error": f"unknown operation {op!r}"})
            continue
        decoupled = bool(msg.get("decoupled"))
        try:
            inputs.ensure(msg["input_size"], grow=False)
            requests = [make_request(np, pb, inputs.map, r, decoupled) for r in msg["requests"]]
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": "reading the inputs: " + error_text(e)})
            continue
        try:
            Execution.thread = threading.get_ident()
            responses = model.execute(requests)
            if asyncio.iscoroutine(responses):
                responses = asyncio.run(responses)
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": error_text(e)})
            continue
        finally:
            Execution.thread = None
        if decoupled:
            if responses is None:
                send(sock, {"ok": True})
            else:
                send(sock, {"ok": False, "error": "a decoupled model's execute must return None (responses go through the response sender)"})
            continue
        try:
            send(sock, write_responses(np, pb, outputs, msg["requests"], responses))
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": "writing the outputs: " + error_text(e)})


def lay_out(np, pb, tensors, kind):
    """Tensors placed one after another (aligned): their descriptions, `(offset, bytes)` and the
    total size."""
    described, blobs, size = [], [], 0
    for t in tensors:
        array = t.as_numpy()
        wire, data = serialise(np, array)
        datatype = wire or pb.numpy_to_triton_type(array.dtype)
        if datatype is None:
            raise pb.TritonModelException(f"{kind} '{t.name()}' has numpy type {array.dtype}, which Triton has no type for")
        described.append({"name": t.name(), "datatype": datatype, "shape": list(array.shape), "offset": size, "size": len(data)})
        blobs.append((size, data))
        size = (size + len(data) + ALIGN - 1) // ALIGN * ALIGN
    return described, blobs, size


class ResponseFiles:
    """Sends a decoupled model's responses: each one's outputs in a new file of `folder`."""

    def __init__(self, np, pb, sock, folder):
        self.np, self.pb, self.sock, self.folder = np, pb, sock, folder
        self.lock = threading.Lock()
        self.count = 0

    def send(self, request_id, response, final):
        np, pb = self.np, self.pb
        msg = {"op": "response", "id": request_id, "final": bool(final)}
        if response is not None and response.has_error():
            msg["error"] = response.error().message()
        elif response is not None:
            described, blobs, size = lay_out(np, pb, response.output_tensors(), "output")
            with self.lock:
                self.count += 1
                name = f"r{self.count}"
            with open(os.path.join(self.folder, name), "wb") as f:
                for offset, data in blobs:
                    f.seek(offset)
                    f.write(data)
                f.truncate(size)
            msg.update({"file": name, "size": size, "outputs": described})
        send(self.sock, msg)


def bls(np, pb, sock, bls_inputs, bls_outputs, request, decoupled):
    """Sends `request` to the engine for another model and reads its response (with `decoupled`,
    the list of its responses)."""
    if Execution.thread != threading.get_ident():
        raise pb.TritonModelException(
            "InferenceRequest.exec works in the thread running execute, while it runs (Vigil's Python backend)"
        )
    described, blobs, size = lay_out(np, pb, request.inputs(), "input")
    bls_inputs.ensure(size, grow=True)
    for offset, data in blobs:
        bls_inputs.map[offset : offset + len(data)] = data
    send(
        sock,
        {
            "op": "bls",
            "model_name": request.model_name(),
            "model_version": int(request.model_version()),
            "input_size": bls_inputs.size,
            "inputs": described,
            "outputs": list(request.requested_output_names()),
            "decoupled": bool(decoupled),
        },
    )
    reply = recv(sock)
    if reply is None:
        raise pb.TritonModelException("the engine closed the connection during a BLS request")
    if not reply.get("ok"):
        error = pb.InferenceResponse(error=pb.TritonError(reply.get("error", "BLS request failed")))
        return [error] if decoupled else error
    bls_outputs.ensure(reply.get("output_size", 0), grow=False)

    def response(r):
        if "error" in r:
            return pb.InferenceResponse(error=pb.TritonError(r["error"]))
        tensors = [pb.Tensor(t["name"], read_tensor(np, pb, bls_outputs.map, t).copy()) for t in r.get("outputs", [])]
        return pb.InferenceResponse(output_tensors=tensors)

    if decoupled:
        return [response(r) for r in reply.get("responses", [])]
    return response(reply)


def read_tensor(np, pb, buf, t):
    """A tensor described by `t` in `buf` (numeric: a view; BYTES: a new object array)."""
    shape = tuple(t["shape"])
    if t["datatype"] == "BYTES":
        count = 1
        for d in shape:
            count *= d
        items, pos = [], t["offset"]
        for _ in range(count):
            (n,) = struct.unpack_from("<I", buf, pos)
            items.append(bytes(buf[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        return np.array(items, dtype=np.object_).reshape(shape)
    dtype = pb.triton_string_to_numpy(t["datatype"])
    return np.ndarray(shape, dtype=dtype, buffer=buf, offset=t["offset"])


def make_request(np, pb, buf, r, decoupled):
    tensors = []
    for t in r["inputs"]:
        # A decoupled model may keep its inputs after execute returns: they are copied out of the
        # input shared memory, which the next batch overwrites.
        array = read_tensor(np, pb, buf, t)
        tensors.append(pb.Tensor(t["name"], array.copy() if decoupled else array))
    request = pb.InferenceRequest(
        inputs=tensors,
        requested_output_names=r.get("outputs", []),
        request_id=r.get("request_id", ""),
    )
    if decoupled:
        request._sender = pb.InferenceResponseSender(r["id"])
    return request


def serialise(np, array):
    """The bytes of a tensor as the engine reads them (BYTES: length-prefixed elements)."""
    if array.dtype.kind in ("O", "S", "U"):
        parts = []
        for item in array.reshape(-1):
            if isinstance(item, str):
                item = item.encode()
            elif not isinstance(item, (bytes, bytearray)):
                item = str(item).encode()
            parts.append(struct.pack("<I", len(item)) + bytes(item))
        return "BYTES", b"".join(parts)
    return None, np.ascontiguousarray(array).tobytes()


def write_responses(np, pb, outputs, requests, responses):
    if not isinstance(responses, (list, tuple)):
        return {"ok": False, "error": f"execute returned {type(responses).__name__}, not a list of responses"}
    if len(responses) != len(requests):
        return {
            "ok": False,
            "error": f"execute returned {len(responses)} responses for {len(requests)} requests",
        }
    blobs, replies, size = [], [], 0
    for response in responses:
        if not isinstance(response, pb.InferenceResponse):
            replies.append({"error": f"execute returned a {type(response).__name__}, not an InferenceResponse"})
            continue
        if response.has_error():
            replies.append({"error": response.error().message()})
            continue
        tensors = []
        for t in response.output_tensors():
            array = t.as_numpy()
            kind, data = serialise(np, array)
            datatype = kind or pb.numpy_to_triton_type(array.dtype)
            if datatype is None:
                raise TypeError(f"output '{t.name()}' has numpy type {array.dtype}, which Triton has no type for")
            offset = size
            size = (size + len(data) + ALIGN - 1) // ALIGN * ALIGN
            blobs.append((offset, data))
            tensors.append(
                {"name": t.name(), "datatype": datatype, "shape": list(array.shape), "offset": offset, "size": len(data)}
            )
        replies.append({"outputs": tensors})
    outputs.ensure(size, grow=True)
    for offset, data in blobs:
        outputs.map[offset : offset + len(data)] = data
    return {"ok": True, "output_size": outputs.size, "responses": replies}


if __name__ == "__main__":
    sys.exit(main())
