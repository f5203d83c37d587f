"""ONNX seeds of the onnx_io fuzz target (fuzz/seed.sh), with a protobuf walker of its own.

    python3 onnx_seeds.py slim MODEL.onnx OUT   # MODEL without nodes and weights
    python3 onnx_seeds.py tiny OUT              # one input, one output, one metadata entry
"""
import sys


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, raw bytes of the whole field) of each top-level field of message b."""
    i = 0
    while i < len(b):
        start = i
        key, i = varint(b, i)
        wire = key & 7
        if wire == 0:
            _, i = varint(b, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = varint(b, i)
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield key >> 3, b[start:i]


def payload(raw):
    _, i = varint(raw, 0)
    n, i = varint(raw, i)
    return raw[i:i + n]


def enc(field, data):
    out = bytearray()
    for v in (field << 3 | 2, len(data)):
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out) + data


def slim_graph(g):
    out = b""
    for f, raw in fields(g):
        if f == 1:  # node
            continue
        if f == 5:  # initializer: only its name (field 8)
            out += enc(5, b"".join(r for ff, r in fields(payload(raw)) if ff == 8))
        else:
            out += raw
    return out


def slim(model):
    out = b""
    for f, raw in fields(model):
        if f == 7:  # graph
            out += enc(7, slim_graph(payload(raw)))
        elif f in (1, 2, 3, 4, 5, 6, 8, 14):  # versions, producer, doc, opsets, metadata
            out += raw
    return out


def tensor(name, elem, dims):
    shape = b"".join(enc(1, b"\x08" + bytes([d]) if d >= 0 else enc(2, b"N")) for d in dims)
    return enc(1, name) + enc(2, enc(1, b"\x08" + bytes([elem]) + enc(2, shape)))


def tiny():
    graph = enc(2, b"g") + enc(11, tensor(b"x", 1, [-1, 3, 8, 8])) + enc(12, tensor(b"y", 1, [-1, 6]))
    return b"\x08\x08" + enc(7, graph) + enc(14, enc(1, b"k") + enc(2, b"v"))


if __name__ == "__main__":
    if sys.argv[1] == "slim":
        data = slim(open(sys.argv[2], "rb").read())
    else:
        data = tiny()
    open(sys.argv[-1], "wb").write(data)
