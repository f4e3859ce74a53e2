// Which methods the routes answer at a path, for the 405 of a method a path
// does not have (PUT /api/tasks/echo): RFC 9110 §15.5.6 has the server say so
// and list the methods in `Allow`, where a 404 would tell the client that the
// path itself is wrong. Fastify's hasRoute() takes a route's template, not a
// request's path, so the templates are kept here as routes are added.

/** A route's path template, split in segments: `:name` matches any one segment. */
interface Template {
  readonly segments: readonly string[]
  readonly methods: Set<string>
}

/** Fastify's order in the Allow line would be the routes' order; this one reads the same everywhere. */
const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

export class RouteMethods {
  readonly #templates = new Map<string, Template>()

  /** Records a route (Fastify's onRoute hook gives each, HEAD routes Fastify adds included). */
  add (url: string, method: string | readonly string[]): void {
    let template = this.#templates.get(url)
    if (template === undefined) {
      template = { segments: url.split('/'), methods: new Set() }
      this.#templates.set(url, template)
    }
    for (const one of typeof method === 'string' ? [method] : method) template.methods.add(one.toUpperCase())
  }

  /** The methods some route answers at this path (percent-encoded, no query), in a fixed order; empty when none has it. */
  at (path: string): string[] {
    const segments = path.split('/')
    const methods = new Set<string>()
    for (const template of this.#templates.values()) {
      if (matches(template.segments, segments)) for (const method of template.methods) methods.add(method)
    }
    return [...methods].sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1))
  }
}

function matches (template: readonly string[], segments: readonly string[]): boolean {
  if (template.length !== segments.length) return false
  return template.every((part, i) => part.startsWith(':') ? segments[i] !== '' : part === segments[i])
}

function rank (method: string): number {
  const at = METHOD_ORDER.indexOf(method)
  return at === -1 ? METHOD_ORDER.length : at
}
