"""One instance of a Triton Python-backend model, run by Vigil's engine in a process of its own
(as Triton's stub does): `python3 vigil_python_stub.py SOCKET INPUT_SHM OUTPUT_SHM BLS_IN BLS_OUT`.

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


def send(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(struct.pack("<I", len(body)) + body)


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


def main():
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

        model_file = msg["model_file"]
        sys.path.insert(0, os.path.dirname(model_file))
        import importlib.util

        spec = importlib.util.spec_from_file_location("model", model_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not hasattr(module, "TritonPythonModel"):
            raise RuntimeError(f"{model_file} defines no class TritonPythonModel")
        pb._bls_call = lambda request: bls(np, pb, sock, bls_inputs, bls_outputs, request)
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
        try:
            inputs.ensure(msg["input_size"], grow=False)
            requests = [make_request(np, pb, inputs.map, r) for r in msg["requests"]]
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": "reading the inputs: " + error_text(e)})
            continue
        try:
            responses = model.execute(requests)
            if asyncio.iscoroutine(responses):
                responses = asyncio.run(responses)
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": error_text(e)})
            continue
        try:
            send(sock, write_responses(np, pb, outputs, msg["requests"], responses))
        except BaseException as e:  # noqa: BLE001
            send(sock, {"ok": False, "error": "writing the outputs: " + error_text(e)})


def bls(np, pb, sock, bls_inputs, bls_outputs, request):
    """Sends `request` to the engine for another model and reads its response."""
    blobs, described, size = [], [], 0
    for t in request.inputs():
        array = t.as_numpy()
        kind, data = serialise(np, array)
        datatype = kind or pb.numpy_to_triton_type(array.dtype)
        if datatype is None:
            raise pb.TritonModelException(f"input '{t.name()}' has numpy type {array.dtype}, which Triton has no type for")
        described.append({"name": t.name(), "datatype": datatype, "shape": list(array.shape), "offset": size, "size": len(data)})
        blobs.append((size, data))
        size = (size + len(data) + ALIGN - 1) // ALIGN * ALIGN
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
        },
    )
    reply = recv(sock)
    if reply is None:
        raise pb.TritonModelException("the engine closed the connection during a BLS request")
    if not reply.get("ok"):
        return pb.InferenceResponse(error=pb.TritonError(reply.get("error", "BLS request failed")))
    bls_outputs.ensure(reply.get("output_size", 0), grow=False)
    tensors = [
        pb.Tensor(t["name"], read_tensor(np, pb, bls_outputs.map, t).copy()) for t in reply.get("outputs", [])
    ]
    return pb.InferenceResponse(output_tensors=tensors)


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


def make_request(np, pb, buf, r):
    tensors = []
    for t in r["inputs"]:
        tensors.append(pb.Tensor(t["name"], read_tensor(np, pb, buf, t)))
    return pb.InferenceRequest(
        inputs=tensors,
        requested_output_names=r.get("outputs", []),
        request_id=r.get("request_id", ""),
    )


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
