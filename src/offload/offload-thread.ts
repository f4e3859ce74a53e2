// The offload thread's entry point (a worker_threads Worker started by job-thread.ts):
// runs each job it is sent (jobs.ts), one at a time, in the order sent, and posts
// the outcome back, moving its bytes rather than copying them.

import { parentPort } from 'node:worker_threads'
import { ownBytes, type Job, type JobOutcome } from './jobs.js'
import { JobExecutor } from './job-executor.js'

/**
 * A job one way; back, that it has started (a new thread has loaded its modules by then:
 * its time limit counts from here), then its outcome (or the message of the bug that stopped it).
 */
export interface JobMessage { id: number, job: Job }
export interface StartedMessage { id: number, started: true }
export interface OutcomeMessage { id: number, outcome?: JobOutcome, failed?: string }

const executor = new JobExecutor()

const port = parentPort
if (port === null) throw new Error('offload-thread.js runs as a Node worker_threads thread (offloader.ts starts it)')
port.on('message', ({ id, job }: JobMessage) => {
  port.postMessage({ id, started: true } satisfies StartedMessage)
  let outcome: JobOutcome
  try {
    outcome = executor.run(job)
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
