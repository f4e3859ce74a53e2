// The jobs waiting for the offload thread, and which of them goes next (job-runner.ts).

/**
 * Answers go before bodies (each holds a worker until it is written), but after this
 * many in a row a waiting body goes: answers keep coming while every worker has a large
 * one, and a body must not wait for ever.
 */
export const MAX_ANSWERS_IN_A_ROW = 4

/** Answers and bodies in two lines, each in arrival order. */
export class JobQueue<T extends { readonly job: { readonly op: 'input' | 'answer' } }> {
  readonly #answers: T[] = []
  readonly #inputs: T[] = []
  #answersInARow = 0

  get size (): number { return this.#answers.length + this.#inputs.length }

  push (item: T): void {
    this.#lineOf(item).push(item)
  }

  /** The next job: answers first, but a waiting body after MAX_ANSWERS_IN_A_ROW of them. */
  next (): T | undefined {
    if (this.#inputs.length > 0 && (this.#answers.length === 0 || this.#answersInARow >= MAX_ANSWERS_IN_A_ROW)) {
      this.#answersInARow = 0
      return this.#inputs.shift()
    }
    const answer = this.#answers.shift()
    if (answer !== undefined) this.#answersInARow++
    return answer
  }

  /** Takes `item` out if it still waits; false if it does not (it runs, or has ended). */
  remove (item: T): boolean {
    const line = this.#lineOf(item)
    const at = line.indexOf(item)
    if (at === -1) return false
    line.splice(at, 1)
    return true
  }

  /** The bodies waiting, in order (a copy: removing them while walking it is safe). */
  inputs (): T[] {
    return [...this.#inputs]
  }

  /** Takes every waiting job out, answers first. */
  clear (): T[] {
    return [...this.#answers.splice(0), ...this.#inputs.splice(0)]
  }

  #lineOf (item: T): T[] {
    return item.job.op === 'input' ? this.#inputs : this.#answers
  }
}
