// The callers waiting for a worker, in arrival order. A doubly linked list, so
// that a caller who gives up (timeout, client gone) leaves in O(1), and the
// dispatcher can skip callers whose task is at its concurrency limit.

export interface Waiting<T> {
  readonly item: T
  prev: Waiting<T> | null
  next: Waiting<T> | null
  /** False once taken or removed: a late timer or abort must then do nothing. */
  queued: boolean
}

export class WaitQueue<T> {
  #head: Waiting<T> | null = null
  #tail: Waiting<T> | null = null
  #size = 0

  get size (): number { return this.#size }

  push (item: T): Waiting<T> {
    const entry: Waiting<T> = { item, prev: this.#tail, next: null, queued: true }
    if (this.#tail === null) this.#head = entry
    else this.#tail.next = entry
    this.#tail = entry
    this.#size++
    return entry
  }

  /** Puts an item back at the front (a call that was taken but could not be started). */
  unshift (item: T): Waiting<T> {
    const entry: Waiting<T> = { item, prev: null, next: this.#head, queued: true }
    if (this.#head === null) this.#tail = entry
    else this.#head.prev = entry
    this.#head = entry
    this.#size++
    return entry
  }

  /** Removes an entry; returns false if it had already left the queue. */
  remove (entry: Waiting<T>): boolean {
    if (!entry.queued) return false
    entry.queued = false
    if (entry.prev === null) this.#head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === null) this.#tail = entry.prev
    else entry.next.prev = entry.prev
    entry.prev = entry.next = null
    this.#size--
    return true
  }

  /** Whether any item queued passes `test`. */
  some (test: (item: T) => boolean): boolean {
    for (let entry = this.#head; entry !== null; entry = entry.next) if (test(entry.item)) return true
    return false
  }

  /** Removes and returns the oldest item that `canStart` accepts, skipping the others. */
  takeFirst (canStart: (item: T) => boolean): T | undefined {
    for (let entry = this.#head; entry !== null; entry = entry.next) {
      if (canStart(entry.item)) {
        this.remove(entry)
        return entry.item
      }
    }
    return undefined
  }

  /** Removes and returns every item (shutdown). */
  takeAll (): T[] {
    const items: T[] = []
    for (let entry = this.#head; entry !== null; entry = entry.next) items.push(entry.item)
    for (const _ of items) this.remove(this.#head as Waiting<T>)
    return items
  }
}
