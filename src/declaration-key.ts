// A task declaration as a key for comparing what workers declare: its JSON, with the lists
// whose order JSON Schema ignores (`enum`, `required`, `type`) sorted. A schema built from a
// Python set (`"enum": list(COLORS)`) lists it in another order in each worker, str hashes
// being salted per process: compared as written, every worker after the first looked like
// task code changed on disk (a warning, and pyfleet_workers_unlike_task_table at 1 for good).

/** Keys whose arrays of plain values are sets to JSON Schema. */
const UNORDERED = new Set(['enum', 'required', 'type'])

function isPlain (value: unknown): boolean {
  return value === null || typeof value !== 'object'
}

function byJson (a: unknown, b: unknown): number {
  const x = JSON.stringify(a)
  const y = JSON.stringify(b)
  return x < y ? -1 : x > y ? 1 : 0
}

/** `value` as JSON, each `enum`, `required` and `type` list of plain values in one order. */
export function declarationKey (value: unknown): string {
  return JSON.stringify(value, (key, item: unknown) => UNORDERED.has(key) && Array.isArray(item) && item.every(isPlain) ? [...item].sort(byJson) : item)
}
