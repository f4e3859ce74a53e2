"""Run a task the way a worker runs it, without the server: for task authors' tests.

``call_task("greet", {"name": "Ada"})`` returns what a client would get, or raises
TaskCallError with the status and code it would see; examples/test_greeting.py
is a whole test module (README, "Writing a task", shows it).

Input and result go through the same msgpack encoding and the same error
handling as a real call (the worker loop's own code), so a result the server
could not send, or a task that raises, fails here as it would over HTTP, and
the input's numbers are what the server would send (see call_task). What
this does not do is the server's side: the input schema is checked by Node
(Ajv) before any worker is involved, timeouts are the server's, and JSON
clients see bytes as base64 and integers beyond 2^53 as strings.
"""

from __future__ import annotations

import math
import sys
import threading

try:
    import msgpack
except ModuleNotFoundError as exc:  # a bare "No module named 'msgpack'" says nothing of which Python to use
    if exc.name != "msgpack":
        raise
    raise ModuleNotFoundError(
        f"pyfleet.testing needs the msgpack package, which {sys.executable} does not have: run the tests with "
        "the interpreter the workers use (PYTHON; on Debian /usr/bin/python3, with apt-get install python3-msgpack), "
        "or pip install -r workers/requirements.txt in a virtualenv",
        name="msgpack",
    ) from exc

from . import protocol, registry
from .frames import DEFAULT_MAX_FRAME_BYTES
from .js_values import as_the_server_sends
from .replies import encode_reply
from .runner import Runner, current_loop, event_loop_policy
from .unsendable import undecodable

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

# The HTTP status and error code each kind of error reply becomes (SPEC section 1).
_HTTP = {
    protocol.KIND_REJECTED: (422, "TASK_REJECTED_INPUT"),
    protocol.KIND_FAILED: (500, "TASK_FAILED"),
    protocol.KIND_TOO_LARGE: (500, "RESULT_TOO_LARGE"),
}


class TaskCallError(Exception):
    """The call ended in an error reply: ``status`` and ``code`` are what an HTTP client would get.

    ``type`` is the Python exception's name, ``details`` the TaskError's details
    and ``traceback`` the text the server would log (for TASK_FAILED).
    """

    def __init__(self, reply: dict) -> None:
        self.status, self.code = _HTTP.get(reply.get("kind"), (500, "TASK_FAILED"))
        self.type: str = reply.get("type", "")
        self.message: str = reply.get("message", "")
        self.details: Optional[Any] = reply.get("details")
        self.traceback: Optional[str] = reply.get("traceback")
        super().__init__(f"{self.status} {self.code}: {self.type}" + (f": {self.message}" if self.message else ""))
        # A failing test then shows where the task failed, not only where call_task raised:
        # the traceback is printed with the error (a note, Python 3.11+; on 3.10, read .traceback).
        if self.traceback and hasattr(self, "add_note"):
            self.add_note("The task's traceback, as the server would log it:\n" + self.traceback.rstrip())


# The call id is part of the reply frame that MAX_FRAME_BYTES bounds, and a long-lived worker's
# ids grow, up to a msgpack uint32 (src/pool/call-in-flight.ts MAX_CALL_ID): the widest one, so
# that a result call_task accepts is never a few bytes over the limit on the server.
WIDEST_CALL_ID = 2**32 - 1


