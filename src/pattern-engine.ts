// The engine of every schema regular expression (`pattern`, `patternProperties`, a
// `propertyNames` pattern), which clients' values are tested against. JavaScript's own
// engine backtracks: with `"pattern": "^(a+)+$"` a value of 30 characters held the event
// loop for 35 s, every other request and /health with it, and a large body the offload
// thread for minutes. So a pattern runs in RE2 (re2js, in JavaScript), whose time is linear
// in the input, spelt so that RE2 reads it as ECMAScript does (JSON Schema's dialect): `\s`
// and `.` by ECMAScript's characters, `\u00e9` as `\x{00e9}`, long Unicode property names
// by their short ones. A pattern RE2 cannot run (a lookaround, a backreference, `\S` in a
// class) runs in JavaScript's engine only if it repeats no group that holds a quantifier
// or an alternation (safe-regex2's star height, and a check of our own), the shapes that
// take exponential time; otherwise the task is refused at start.

import { RE2JS } from 're2js'
import isSafeRegex from 'safe-regex2'

/** ECMAScript's \s (WhiteSpace and LineTerminator), as members of an RE2 class. */
const SPACE = '\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}'
/** ECMAScript's `.` without the s flag: anything but a line terminator (RE2's excludes \n only). */
const DOT = '[^\\n\\r\\x{2028}\\x{2029}]'
/** Long names of Unicode properties RE2 knows only by their short ones. */
const PROPERTY_NAMES: Record<string, string> = {
  Letter: 'L', Cased_Letter: 'LC', Uppercase_Letter: 'Lu', Lowercase_Letter: 'Ll', Titlecase_Letter: 'Lt', Modifier_Letter: 'Lm', Other_Letter: 'Lo',
  Mark: 'M', Number: 'N', Decimal_Number: 'Nd', digit: 'Nd', Letter_Number: 'Nl', Other_Number: 'No', Punctuation: 'P', punct: 'P',
  Symbol: 'S', Math_Symbol: 'Sm', Currency_Symbol: 'Sc', Separator: 'Z', Space_Separator: 'Zs', Other: 'C', Control: 'Cc', cntrl: 'Cc'
}

interface Reading {
  /** The pattern in RE2's syntax, or undefined where it has no spelling there. */
  re2: string | undefined
  /** A quantifier follows a group that holds an alternation: `(\w|\d)*`. */
  repeatsAlternation: boolean
}

/** Reads an ECMAScript pattern (one `new RegExp(pattern, 'u')` has taken) once, character by character. */
function read (pattern: string): Reading {
  let out = ''
  let spelt = true
  let inClass = false
  const alternations: boolean[] = [] // per open group: whether it holds a '|'
  let repeatsAlternation = false
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '\\') {
      const next = pattern[i + 1] ?? ''
      const rest = pattern.slice(i + 2)
      const code = next === 'u' ? /^\{([0-9A-Fa-f]{1,6})\}|^([0-9A-Fa-f]{4})/.exec(rest) : null
      const property = next === 'p' || next === 'P' ? /^\{([^}]*)\}/.exec(rest) : null
      if (code !== null) {
        // Two escapes of a surrogate pair are one code point in ECMAScript's u mode (`\uD83D\uDE00`
        // is 😀); each alone, RE2 read two characters that no string holds.
        const pair = code[2] !== undefined && /^[dD][89abAB]/.test(code[2]) ? /^\\u([dD][c-fC-F][0-9A-Fa-f]{2})/.exec(rest.slice(code[0].length)) : null
        const point = pair === null ? code[1] ?? code[2] : (0x10000 + ((parseInt(code[2], 16) - 0xd800) << 10) + parseInt(pair[1], 16) - 0xdc00).toString(16)
        out += `\\x{${point}}`
        i += 1 + code[0].length + (pair?.[0].length ?? 0)
      } else if (property !== null) {
        const [key, value] = property[1].split('=')
        const name = value === undefined ? (PROPERTY_NAMES[key] ?? key) : (key === 'Script' || key === 'sc' ? value : undefined)
        if (name === undefined) spelt = false // Script_Extensions and the like: RE2 has no such names
        else out += `\\${next}{${name}}`
        i += 1 + property[0].length
      } else if (next === 's') {
        out += inClass ? SPACE : `[${SPACE}]`
        i++
      } else if (next === 'S') {
        if (inClass) spelt = false // the complement of a class inside a class: no RE2 spelling
        else out += `[^${SPACE}]`
        i++
      } else {
        out += c + next
        i++
      }
      continue
    }
    if (inClass) {
      if (c === ']') inClass = false
      out += c
      continue
    }
    if (c === '[') {
      inClass = true
      const negated = pattern[i + 1] === '^'
      // [] and [^], which RE2 does not take.
      if (pattern[i + (negated ? 2 : 1)] === ']') spelt = false
      out += negated ? '[^' : '['
      if (negated) i++
      continue
    }
    if (c === '.') {
      out += DOT
      continue
    }
    if (c === '(') alternations.push(false)
    else if (c === '|' && alternations.length > 0) alternations[alternations.length - 1] = true
    else if (c === ')' && (alternations.pop() ?? false) && /^[*+?{]/.test(pattern.slice(i + 1))) repeatsAlternation = true
    out += c
  }
  return { re2: spelt ? out : undefined, repeatsAlternation }
}

/** Ajv's `code.regExp`: a tester for one pattern (Ajv passes the 'u' flag). */
export function patternEngine (pattern: string, flags: string): { test: (text: string) => boolean, toString: () => string } {
  // What ECMAScript does not take (`(?i)`, `\Q...\E`) is refused as before, though RE2 would take it.
  const native = new RegExp(pattern, flags)
  const { re2, repeatsAlternation } = read(pattern)
  let why = 'it has no spelling RE2 reads as ECMAScript does'
  if (re2 !== undefined) {
    try {
      const compiled = RE2JS.compile(re2)
      // toString as a RegExp's: Ajv keeps one tester per distinct string, so without it every pattern was the first one.
      return { test: (text) => compiled.matcher(text).find(), toString: () => `/${pattern}/${flags}` }
    } catch (error) {
      why = `RE2 does not take it: ${(error as Error).message}`
    }
  }
  const risk = repeatsAlternation ? REPEATED_GROUP : backtrackingRisk(pattern)
  if (risk === undefined) return native
  throw new Error(`pattern ${JSON.stringify(pattern)} cannot be run in linear time (${why}), and ${risk}; rewrite it`)
}

const REPEATED_GROUP = 'it repeats a group that holds a quantifier or an alternation, which JavaScript\'s engine can take exponential time over on a crafted input'
/** safe-regex2's default: past this many quantifiers, a pattern is refused (a*a*a*...: polynomial time of a high degree). */
const MAX_QUANTIFIERS = 25

/** Why JavaScript's engine may take too long over a pattern, by safe-regex2's judgement, or undefined. */
function backtrackingRisk (pattern: string): string | undefined {
  // safe-regex2's parser does not read a lookbehind, (?<= or (?<!, and called every pattern
  // with one unsafe: judged as the lookahead of the same shape, which it reads.
  const shape = pattern.replace(/\(\?<([=!])/g, '(?$1')
  if (isSafeRegex(shape)) return undefined
  if (!isSafeRegex(shape, { limit: Infinity })) return REPEATED_GROUP
  return `it has more than ${MAX_QUANTIFIERS} quantifiers, over which JavaScript's engine can backtrack for a long time on a crafted input`
}
// Ajv names the engine by this in code it writes out (standalone validators, which pyfleet does not use).
patternEngine.code = 'patternEngine'
