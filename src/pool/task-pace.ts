// How fast each task's calls have been lately, at the low end: a floor that falls at once to
// any faster call and rises slowly after slower ones (a twentieth of the way per call).
//
// Admission reads it to leave unstarted a queued call whose client's budget
// (x-request-timeout-ms) has less time left than the task's fastest recent calls took. Run,
// such a call is answered 504 by its budget before its worker is done, and holds the worker
// meanwhile from calls that could still finish: under overload (2-3 times a 200 ms task's
// capacity, budgets of 0.5-1.5 s), a review measured 94-96 % of the workers' time going to
// calls whose answer nobody got. The floor is a low estimate on purpose: a call is only
// refused when even the fastest recent call would not have fitted.

/** How far a slower call lifts the floor towards its own time. */
const RISE = 0.05

export class TaskPaces {
  readonly #floors = new Map<string, number>()

  /** A call of `task` held its worker `ms`. */
  record (task: string, ms: number): void {
    const floor = this.#floors.get(task)
    this.#floors.set(task, floor === undefined || ms < floor ? ms : floor + (ms - floor) * RISE)
  }

  /** About the least time the task's recent calls took, in ms; 0 before any has run. */
  floorMs (task: string): number {
    return this.#floors.get(task) ?? 0
  }
}
