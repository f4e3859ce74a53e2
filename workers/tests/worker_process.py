"""Runs a real worker (``python3 -m pyfleet``) for the process-level tests.

Not a test module itself (no test_ prefix).
"""

import os
import struct
import subprocess
import sys

import msgpack

WORKERS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(message):
    body = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def parse_frames(data):
    out = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        out.append(msgpack.unpackb(data[4 : 4 + length], raw=False))
        data = data[4 + length :]
    return out


def run_worker(args=(), calls=(), pythonpath=None, timeout=30):
    """Start a worker, send ``calls`` as (task, input) pairs, close stdin.

    Returns (exit code, bytes written to fd 1, stderr text); parse_frames reads the bytes.
    """
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    stdin = b"".join(
        frame({"t": "call", "id": i + 1, "task": name, "input": value, "requestId": f"r{i}"})
        for i, (name, value) in enumerate(calls)
    )
    done = subprocess.run(
        [sys.executable, "-m", "pyfleet", *args],
        cwd=WORKERS_DIR,
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr.decode("utf-8", "replace")


def run_python(code, timeout=30):
    """Run ``code`` in a fresh interpreter next to the worker packages; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=WORKERS_DIR, capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout
