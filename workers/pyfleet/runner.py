"""Runs one call's task, sync or async, and puts the worker back in order after it.

The call's request id, deadline and trace context are set around it, its input's defaults
filled, an async task (or a coroutine a sync one returns) run on the worker's event loop,
which is kept between calls and run while a call is awaited (wait_for_call), and what the
call leaves behind undone (guard.py; watchers.py notes what it changed). The reply messages
are replies.py's; reading calls and writing replies is loop.py's.
"""

from __future__ import annotations

import sys
import warnings
from types import CoroutineType

from . import guard, protocol, registry
from .errors import as_text, describe, rejection_in, sendable
from .replies import failed as _failed, rejected as _rejected, unreportable as _unreportable
from .context import reset_deadline as _reset_deadline, reset_request_id as _reset_request_id, set_deadline as _set_deadline, set_request_id as _set_request_id
from .context import reset_trace as _reset_trace, set_trace as _set_trace
from .watchers import changes as _changes
from .js_values import in_js_order
from .std_fds import begin_call_output, end_open_line, open_line as _open_line

# Type names for type checkers only (why: see registry.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any, Dict, Optional


class Runner:
    """Runs task functions, sync or async, and reports what happened as a message."""

    def __init__(self) -> None:
        # One event loop for the worker's life, made at start if any task is async or a task
        # module imported asyncio, else once a call does (see _check_event_loop).
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._made_loop = False
        self._warned_stop = False
        if "asyncio" in sys.modules or any(task.is_async for task in registry.all_tasks()):
            self._event_loop()
        self._baseline = guard.Baseline()  # after the event loop: making it is not a task's doing

    def run(self, message: Dict[str, Any], arrived: Optional[float] = None) -> Dict[str, Any]:
        """Runs the call ``message``; ``arrived``: when its frame began to arrive (monotonic()),
        from which its ``timeoutMs`` counts (now, if not given)."""
        call_id = message.get("id")
        name = message.get("task")
        task = registry.get(name) if isinstance(name, str) else None
        if task is None:
            return protocol.error(call_id, protocol.KIND_FAILED, protocol.UNKNOWN_TASK, f"this worker has no task {name!r}")
        request_id = _set_request_id(message.get("requestId"))
        deadline = _set_deadline(message.get("timeoutMs"), arrived)
        trace = _set_trace(message.get("trace"))
        begin_call_output(call_id)
        raised: Optional[BaseException] = None  # for a process the task forked: its exit status
        try:
            try:
                task_input = message.get("input")
                if task.defaults and type(task_input) is dict:
                    _fill_defaults(task_input, task.defaults)
                value = task.fn(task_input)
                # A coroutine from a plain function too: an async def behind a decorator that is not.
                if task.is_async or type(value) is CoroutineType:
                    try:
                        value = self._event_loop().run_until_complete(value)
                    except (SystemExit, KeyboardInterrupt, RuntimeError) as exc:
                        # The loop lets these two out of any of its tasks, not only the call's own; and
                        # a RuntimeError with the call's own task still pending is "Event loop stopped
                        # before Future completed": some task called loop.stop() (the call failed with a
                        # 500, and its code ran on after it).
                        own = self._pending_task(value)
                        if own is None:
                            raise  # the call's own: its failure, as from a sync task
                        value = self._run_past(own, exc, task.name)
                reply = protocol.result(call_id, value)
            except BaseException as exc:
                raised = exc
                # A TaskError (also one of a second copy of pyfleet, or in a TaskGroup's exception
                # group: rejection_in) is a rejection.
                # Not only Exception: KeyboardInterrupt, SystemExit (a library calling
                # sys.exit()), asyncio.CancelledError and GeneratorExit raised by a task
                # are its failures too (500), not a reason to lose the worker. The runtime
                # never raises them itself (SIGINT is ignored, SIGTERM has no handler).
                rejection = rejection_in(exc)
                reply = _failed(call_id, exc) if rejection is None else _rejected(call_id, rejection)
        except BaseException as exc:  # building the reply raised (an exception's property, say): still one reply
            reply = _unreportable(call_id, exc)
        # What the call left behind (see guard.py): one dict test, three identity checks and,
        # once asyncio is loaded, a look at the event loop.
        base = self._baseline
        try:
            if _changes or sys.stdout is not base.stdout or sys.stderr is not base.stderr or sys.stdin is not base.stdin:
                base.restore(task.name, reply, raised)  # in a process the task forked, this exits
            if self._loop is not None or "asyncio" in sys.modules:
                self._check_event_loop(task.name)
        except BaseException:  # a handler the task left ran just now and raised: the reply stands
            guard.log.exception("task %r: putting its worker back in order after the call raised", task.name)
        if _open_line:  # after fds 0-2 are back: the next call's output starts a line of its own
            end_open_line()
        _reset_request_id(request_id)
        _reset_deadline(deadline)
        _reset_trace(trace)
        return reply

    def wait_for_call(self, fd: Optional[int]) -> None:
        """Between calls, run the worker's event loop until fd (the calls' pipe) is readable, if
        anything is waiting on the loop: asyncio tasks a module or an earlier call started there
        (a cache refresher, a heartbeat) then go on between calls, not only during async ones.
        Without a loop, or with nothing on it, nothing is done: read_frame blocks as before.

        Readiness of the fd is enough: the server sends a worker one call at a time and waits
        for its reply, so when the last frame has been read, the reader holds no bytes of the next.
        """
        loop = self._loop
        if fd is None or loop is None or loop.is_closed() or loop.is_running() or not _has_work(loop):
            return
        arrived = loop.create_future()
        try:
            loop.add_reader(fd, lambda: arrived.done() or arrived.set_result(None))
        except NotImplementedError:  # a loop that cannot watch fds: the calls wait as before
            return
        try:
            while not arrived.done():
                try:
                    loop.run_until_complete(arrived)
                except (SystemExit, KeyboardInterrupt) as exc:  # from a background task: the runtime raises neither
                    guard.log.error(
                        "between calls, a background asyncio task raised %s; logged here, the worker goes on",
                        sendable(describe(exc)), exc_info=exc,
                    )
                except RuntimeError as exc:  # "Event loop stopped before Future completed": a task called loop.stop()
                    # Once per worker: a task that stops the loop again and again must not flood the log.
                    if not self._warned_stop:
                        self._warned_stop = True
                        guard.log.warning("between calls, a background asyncio task stopped the event loop (%s); it runs on", sendable(as_text(exc)))
        finally:
            loop.remove_reader(fd)

    def keep_loop(self) -> Any:
        """The event loop this Runner made, which close() then leaves open (None if it made none):
        pyfleet.testing keeps it for the thread's next call_task, as a worker keeps its loop."""
        made, self._made_loop = self._made_loop, False
        return self._loop if made else None

    def close(self) -> None:
        try:
            if self._loop is not None and self._made_loop:  # an adopted loop is its maker's to close
                self._loop.close()
        finally:
            self._baseline.close()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            # Imported only by workers that have an async task (at start, see __init__): asyncio adds ~9 MB.
            import asyncio

            # A loop a task module made current at import is adopted: its own tasks (a queue, a
            # producer) live on it. Otherwise a new one, made the thread's current loop so that a
            # sync task's asyncio.get_event_loop() gets a loop on every Python (3.12 warns and
            # 3.14 raises without one), and so that what a call leaves there can be put back.
            loop = current_loop()
            self._made_loop = loop is None or loop.is_closed() or loop.is_running()
            if self._made_loop:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)
            self._loop = loop
        return self._loop

    def _check_event_loop(self, task_name: str) -> None:
        """Put back the worker's event loop if the call closed it, and make it the thread's current loop again.

        A sync task may close it (``loop = asyncio.get_event_loop() ... loop.close()``), or
        leave another loop current, or none (``asyncio.run()`` sets None when it ends): every
        later call that uses it would fail. ~0.3 µs a call, in workers that have loaded asyncio.
        """
        loop = self._loop
        if loop is None:  # asyncio was first imported during this call: from now on, keep a loop
            self._event_loop()
            return
        current = current_loop()  # None after asyncio.run() or set_event_loop(None): put back without a word
        if current is loop and not loop.is_closed():
            return
        import asyncio

        if asyncio._get_running_loop() is not None:  # call_task from async test code: its loop, not ours to change
            return

        if loop.is_closed():
            self._loop = loop = asyncio.new_event_loop()
            self._made_loop = True
            self._baseline.warn_once(task_name, "closed the worker's event loop (a new one replaces it; asyncio tasks left on the old one are lost)")
        elif current is not None:
            self._baseline.warn_once(task_name, "left another asyncio event loop as the thread's current one (asyncio.set_event_loop)")
        asyncio.set_event_loop(loop)

    def _pending_task(self, awaitable: Any) -> Any:
        """The not yet done asyncio Task (or Future) that runs ``awaitable`` on the worker's loop, if any."""
        import asyncio

        if asyncio.isfuture(awaitable):
            return None if awaitable.done() else awaitable
        for pending in asyncio.all_tasks(self._loop):
            if pending.get_coro() is awaitable:
                return pending
        return None

    def _run_past(self, own: asyncio.Future, first: BaseException, task_name: str) -> Any:
        """Run the loop until the call's own task is done, then log each SystemExit/KeyboardInterrupt
        that escaped meanwhile, except the one the call ends with (gather, shield and TaskGroup pass
        a child's on as the same object): those came from tasks that are not the call's. A
        loop.stop() meanwhile (``first`` a RuntimeError) only makes it run the loop again."""
        stopped = isinstance(first, RuntimeError)  # loop.stop(): the loop is run again, nothing escaped
        escaped = [] if stopped else [first]
        while True:
            try:
                self._loop.run_until_complete(own)
            except (SystemExit, KeyboardInterrupt) as exc:
                if not own.done():
                    escaped.append(exc)
                    continue
            except RuntimeError:
                if not own.done():
                    stopped = True
                    continue
                # Done: the call's own RuntimeError, which own.result() below raises.
            break
        if stopped:
            guard.log.warning("task %r: while it ran, an asyncio task called loop.stop(); the loop was run again until the call ended", task_name)
        ends_with = None if own.cancelled() else own.exception()
        for exc in escaped:
            if exc is not ends_with:
                guard.log.error(
                    "task %r: while it ran, a background asyncio task (left running by an earlier call, or started by "
                    "this one and not awaited) raised %s; logged here, it is not this call's failure",
                    task_name, sendable(describe(exc)), exc_info=exc,
                )
        return own.result()  # or raises what the call itself ended with


def _fill_defaults(task_input: Dict[str, Any], defaults: Any) -> None:
    """fill_defaults=True: each missing top-level field gets its schema default, a list or dict
    as a fresh copy (a task that changes it must not change the next call's default)."""
    filled = False
    for field, default in defaults:
        if field not in task_input:
            if isinstance(default, (list, dict)):
                import copy

                default = copy.deepcopy(default)
            task_input[field] = default
            filled = True
    if filled:  # in the order the same fields sent by a client would have (a field named "2" first)
        ordered = in_js_order(task_input)
        if ordered is not task_input:
            task_input.clear()
            task_input.update(ordered)


def _has_work(loop: Any) -> bool:
    """Whether anything waits on the loop: a task not done, or a callback (call_soon, call_later:
    the default loops' lists; a loop without them is judged by its tasks alone)."""
    import asyncio

    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    # Cancelled timers stay in _scheduled until their time comes (or the loop cleans up): not work.
    return bool(ready) or any(not timer.cancelled() for timer in scheduled or ()) or bool(asyncio.all_tasks(loop))


def current_loop() -> Any:
    """The thread's current event loop as set_event_loop left it, or None: never makes one, never warns.

    The default policies (3.10-3.13) keep it in ``_local._loop``: ~0.1 µs to read, where
    asyncio.get_event_loop() takes ~0.3 µs, may make a loop, and warns on 3.12+ when there is none.
    """
    import asyncio

    policy = event_loop_policy(asyncio)
    local = getattr(policy, "_local", None)
    if local is not None and hasattr(local, "_loop"):
        return local._loop
    try:  # another policy (uvloop's, a task's own): its public answer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return policy.get_event_loop()
    except Exception:
        return None


def event_loop_policy(asyncio: Any) -> Any:
    # Python 3.14 deprecates get_event_loop_policy(); its private twin does not warn.
    return getattr(asyncio.events, "_get_event_loop_policy", asyncio.get_event_loop_policy)()
