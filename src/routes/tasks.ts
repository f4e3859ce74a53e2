// The task API: list tasks, describe one, run one. Thin: input comes from
// body.ts, running is the pool's job, writing the value is replies.ts's.

import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isExpectedRefusal, TaskNotFoundError, WorkersUnavailableError } from '../errors.js'
import { budgetMs, budgetOrNaN } from './budget.js'
import { OffloadCancelledError, refusedOutcome, type RefusedAs } from '../offload/offload-errors.js'
import type { OffloadedInput } from '../offload/offloader.js'
import type { Task, TaskRegistry } from '../task-registry.js'
import type { Call } from '../pool/worker-pool.js'
import { addBodyParsers, bodyBytes, encodingProblem, inputFor, mediaTypeProblem, refusedBeforeContinue } from './body.js'
import { sendValue, wantsMsgpack } from './replies.js'
import { serverTiming } from './timing.js'
import { recordAbandoned } from '../abandoned.js'
import { closingConnectionError } from '../connection-reuse.js'
import { expectsContinue, transferCodingProblem } from '../unusual-requests.js'
import { keptPerTable } from './per-table.js'
import { CostlyBodyWarnings } from './costly-bodies.js'
import { noteExpected } from '../request-log.js'
import { traceContextOf } from '../trace-context.js'


interface NameParams { name: string }

function taskNotFound (tasks: TaskRegistry, name: string): Error {
  return new TaskNotFoundError(`${JSON.stringify(name.slice(0, 100))}${tasks.missingTaskHint(name)}`)
}

/** The cancellations of the calls a connection has queued, run when it closes (see clientGone). */
const kQueuedCalls = Symbol('pyfleet.queuedCalls')
type WatchedSocket = Socket & { [kQueuedCalls]?: Set<() => void> }

/**
 * Subscribes to the client's connection closing while the call is queued. The
 * socket, not the response: a response waiting behind another one on a
 * pipelining connection gets no 'close' of its own when the client leaves, and
 * the one being answered closes with its socket. One 'close' listener per
 * connection, for all its queued calls: adding and removing two listeners per
 * call (the response's and the socket's) showed in the CPU profile of echo.
 */
function clientGone (request: FastifyRequest, reply: FastifyReply): (cancel: () => void) => () => void {
  return (cancel) => {
    const response = reply.raw
    const socket = request.raw.socket as WatchedSocket
    const onClose = (): void => { if (!response.writableFinished) cancel() }
    // Gone before the call queued: no close event will come any more.
    if (socket.destroyed) { queueMicrotask(onClose); return () => {} }
    const queued = queuedCallsOf(socket)
    queued.add(onClose)
    return () => { queued.delete(onClose) }
  }
}

/**
 * The set of a connection's queued calls, and its one 'close' listener, made with the
 * connection's first queued call. In a function of its own: a listener made inside
 * clientGone's closure would share that closure's scope, and so keep the first call's
 * response and cancel (its request, its input) alive as long as the connection (17 MB
 * more at 1,000 keep-alive connections in the benchmark).
 */
function queuedCallsOf (socket: WatchedSocket): Set<() => void> {
  const existing = socket[kQueuedCalls]
  if (existing !== undefined) return existing
  const calls = new Set<() => void>()
  socket[kQueuedCalls] = calls
  // Each cancellation takes itself out of the set (its unsubscribe): deleting while iterating is safe.
  socket.once('close', () => { for (const cancelCall of calls) cancelCall() })
  return calls
}

/** A request that never became a call (its body was refused, or dropped unparsed): logged as abandoned with no outcome. */
function notACall (task: Task, request: FastifyRequest): Call {
  return { task, input: undefined, requestId: request.id, queueMs: 0, runMs: 0, outcome: undefined }
}

/** A large body the offloader refused (refusedOutcome), as the call it would have been: counted and logged as one the pool refuses. */
function refusedCall (task: Task, request: FastifyRequest, refused: RefusedAs): Call {
  const budget = budgetOrNaN(request)
  return {
    ...notACall(task, request),
    outcome: refused.outcome,
    limit: refused.limit,
    waitedMs: refused.waitedMs,
    // A header that is no budget is left out: the line reports the budget that ran out, if one did.
    budgetMs: Number.isNaN(budget) ? undefined : budget
  }
}

