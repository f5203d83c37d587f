"""What the client scripts share: a check prints one line and stops the run at the first failure."""
import sys

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


def passed():
    print(f"PASS: {COUNT} checks")
