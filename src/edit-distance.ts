// How far apart two names are, for "did you mean" hints (a misspelt setting, an unknown task).

/** Edits (insert, delete, substitute) from a to b, or more than `limit` once it is clearly more. */
export function distance (a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]
}

/**
 * ` (did you mean "echo"?)` for a name that is one of `known` but for case or up to two
 * edits (up to three such names); '' if none is that close.
 */
export function didYouMean (name: string, known: Iterable<string>): string {
  const near = [...known].filter((candidate) => candidate.toLowerCase() === name.toLowerCase() || distance(name, candidate, 2) <= 2)
  return near.length === 0 ? '' : ` (did you mean ${near.slice(0, 3).map((candidate) => JSON.stringify(candidate)).join(' or ')}?)`
}