def call_task(name: str, input: Any, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, request_id: str = "test", timeout_ms: Optional[int] = None, trace_headers: Optional[Dict[str, str]] = None) -> Any:
    """Call the registered task ``name`` with ``input``; return its value as msgpack delivers it.

    Raises TaskCallError for any error reply (TaskError, another exception, a
    result that cannot be encoded or is over ``max_frame_bytes``), and KeyError
    for a name no imported module registered.

    ``input`` reaches the task as the server would send it: after a msgpack
    round trip (tuples become lists), and with every float that holds an
    integer within ±2^53 as an int (``1.0``, ``1e3``, ``-0.0`` arrive as ``1``,
    ``1000``, ``0``), since JavaScript has one number type and the server sends
    integral numbers as msgpack integers, whether the client sent JSON or msgpack;
    an int past 64 bits as the float a JSON body's number parses to; dict keys as
    a JavaScript object holds them (strings, whole-number keys first). Input the
    server refuses with a 400 before any call raises ValueError, saying why.

    Unlike a worker's call, this one has no deadline: the task's ``timeout_ms``
    is the server's to enforce, so a task that hangs hangs the test. What
    ``pyfleet.time_remaining()`` counts down from in the task is ``timeout_ms``
    if given (a client's budget, say) or the task's own ``timeout_ms``, whichever
    is shorter, as the server does; with neither, nothing (it returns None). And it runs
    in the test's own process: a task that calls ``os._exit()`` ends the test
    run there, with the status it gave (0 for ``os._exit(0)``, which can look
    like a passing run), where a worker would die and the call get 502 WORKER_DIED.
    Async tasks run on one event loop per thread, kept from call to call as a worker keeps
    its own; the thread's current asyncio event loop is put back as it was. ``request_id``
    is what ``pyfleet.request_id()`` returns in the task, and ``trace_headers``
    (``{"traceparent": ..., "tracestate": ..., "baggage": ...}``) what
    ``pyfleet.trace_headers()`` does (as given: the server passes on only valid ones).
    """
    task = registry.get(name)
    if task is None:
        known = ", ".join(sorted(task.name for task in registry.all_tasks())) or "none: import your task module first"
        raise KeyError(f"no task named {name!r} (registered: {known})")
    if timeout_ms is not None and not (type(timeout_ms) is int and timeout_ms > 0):
        raise ValueError(f"timeout_ms must be a positive integer, as x-request-timeout-ms is (not {timeout_ms!r})")
    limits = [limit for limit in (timeout_ms, task.timeout_ms) if limit is not None]
    refused = _refused_by_the_server(input)
    if refused is not None:
        raise ValueError(f"the server would answer this input 400 INVALID_INPUT, before any call: {refused}")
    call = protocol.decode(protocol.encode({"t": protocol.MSG_CALL, "id": WIDEST_CALL_ID, "task": name, "input": _past_64_bits_as_floats(input), "requestId": request_id, "timeoutMs": min(limits) if limits else None, "trace": trace_headers}))
    call["input"] = as_the_server_sends(call["input"])
    put_back_event_loop = _event_loop_keeper()
    try:
        _use_kept_loop()
        runner = Runner()
        try:
            reply = runner.run(call)
        finally:
            kept = runner.keep_loop()
            if kept is not None:
                _kept_loops[threading.get_ident()] = kept
            runner.close()
    finally:
        put_back_event_loop()
    try:
        reply = protocol.decode(encode_reply(reply, max_frame_bytes))
    except protocol.ProtocolError as exc:  # e.g. a tuple key: it comes back as an (unhashable) list
        # Said as the server logs it (where, and what to use), from the value the task returned.
        where = undecodable(reply.get("value" if reply.get("t") == protocol.MSG_RESULT else "details"), "the result" if reply.get("t") == protocol.MSG_RESULT else "the details")
        raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": where or str(exc)}) from None
    if reply["t"] == protocol.MSG_RESULT:
        problem = undecodable(reply["value"], "the result")
        if problem is not None:
            raise TaskCallError({"kind": protocol.KIND_FAILED, "type": "UndecodableResult", "message": problem})
        value = reply["value"]
        # The server passes a msgpack client the worker's bytes as they are, except for a result with a
        # __proto__ key: msgpackr renames it (its guard against prototype pollution), and the server
        # then encodes the value again from JavaScript's (src/pool/protocol.ts, resultValueBytes).
        return as_the_server_sends(_proto_renamed(value)) if _holds_proto_key(value) else value
    raise TaskCallError(reply)


