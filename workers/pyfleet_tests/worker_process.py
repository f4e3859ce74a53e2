"""Runs a real worker (``python3 -m pyfleet``) for the process-level tests.

Not a test module itself (no test_ prefix).
"""

import os
import select
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

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


class LiveWorker:
    """A worker whose stdin stays open, as the server's does: one call at a time, each reply awaited."""

    def __init__(self, args=(), pythonpath=None):
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyfleet", *args], cwd=WORKERS_DIR, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        )
        self.buffer = b""
        self.next_id = 1
        self.ready = self.read_message()

    def call(self, task, value, timeout=5):
        """Send one call and return its reply; raise TimeoutError if none comes within ``timeout`` seconds."""
        self.process.stdin.write(frame({"t": "call", "id": self.next_id, "task": task, "input": value, "requestId": "live"}))
        self.process.stdin.flush()
        self.next_id += 1
        return self.read_message(timeout)

    def read_message(self, timeout=10):
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while len(self.buffer) < 4 or len(self.buffer) < 4 + struct.unpack(">I", self.buffer[:4])[0]:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError(f"no reply within {timeout} s")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError("the worker closed its stdout")
            self.buffer += chunk
        (length,) = struct.unpack(">I", self.buffer[:4])
        body, self.buffer = self.buffer[4 : 4 + length], self.buffer[4 + length :]
        return msgpack.unpackb(body, raw=False)

    def close(self):
        """Close stdin, wait for the exit (kill after 10 s); return (exit code, stderr text). Safe to call twice."""
        if self.stderr.closed:
            return self.closed
        self.process.stdin.close()
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process.stdout.close()
        self.stderr.seek(0)
        self.closed = (code, self.stderr.read().decode("utf-8", "replace"))
        self.stderr.close()
        return self.closed


def task_files(test, files):
    """Write ``files`` (relative path: source, dedented) into a temporary directory that lives as
    long as ``test``; return the directory, for the worker's PYTHONPATH."""
    directory = tempfile.TemporaryDirectory()
    test.addCleanup(directory.cleanup)
    for path, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(directory.name, path)), exist_ok=True)
        with open(os.path.join(directory.name, path), "w") as f:
            f.write(textwrap.dedent(text))
    return directory.name
