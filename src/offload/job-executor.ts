// One job run to its outcome (jobs.ts), with the task's validators compiled once per
// schema: on the offload thread (offload-thread.ts) and, when no thread can be started,
// on the event loop (job-runner.ts), so that both give the same answers.

import type { ValidateFunction } from 'ajv'
import { compileBodyValidator, compileRawValidator, compileResultValidator } from '../schema-compile.js'
import { prepareAnswer, prepareInput, type AnswerJob, type InputJob, type Job, type JobOutcome } from './jobs.js'

/**
 * Runs jobs, keeping compiled validators by their schema's JSON. Bounded: each reload may bring new
 * schemas, and a thread may serve for as long as large bodies keep coming. Ajv instances are not shared
 * between schemas, for the reason task-registry.ts gives ($id clashes).
 */
export class JobExecutor {
  /** How many validators are kept before the cache starts again. */
  static readonly MAX_VALIDATORS = 256
  readonly #validators = new Map<string, ValidateFunction>()

  /** Runs a job; throws only on a bug. */
  run (job: Job): JobOutcome {
    return job.op === 'input' ? prepareInput(job, this.#forInput(job)) : prepareAnswer(job, this.#forResult(job))
  }

  /** The validator for an input job: a raw text body's coerces its query options, as the table's validateRaw does. */
  #forInput (job: InputJob): ValidateFunction {
    const coercing = job.kind === 'text'
    return this.#cached(coercing ? `raw ${job.schemaKey}` : job.schemaKey, () => coercing ? compileRawValidator(job.schema) : compileBodyValidator(job.schema))
  }

  /** The validator of an answer job's result (VALIDATE_RESULTS), or undefined when it is not checked. */
  #forResult (job: AnswerJob): ValidateFunction | undefined {
    const { result } = job
    return result === undefined ? undefined : this.#cached(`result ${result.schemaKey}`, () => compileResultValidator(result.schema))
  }

  #cached (key: string, compile: () => ValidateFunction): ValidateFunction {
    let validate = this.#validators.get(key)
    if (validate === undefined) {
      if (this.#validators.size >= JobExecutor.MAX_VALIDATORS) this.#validators.clear()
      validate = compile()
      this.#validators.set(key, validate)
    }
    return validate
  }
}
