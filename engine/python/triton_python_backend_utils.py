"""Vigil's `triton_python_backend_utils`: the module a Triton Python-backend `model.py` imports as
`pb_utils`, written for Vigil's Python backend (see `vigil_python_stub.py`, which runs one model
instance per process and exchanges tensors with Vigil through shared memory).

What a model gets and gives is what Triton documents for its Python backend: `Tensor`,
`InferenceRequest` (with `get_input_tensor_by_name`), `InferenceResponse`, `TritonError` (with
Triton's error codes), `TritonModelException`, the configuration helpers
(`get_input_config_by_name`, `get_output_config_by_name`, `triton_string_to_numpy`), `Logger`,
and `ModelConfig` (what `TritonPythonModel.auto_complete_config` gets and returns: Vigil calls it
before loading, as Triton does).
Business-logic scripting: `InferenceRequest(model_name=..., inputs=...,
requested_output_names=...).exec()` (and `async_exec()`) runs another model of the server through its
dynamic batcher; `exec(decoupled=True)` returns every response of a decoupled model. Decoupled
models (`model_transaction_policy { decoupled: true }`) answer through
`request.get_response_sender().send(response, flags)`, from any thread, until
`flags=TRITONSERVER_RESPONSE_COMPLETE_FINAL`.
"""

import json

import numpy as np

# Triton's wire names of the data types and their numpy types (BYTES: numpy object arrays of
# `bytes`; BF16 has no numpy type).
_NUMPY_OF = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def triton_string_to_numpy(triton_type_string):
    """The numpy type of a configuration data type (`TYPE_FP32`) or wire name (`FP32`)."""
    name = triton_type_string[5:] if triton_type_string.startswith("TYPE_") else triton_type_string
    if name == "STRING":
        name = "BYTES"
    if name not in _NUMPY_OF:
        raise TritonModelException(f"data type {triton_type_string} has no numpy type")
    return _NUMPY_OF[name]


def numpy_to_triton_type(numpy_type):
    """The wire name (`FP32`, `BYTES`) of a numpy type, or None."""
    t = np.dtype(numpy_type)
    if t.kind in ("O", "S", "U"):
        return "BYTES"
    for name, np_type in _NUMPY_OF.items():
        if name != "BYTES" and np.dtype(np_type) == t:
            return name
    return None


def get_input_config_by_name(model_config, name):
    """The configuration of input `name` (a dict), or None."""
    for i in model_config.get("input", []):
        if i.get("name") == name:
            return i
    return None


def get_output_config_by_name(model_config, name):
    """The configuration of output `name` (a dict), or None."""
    for o in model_config.get("output", []):
        if o.get("name") == name:
            return o
    return None


class Logger:
    """Triton's `pb_utils.Logger`: messages go to Vigil's standard error, tagged with the level."""

    INFO, WARNING, ERROR, VERBOSE = "INFO", "WARNING", "ERROR", "VERBOSE"

    @staticmethod
    def log(message, level=INFO):
        import sys

        print(f"python model {level}: {message}", file=sys.stderr, flush=True)

    @staticmethod
    def log_info(message):
        Logger.log(message, Logger.INFO)

    @staticmethod
    def log_warn(message):
        Logger.log(message, Logger.WARNING)

    @staticmethod
    def log_error(message):
        Logger.log(message, Logger.ERROR)

    @staticmethod
    def log_verbose(message):
        Logger.log(message, Logger.VERBOSE)


# Set by the stub: sends one metric update to the engine (a dict), which serves it on /metrics.
_send_metric = None


class MetricFamily:
    """A custom metric family served on Vigil's `/metrics` (Prometheus text) with the server's own."""

    COUNTER, GAUGE = "counter", "gauge"

    def __init__(self, name, description, kind):
        if kind not in (MetricFamily.COUNTER, MetricFamily.GAUGE):
            raise TritonModelException(f"metric family '{name}': kind {kind!r} is neither COUNTER nor GAUGE")
        if not name or not all(c.isalnum() or c in "_:" for c in name) or name[0].isdigit():
            raise TritonModelException(f"metric family name {name!r} is not a Prometheus metric name")
        self._name, self._description, self._kind = name, description, kind

    def Metric(self, labels=None):  # noqa: N802 (Triton's name)
        return Metric(self, dict(labels or {}))