def check_examples(name: str, *, rel_tol: float = 1e-9) -> int:
    """Call the task ``name`` with each of its input schema's ``examples``; compare each result with the output schema's.

    The OpenAPI document shows clients both lists (an input example and what it returns, in the
    same order): this keeps them true. Returns how many examples were called. Raises
    AssertionError naming the first example whose result differs (numbers compared with
    ``rel_tol``, so a fit's ``1.0000000000000004`` matches an example's ``1``; the result as a
    msgpack client gets it, as call_task returns it, but for NaN and ±infinity, which match
    the ``null`` JSON clients get for them), ValueError when the task declares no input
    examples, or output examples not one for each, and TaskCallError or KeyError as call_task
    does. An input example past the input schema is the server's to refuse (at start).
    """
    task = registry.get(name)
    if task is None:
        call_task(name, None)  # raises the KeyError naming what is registered
    inputs = task.schema.get("examples") if isinstance(task.schema, dict) else None
    outputs = task.output_schema.get("examples") if isinstance(task.output_schema, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise ValueError(f"task {name!r} declares no examples: give its schema \"examples\": [<an input>, ...]")
    if not isinstance(outputs, list) or len(outputs) != len(inputs):
        raise ValueError(
            f"task {name!r} has {len(inputs)} input example(s) and "
            f"{len(outputs) if isinstance(outputs, list) else 'no'} output example(s): "
            "give its output_schema \"examples\", one result for each input example, in the same order"
        )
    for i, (example, wanted) in enumerate(zip(inputs, outputs)):
        found = call_task(name, example)
        where = _first_difference(found, wanted, rel_tol, "")
        if where is not None:
            raise AssertionError(f"task {name!r}, example {i}: the result differs from its output example at {where or 'its root'}: {found!r} != {wanted!r}")
    return len(inputs)


def _first_difference(found: Any, wanted: Any, rel_tol: float, at: str) -> Optional[str]:
    """The JSON pointer of the first place ``found`` and ``wanted`` differ, or None."""
    if wanted is None and isinstance(found, float) and not math.isfinite(found):
        # An example is JSON, which has no NaN or infinity: JSON clients get null for them (a
        # std of one value is NaN), so null is the example that says it (a review found no
        # example could pass: null differed from nan, and nan itself was refused at start).
        return None
    if isinstance(found, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(found, bool) and not isinstance(wanted, bool):
        return None if math.isclose(found, wanted, rel_tol=rel_tol, abs_tol=rel_tol) else at
    if isinstance(found, list) and isinstance(wanted, list):
        if len(found) != len(wanted):
            return at
        for i, (a, b) in enumerate(zip(found, wanted)):
            inner = _first_difference(a, b, rel_tol, f"{at}/{i}")
            if inner is not None:
                return inner
        return None
    if isinstance(found, dict) and isinstance(wanted, dict):
        if set(found) != set(wanted):
            return at
        for key in wanted:
            inner = _first_difference(found[key], wanted[key], rel_tol, f"{at}/{key}")
            if inner is not None:
                return inner
        return None
    return None if type(found) is type(wanted) and found == wanted else at


def _holds_proto_key(value: Any) -> bool:
    # A loop, not recursion: a result may nest 511 containers deep (msgpack's limit), and two
    # frames a level (the function and its generator) passed Python's recursion limit at ~400.
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if "__proto__" in item:
                return True
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return False


def _proto_renamed(value: Any) -> Any:
    """``value`` with each ``__proto__`` key as msgpackr decodes it, ``__proto_`` (the later of two such keys wins, as in JavaScript)."""
    if type(value) is dict:
        return {("__proto_" if key == "__proto__" else key): _proto_renamed(item) for key, item in value.items()}
    if type(value) is list:
        return [_proto_renamed(item) for item in value]
    return value


# The server's limit on a body's nesting (src/routes/body.ts MAX_NESTING): a container at this depth is refused.
MAX_NESTING = 200


def _refused_by_the_server(value: Any) -> Optional[str]:
    """Why the server would refuse ``value`` as a request body before any call (a 400), or None:
    nesting past its limit, a ``__proto__`` key, a key that is bytes or a tuple, a msgpack
    extension type, a str holding a lone surrogate (not UTF-8)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (msgpack.ExtType, msgpack.Timestamp)):  # ExtType is a tuple: before the containers
            return "it holds a msgpack extension type or timestamp"
        if isinstance(node, (dict, list, tuple)) and depth >= MAX_NESTING:
            return f"it nests deeper than {MAX_NESTING} levels"
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "__proto__":
                    return "it holds a __proto__ key (JSON and msgpack bodies with one are refused)"
                if isinstance(key, (bytes, bytearray, tuple)):
                    return f"it holds a dict key of type {type(key).__name__}; keys are strings"
                stack.append((key, depth + 1))
                stack.append((item, depth + 1))
        elif isinstance(node, (list, tuple)):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return "a str holds a lone surrogate: not UTF-8"
    return None


def _past_64_bits_as_floats(value: Any) -> Any:
    """Ints msgpack cannot carry (past -2^63 .. 2^64 - 1) as the float a JSON body's number
    parses to on the server (±inf past the float range); msgpack bodies cannot hold them."""
    if type(value) is int and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return float("inf") if value > 0 else float("-inf")
    if type(value) in (list, tuple):
        return [_past_64_bits_as_floats(item) for item in value]
    if type(value) is dict:
        # A key past 64 bits: the text a JSON client's key would be (msgpack cannot carry it).
        return {str(key) if type(key) is int and not -(2**63) <= key < 2**64 else key: _past_64_bits_as_floats(item) for key, item in value.items()}
    return value


# The event loop call_task made for each thread, kept for its next calls, as a worker keeps one
# for its life: a new loop per call broke what async tasks bind to their loop at first use (a
# module's asyncio.Lock, a client session: "bound to a different event loop" on the second
# call), and stopped the background tasks a call left, which a worker runs on between calls.
_kept_loops: dict = {}


def _use_kept_loop() -> None:
    """Make the thread's kept loop its current one, unless the thread has a usable loop of its own
    (the Runner adopts that, as a worker adopts one its task modules set at import)."""
    loop = _kept_loops.get(threading.get_ident())
    asyncio = sys.modules.get("asyncio")
    if loop is None or asyncio is None or loop.is_closed() or asyncio._get_running_loop() is not None:
        return
    own = current_loop()
    if own is None or own.is_closed():
        asyncio.set_event_loop(loop)


def _event_loop_keeper() -> Any:
    """A function that puts back the thread's current asyncio event loop as it is now: a Runner sets its own.

    Read and put back through the event loop policy's per-thread record, so that
    a thread that had none set gets none, not a loop made on the way nor None
    (after set_event_loop(None), get_event_loop() raises where it made one).
    """
    asyncio = sys.modules.get("asyncio")
    local = None if asyncio is None else getattr(event_loop_policy(asyncio), "_local", None)
    saved = None if local is None else dict(vars(local))

    def put_back() -> None:
        asyncio = sys.modules.get("asyncio")
        if asyncio is None:
            return  # the Runner made no loop
        now = getattr(event_loop_policy(asyncio), "_local", None)
        if now is not None:
            vars(now).clear()  # none saved: asyncio was imported by the call, the record was new
            vars(now).update(saved or {})
        else:  # a policy of another shape
            asyncio.set_event_loop(None)

    return put_back