export default async function taskRoutes (fastify: FastifyInstance): Promise<void> {
  addBodyParsers(fastify)
  const costlyBodies = new CostlyBodyWarnings()

  const list = keptPerTable(fastify, () => ({ tasks: fastify.tasks.list() }))
  fastify.get('/api/tasks', async (request, reply) => await reply.type('application/json; charset=utf-8').send(list()))

  fastify.get<{ Params: NameParams }>('/api/tasks/:name', async (request) => {
    const task = fastify.tasks.get(request.params.name)
    if (task === undefined) throw taskNotFound(fastify.tasks, request.params.name)
    return fastify.tasks.describe(task)
  })

  fastify.post<{ Params: NameParams }>('/api/tasks/:name', {
    // Before the body is read: a wrong name or a compressed body is answered without
    // reading (or, with Expect: 100-continue, the client sending) up to BODY_LIMIT_BYTES.
    preParsing: (request, reply, payload, done) => {
      const task = fastify.tasks.get(request.params.name)
      if (task === undefined) { done(taskNotFound(fastify.tasks, request.params.name), payload); return }
      const coded = transferCodingProblem(request)
      if (coded !== undefined) { done(coded, payload); return }
      const encoded = encodingProblem(request)
      // RFC 9110 §15.5.16: a 415 for a content coding says which codings would do.
      if (encoded !== undefined) {
        reply.header('accept-encoding', 'identity')
        done(encoded, payload)
        return
      }
      const typed = mediaTypeProblem(task, request)
      if (typed !== undefined) { done(typed, payload); return }
      const early = expectsContinue(request) ? refusedBeforeContinue(task, request) : undefined
      if (early !== undefined) { done(early, payload); return }
      // Last: only a body that will be read counts against RECEIVE_LIMIT_BYTES.
      try {
        done(undefined, fastify.receiving.enter(request, reply, payload))
      } catch (error) {
        done(error as Error, payload)
      }
    }
  }, async (request, reply) => {
    // Looked up again: a reload may have removed the task while the body arrived.
    const task = fastify.tasks.get(request.params.name)
    if (task === undefined) throw taskNotFound(fastify.tasks, request.params.name)
    // Checked again here: a request parsed while the one before it was being answered may have passed onRequest first.
    const closing = closingConnectionError(request)
    if (closing !== undefined) throw closing
    const onClientGone = clientGone(request, reply)
    let call: Call | undefined
    let value
    try {
      // A promise only for a large body, parsed on the offload thread: small ones stay synchronous.
      const prepared = inputFor(task, request, onClientGone)
      const ready = prepared instanceof Promise ? await prepared : prepared
      const { input, holdsWideNumbers } = ready
      call = {
        task,
        input,
        holdsWideNumbers,
        requestId: request.id,
        trace: traceContextOf(request.headers),
        inputBytes: bodyBytes(request),
        // Checked after the body: a body's own error comes first, as it always has.
        budgetMs: budgetMs(request),
        waitedMs: prepared instanceof Promise ? (ready as OffloadedInput).waitedMs : 0,
        onClientGone,
        wantsMsgpack: wantsMsgpack(request),
        queueMs: 0,
        runMs: 0,
        // Present from the start, so the object keeps one shape (V8 migrates it otherwise).
        outcome: undefined,
        limit: undefined,
        resultMsgpack: undefined
      }
      request.pyfleetCall = call
      // Gone while its large body was parsed: cancelled, as a call whose client leaves while it is queued.
      value = await (prepared instanceof Promise && request.raw.socket.destroyed ? fastify.pool.cancel(call) : fastify.pool.run(call))
    } catch (error) {
      // A client that left while its large body waited for the thread: dropped unparsed, so never
      // a call (SPEC §6), and logged as a client leaving is (info), not as the 503 nobody reads.
      const unparsed = error instanceof OffloadCancelledError
      // A large body refused by the offloader before it became a call (the server drains, or its
      // wait for the thread ran out): counted as the pool counts a call refused the same way.
      if (call === undefined) costlyBodies.note(task.name, error, request.log)
      const refused = call === undefined ? refusedOutcome(error) : undefined
      if (refused !== undefined) {
        const asCall = refusedCall(task, request, refused)
        // Its line says what the line of a call the pool refuses says: task, outcome, budget, wait.
        request.pyfleetCall = asCall
        fastify.metrics.callRefused(asCall, refused.outcome)
      }
      // Whatever ended it (a refused body, the pool), an answer nobody will read: logged and counted as abandoned.
      if (request.raw.socket.destroyed) recordAbandoned(request, reply, call ?? notACall(task, request), unparsed ? undefined : error)
      // Refused at the door because the server stops (SIGTERM): every rollout's, at info. A call
      // admitted before and refused when the grace ran out, or a crash loop's 503, stays a warning.
      if (isExpectedRefusal(error)) noteExpected(reply)
      throw unparsed ? new WorkersUnavailableError('the client went away while its body waited to be parsed') : error
    }
    if (request.raw.socket.destroyed) recordAbandoned(request, reply, call)
    reply.header('server-timing', serverTiming(call))
    return sendValue(reply, value, call.wantsMsgpack === true, call.resultMsgpack)
  })
}