class Metric:
    """One labelled metric of a family. `value()` is what this instance's process has set or added
    (instances of a model share the metric on /metrics, where their increments add up)."""

    def __init__(self, family, labels):
        self._family, self._labels, self._value = family, {str(k): str(v) for k, v in labels.items()}, 0.0
        self._send("create", 0.0)

    def _send(self, action, value):
        if _send_metric is not None:
            f = self._family
            _send_metric(
                {"family": f._name, "description": f._description, "kind": f._kind, "labels": self._labels, "action": action, "value": value}
            )

    def increment(self, value):
        value = float(value)
        if self._family._kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("a counter cannot be incremented by a negative value")
        self._value += value
        self._send("increment", value)

    def set(self, value):
        if self._family._kind == MetricFamily.COUNTER:
            raise TritonModelException("a counter cannot be set; increment it")
        self._value = float(value)
        self._send("set", self._value)

    def value(self):
        return self._value


class TritonError:
    """An error a response carries (`InferenceResponse(error=TritonError("..."))`)."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=INTERNAL):
        self._message = str(message)
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code

    def __repr__(self):
        return f"TritonError({self._message!r}, {self._code})"


class TritonModelException(Exception):
    """Raised by the utilities on misuse; a model may raise it too."""

    def message(self):
        return str(self)


class Tensor:
    """A named tensor of a request or response, held as a numpy array."""

    def __init__(self, name, array, *_, **__):
        if not isinstance(name, str):
            raise TritonModelException("a Tensor's name must be a string")
        if not isinstance(array, np.ndarray):
            raise TritonModelException(f"tensor '{name}': expected a numpy array, got {type(array).__name__}")
        self._name = name
        self._array = array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array

    def is_cpu(self):
        return True

    def shape(self):
        return list(self._array.shape)

    def triton_dtype(self):
        return numpy_to_triton_type(self._array.dtype)

    def to_dlpack(self):
        if self._array.dtype == np.object_:
            raise TritonModelException(f"tensor '{self._name}': BYTES tensors have no DLPack form")
        return self._array.__dlpack__()

    @staticmethod
    def from_dlpack(name, dlpack_object):
        if not hasattr(dlpack_object, "__dlpack__"):
            raise TritonModelException(
                f"tensor '{name}': from_dlpack takes an object with __dlpack__ (a numpy array, a "
                "PyTorch CPU tensor), not a bare capsule"
            )
        return Tensor(name, np.from_dlpack(dlpack_object))


# Set by the stub: runs an InferenceRequest on another model of the server (business-logic
# scripting) and returns its InferenceResponse (with `decoupled`, the list of its responses).
_bls_call = None
# Set by the stub: sends one response of a decoupled request (id, InferenceResponse or None, final).
_send_response = None

# The flag of a request's last response (Triton's `TRITONSERVER_RESPONSE_COMPLETE_FINAL`).
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


def using_decoupled_model_transaction_policy(model_config):
    """Whether the configuration (a dict) has `model_transaction_policy { decoupled: true }`."""
    policy = model_config.get("model_transaction_policy") or {}
    return bool(policy.get("decoupled", False))


class InferenceResponseSender:
    """Sends a decoupled request's responses, any number of them, then the final flag."""

    def __init__(self, request_id):
        self._id = request_id
        self._closed = False

    def send(self, response=None, flags=0):
        if self._closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is None and not final:
            raise TritonModelException("send needs a response or the final flag")
        if response is not None and not isinstance(response, InferenceResponse):
            raise TritonModelException(f"send takes an InferenceResponse, not a {type(response).__name__}")
        if final:
            self._closed = True
        _send_response(self._id, response, final)

    def is_cancelled(self):
        return False


