// Which `$ref`s of a schema a check counts as steps (schema-cost.ts): those that lead back to
// themselves, through the references inside their targets; or, in a schema without such a
// cycle, all of them when one can be reached along more than MAX_PATHS paths.

import { pointerSegment, segmentName } from './json-pointer.js'
import { DATA_KEYWORDS, walkSchemas } from './schema-walk.js'

/** A `$ref` that can be reached along more paths than this (in a schema without cycles) makes the schema counted. */
export const MAX_PATHS = 1000

/** A `$ref` in a schema: where it is, and the pointer it leads to (undefined: not a local JSON Pointer). */
interface Reference { at: string, to: string | undefined }

/**
 * Every `$ref` in `schema`; the places of its definitions (`definitions`, `$defs`), whose
 * schemas apply only where a reference leads; and whether it names an `$id` anywhere
 * (then references may resolve by it).
 */
function referencesOf (schema: unknown): { references: Reference[], definitions: string[], ids: boolean } {
  const references: Reference[] = []
  const definitions: string[] = []
  let ids = false
  walkSchemas(schema, (sub, at) => {
    if (Object.hasOwn(sub, '$id')) ids = true
    if (typeof sub.$ref === 'string') references.push({ at, to: localPointer(sub.$ref) })
    for (const keyword of ['definitions', '$defs']) if (isObject(sub[keyword])) definitions.push(`${at}/${keyword}/`)
  })
  return { references, definitions, ids }
}

function isObject (value: unknown): boolean {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/**
 * A reference's target as walkSchemas writes places, or undefined for one that is no local
 * JSON Pointer. As Ajv reads it: split at each `/`, then each segment percent-decoded and
 * unescaped (`#/definitions/a%2Fb` is the definition named "a/b").
 */
function localPointer (ref: string): string | undefined {
  if (ref !== '#' && !ref.startsWith('#/')) return undefined
  try {
    return ref.slice(1).split('/').map((segment, index) => index === 0 ? segment : pointerSegment(segmentName(decodeURIComponent(segment)))).join('/')
  } catch {
    return undefined
  }
}

/**
 * Refuses a `$ref` that leads into a data keyword's value (`#/definitions/d/default`): Ajv
 * compiles what it finds there as a schema, but the `$ref`s inside it are data to every
 * walk of the schema here, so a cycle among them goes uncounted (a `default` holding a
 * schema that refers twice to itself: a 130-byte body held the event loop for 16.9 s).
 * Such a schema belongs in `definitions` or `$defs`.
 */
export function refuseReferencesIntoData (schema: unknown): void {
  const places = new Set<string>()
  walkSchemas(schema, (_sub, at) => { places.add(at) })
  for (const { at, to } of referencesOf(schema).references) {
    if (to === undefined || places.has(to)) continue
    // Each place on the way to the target (its segments are escaped: a `/` splits only places).
    const segments = to.split('/')
    for (let i = 1; i < segments.length; i++) {
      const keyword = segments[i]
      if (!DATA_KEYWORDS.has(keyword) || !places.has(segments.slice(0, i).join('/'))) continue
      throw new Error(`the "$ref" at ${at === '' ? 'its root' : at} leads into "${keyword}" (#${to}), whose value is data, not a schema: pyfleet cannot bound the cost of checking against it; move that schema into "definitions" or "$defs" and refer to it there`)
    }
  }
}

/**
 * The places of the `$ref`s to count: those that can lead back to themselves (entering
 * one's target may reach, through references inside the target and theirs, the same
 * `$ref` again). Every `$ref` is counted with an `$id` anywhere, with a reference that is
 * no local JSON Pointer, and when one of them can be reached along more than MAX_PATHS
 * paths (a chain of definitions each referring twice to the next): `manyPaths` then, for
 * the words of a check that runs out (the schema's shape is the cause, not the value's depth).
 */
export function referencesToCount (schema: unknown): { all: number, counted: Set<string>, manyPaths: boolean } {
  const { references, definitions, ids } = referencesOf(schema)
  const everyOne = { all: references.length, counted: new Set(references.map((r) => r.at)), manyPaths: false }
  if (ids || references.some((r) => r.to === undefined)) return everyOne
  const inside = (place: string, target: string): boolean => target === '' || place === target || place.startsWith(`${target}/`)
  // The references each one's target holds, by index.
  const next = references.map((from) => references.flatMap((r, index) => inside(r.at, from.to as string) ? [index] : []))
  const recursive = recursiveOnes(references, next)
  const entry = references.map((r) => !definitions.some((place) => r.at.startsWith(place)))
  // Every cycle runs through references that reach themselves: without the edges into those,
  // the rest is acyclic, and may still multiply paths (a chain of anyOf's of two references
  // each) past MAX_PATHS: a cycle elsewhere in the schema made those go uncounted (a 2^24-path
  // chain beside one `{"$ref": "#"}` ran a check out of memory).
  const acyclic = recursive.size === 0 ? next : next.map((targets) => targets.filter((index) => !recursive.has(references[index].at)))
  if (mostPaths(acyclic, entry) > MAX_PATHS) return { ...everyOne, manyPaths: true }
  return { all: references.length, counted: recursive, manyPaths: false }
}

/** The places of the references that can reach themselves again. */
function recursiveOnes (references: Reference[], next: number[][]): Set<string> {
  const recursive = new Set<string>()
  references.forEach((start, first) => {
    const seen = new Set<number>()
    const stack = [...next[first]]
    while (stack.length > 0) {
      const index = stack.pop() as number
      if (index === first) {
        recursive.add(start.at)
        return
      }
      if (seen.has(index)) continue
      seen.add(index)
      stack.push(...next[index])
    }
  })
  return recursive
}

/**
 * Along references without cycles, the most paths along which one reference can be reached:
 * once from the schema itself unless it is in a definition, and once more for each path to
 * each reference whose target holds it. Counted up to MAX_PATHS + 1.
 */
function mostPaths (next: number[][], entry: boolean[]): number {
  const into: number[][] = next.map(() => [])
  next.forEach((targets, from) => { for (const to of targets) into[to].push(from) })
  const paths = new Map<number, number>()
  const pathsTo = (index: number): number => {
    let count = paths.get(index)
    if (count === undefined) {
      count = entry[index] ? 1 : 0
      for (const from of into[index]) count = Math.min(count + pathsTo(from), MAX_PATHS + 1)
      paths.set(index, count)
    }
    return count
  }
  return Math.max(0, ...next.map((_, index) => pathsTo(index)))
}
