// The offload thread's entry point (a worker_threads Worker started by job-thread.ts):
// runs each job it is sent (jobs.ts), one at a time, in the order sent, and posts
// the outcome back, moving its bytes rather than copying them.

import { parentPort } from 'node:worker_threads'
import type { ValidateFunction } from 'ajv'
import { compileBodyValidator, compileRawValidator, compileResultValidator } from '../schema-compile.js'
import { ownBytes, prepareAnswer, prepareInput, type AnswerJob, type InputJob, type Job, type JobOutcome } from './jobs.js'

/**
 * A job one way; back, that it has started (a new thread has loaded its modules by then:
 * its time limit counts from here), then its outcome (or the message of the bug that stopped it).
 */
export interface JobMessage { id: number, job: Job }
export interface StartedMessage { id: number, started: true }
export interface OutcomeMessage { id: number, outcome?: JobOutcome, failed?: string }

/**
 * Compiled validators by their schema's JSON. Bounded: each reload may bring new
 * schemas, and this thread may serve for as long as large bodies keep coming. Ajv instances are not shared
 * between schemas, for the reason task-registry.ts gives ($id clashes).
 */
const validators = new Map<string, ValidateFunction>()
const MAX_VALIDATORS = 256

/** The validator for an input job: a raw text body's coerces its query options, as the table's validateRaw does. */
function validatorFor (job: InputJob): ValidateFunction {
  const coercing = job.kind === 'text'
  return cached(coercing ? `raw ${job.schemaKey}` : job.schemaKey, () => coercing ? compileRawValidator(job.schema) : compileBodyValidator(job.schema))
}

/** The validator of an answer job's result (VALIDATE_RESULTS), or undefined when it is not checked. */
function resultValidatorFor (job: AnswerJob): ValidateFunction | undefined {
  const { result } = job
  return result === undefined ? undefined : cached(`result ${result.schemaKey}`, () => compileResultValidator(result.schema))
}

function cached (key: string, compile: () => ValidateFunction): ValidateFunction {
  let validate = validators.get(key)
  if (validate === undefined) {
    if (validators.size >= MAX_VALIDATORS) validators.clear()
    validate = compile()
    validators.set(key, validate)
  }
  return validate
}

function run (job: Job): JobOutcome {
  return job.op === 'input' ? prepareInput(job, validatorFor(job)) : prepareAnswer(job, resultValidatorFor(job))
}

const port = parentPort
if (port === null) throw new Error('offload-thread.js runs as a Node worker_threads thread (offloader.ts starts it)')
port.on('message', ({ id, job }: JobMessage) => {
  port.postMessage({ id, started: true } satisfies StartedMessage)
  let outcome: JobOutcome
  try {
    outcome = run(job)
  } catch (error) {
    port.postMessage({ id, failed: (error as Error).stack ?? String(error) } satisfies OutcomeMessage)
    return
  }
  if (outcome.t === 'input' || outcome.t === 'answer') {
    const bytes = ownBytes(outcome.bytes)
    port.postMessage({ id, outcome: { ...outcome, bytes } } satisfies OutcomeMessage, [bytes.buffer as ArrayBuffer])
    return
  }
  port.postMessage({ id, outcome } satisfies OutcomeMessage)
})