class InferenceRequest:
    """A request the model's `execute` gets (or, in Triton, one it sends to another model)."""

    def __init__(
        self,
        model_name=None,
        inputs=None,
        requested_output_names=None,
        request_id="",
        correlation_id=0,
        flags=0,
        parameters=None,
        model_version=-1,
        **_kwargs,
    ):
        if isinstance(model_name, (bytes, bytearray)):
            model_name = bytes(model_name).decode()  # e.g. an element of a BYTES input
        self._model_name = model_name
        self._inputs = list(inputs or [])
        self._requested = list(requested_output_names or [])
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        if parameters is None:
            parameters = {}
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters)
        self._model_version = model_version

    def inputs(self):
        return self._inputs

    def requested_output_names(self):
        return self._requested

    def request_id(self):
        return self._request_id

    def correlation_id(self):
        return self._correlation_id

    def flags(self):
        return self._flags

    def parameters(self):
        return self._parameters

    def model_name(self):
        return self._model_name

    def is_cancelled(self):
        return False

    def get_response_sender(self):
        sender = getattr(self, "_sender", None)
        if sender is None:
            raise TritonModelException(
                "get_response_sender needs a model with the decoupled transaction policy "
                "(model_transaction_policy { decoupled: true }) in Vigil's Python backend"
            )
        return sender

    def exec(self, decoupled=False):
        """Runs this request on model `model_name` of the same server and returns its response (an
        error response when the model fails or does not exist); with `decoupled`, the list of
        its responses (the last one empty when the final flag came alone)."""
        if self._model_name is None:
            raise TritonModelException("InferenceRequest.exec needs a model_name")
        if _bls_call is None:
            raise TritonModelException("InferenceRequest.exec works only inside a model's execute")
        return _bls_call(self, decoupled)

    async def async_exec(self, decoupled=False):
        """`exec`, awaitable (the calls of one execute run one after another)."""
        return self.exec(decoupled)

    def model_version(self):
        return self._model_version


class InferenceResponse:
    """The response to one request: output tensors, or an error."""

    def __init__(self, output_tensors=None, error=None, parameters=None):
        self._outputs = list(output_tensors or [])
        if error is not None and not isinstance(error, TritonError):
            error = TritonError(str(error))
        self._error = error
        self._parameters = parameters or {}

    def output_tensors(self):
        return self._outputs

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


def get_input_tensor_by_name(request, name):
    """The input `name` of `request`, or None."""
    for t in request.inputs():
        if t.name() == name:
            return t
    return None


def get_output_tensor_by_name(response, name):
    """The output `name` of `response`, or None."""
    for t in response.output_tensors():
        if t.name() == name:
            return t
    return None


class ModelConfig:
    """The configuration `auto_complete_config` may complete (a dict in Triton's JSON form)."""

    def __init__(self, model_config):
        self._config = json.loads(model_config) if isinstance(model_config, str) else model_config

    def as_dict(self):
        return self._config

    def _io(self, kind, entry):
        if not isinstance(entry, dict) or "name" not in entry:
            raise TritonModelException(f"an {kind} needs at least a name: {entry!r}")
        have = self._config.setdefault(kind, [])
        for existing in have:
            if existing.get("name") == entry["name"]:
                for key, value in entry.items():
                    if key in existing and existing[key] not in (value, [], "", "TYPE_INVALID"):
                        raise TritonModelException(
                            f"{kind} '{entry['name']}': {key} is {existing[key]!r} in the configuration, "
                            f"not {value!r}"
                        )
                    existing[key] = value
                return
        have.append(dict(entry))

    def add_input(self, input):  # noqa: A002 (Triton's parameter name)
        self._io("input", input)

    def add_output(self, output):
        self._io("output", output)

    def set_max_batch_size(self, max_batch_size):
        """The model batches up to `max_batch_size`; a configuration may ask for less, not more."""
        max_batch_size = int(max_batch_size)
        given = int(self._config.get("max_batch_size", 0) or 0)
        if given > max_batch_size:
            raise TritonModelException(
                f"configuration specified max_batch_size {given}, but the model supports at most {max_batch_size}"
            )
        if given == 0:
            self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, transaction_policy_dict):
        self._config["model_transaction_policy"] = dict(transaction_policy_dict)
