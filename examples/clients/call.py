"""Calling pyfleet from Python with the standard library (and msgpack, for msgpack answers).

    PYFLEET_URL=http://localhost:5000 python3 examples/clients/call.py

Serve examples/mytasks first (see examples/README.md). What it shows: a JSON call, a
msgpack call whose 64-bit integer comes back exact, a task's own refusal (422) read
from the error body, and a retry that honours Retry-After when the server is busy.
"""

import json
import os
import time
import urllib.error
import urllib.request

import msgpack

URL = os.environ.get("PYFLEET_URL", "http://localhost:5000")


def call(task, value, as_msgpack=False, attempts=3):
    """The task's answer; raises RuntimeError with the server's code and message on an error."""
    body = msgpack.packb(value) if as_msgpack else json.dumps(value).encode()
    kind = "application/msgpack" if as_msgpack else "application/json"
    request = urllib.request.Request(f"{URL}/api/tasks/{task}", data=body, method="POST",
                                     headers={"content-type": kind, "accept": kind})
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data = response.read()
                return msgpack.unpackb(data) if as_msgpack else json.loads(data)
        except urllib.error.HTTPError as error:
            problem = _problem_of(error)
            # 503 QUEUE_FULL, QUEUE_TIMEOUT, WORKERS_UNAVAILABLE say when to come back; nothing else is worth repeating.
            retry_after = error.headers.get("retry-after")
            if error.code == 503 and retry_after is not None and attempt < attempts:
                time.sleep(float(retry_after))
                continue
            raise RuntimeError(f"{error.code} {problem['code']}: {problem['message']} {problem.get('details', '')}".rstrip()) from None


def _problem_of(error):
    """pyfleet's errors are JSON, {statusCode, code, error, message, details?}; a proxy in front may answer in HTML (nginx's 502 page)."""
    text = error.read()
    try:
        return json.loads(text)
    except ValueError:
        return {"code": error.reason, "message": text[:200].decode("utf-8", "replace")}


if __name__ == "__main__":
    print("json:", call("greet", {"name": "Ada"}))
    print("msgpack:", call("echo", {"at_ms": 1764400000123, "big": 2**62}, as_msgpack=True))
    try:
        call("greet", {"name": "nobody"})
    except RuntimeError as refused:
        print("refused:", refused)
