// The README's picture: echo (100-byte JSON) at 50, 200 and 1,000
// connections, req/s on the left and p99 latency on the right, one series per
// design, medians with min–max whiskers, both on log scales (spawn and bare
// are three orders of magnitude apart). Plain SVG, no dependencies.

import { DESIGN_ORDER } from './designs.mjs'
import { metric } from './report.mjs'

const SCENARIO = 'echo-100B'
const COLORS = { pyfleet: '#1f5fbf', 'pyfleet-base': '#8fb3e8', proto: '#7b3fa0', bare: '#6b6b6b', pipe: '#2a9d3a', spawn: '#c62828', gunicorn: '#e07b00' }
const LABELS = { pyfleet: 'pyfleet', 'pyfleet-base': 'pyfleet (baseline dir)', proto: 'proto: same design, no features', bare: 'bare Fastify (HTTP ceiling)', pipe: 'pipe, no HTTP (IPC ceiling)', spawn: 'spawn per request (50 connections only)', gunicorn: 'gunicorn + Flask, 4 sync' }

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

function fmtTick (v) {
  if (v >= 1000) return `${v / 1000}k`
  return String(v)
}

/** Decades covering [lo, hi], and the 2 and 5 in between as minor ticks. */
function logTicks (lo, hi) {
  const major = []
  const minor = []
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const d = 10 ** e
    major.push(d)
    minor.push(2 * d, 5 * d)
  }
  return { major, minor }
}

function panel ({ x0, y0, w, h, title, unit, series, connections, pick }) {
  const values = series.flatMap((s) => s.points.flatMap((p) => [p.stat.min, p.stat.max]))
  if (values.length === 0) return ''
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)))
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)))
  const y = (v) => y0 + h - (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * h
  const x = (i) => x0 + (i + 0.5) * w / connections.length
  const parts = []
  parts.push(`<text x="${x0 + w / 2}" y="${y0 - 14}" class="title">${esc(title)}</text>`)
  parts.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" class="frame"/>`)
  const { major, minor } = logTicks(lo, hi)
  for (const v of minor) if (v > lo && v < hi) parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="minor"/>`)
  for (const v of major) {
    if (v < lo || v > hi) continue
    parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" class="grid"/>`)
    parts.push(`<text x="${x0 - 6}" y="${(y(v) + 4).toFixed(1)}" class="ytick">${fmtTick(v)}</text>`)
  }
  parts.push(`<text transform="translate(${x0 - 44} ${y0 + h / 2}) rotate(-90)" class="axis">${esc(unit)}</text>`)
  connections.forEach((c, i) => parts.push(`<text x="${x(i).toFixed(1)}" y="${y0 + h + 18}" class="xtick">${c.toLocaleString('en-US')}</text>`))
  parts.push(`<text x="${x0 + w / 2}" y="${y0 + h + 36}" class="axis">connections</text>`)
  for (const s of series) {
    const color = COLORS[s.design] ?? '#000'
    if (s.flat) {
      const p = s.points[0]
      parts.push(`<line x1="${x0}" x2="${x0 + w}" y1="${y(p.stat.median).toFixed(1)}" y2="${y(p.stat.median).toFixed(1)}" stroke="${color}" stroke-width="2" stroke-dasharray="6 4"/>`)
      continue
    }
    const pts = s.points.map((p) => [x(connections.indexOf(p.connections)), y(p.stat.median)])
    if (pts.length > 1) parts.push(`<polyline points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="${s.design === 'pyfleet' ? 3 : 2}"/>`)
    s.points.forEach((p, i) => {
      const [px, py] = pts[i]
      if (p.stat.min !== p.stat.max) parts.push(`<line x1="${px.toFixed(1)}" x2="${px.toFixed(1)}" y1="${y(p.stat.min).toFixed(1)}" y2="${y(p.stat.max).toFixed(1)}" stroke="${color}" stroke-width="1.5"/>`)
      parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="4" fill="${color}"><title>${esc(`${s.design} @${p.connections}: ${pick === 'rps' ? Math.round(p.stat.median).toLocaleString('en-US') + ' req/s' : p.stat.median.toFixed(2) + ' ms'}`)}</title></circle>`)
    })
  }
  return parts.join('\n')
}

export function renderChart (data) {
  const cases = data.cases.filter((c) => c.scenario === SCENARIO)
  const connections = [...new Set(cases.map((c) => c.connections))].sort((a, b) => a - b)
  const designs = DESIGN_ORDER.filter((d) => cases.some((c) => c.designs.includes(d)))
  const seriesFor = (pick) => designs.map((design) => {
    const points = []
    for (const c of cases) {
      if (!c.designs.includes(design)) continue
      const stat = metric(data, c.id, design, pick === 'rps' ? (r) => r.requestsPerSecond : (r) => r.latency.p99)
      if (stat !== null) points.push({ connections: c.connections, stat })
    }
    return { design, points, flat: design === 'pipe' }
  }).filter((s) => s.points.length > 0)

  const W = 920
  const H = 430
  const m = data.machine
  const subtitle = `median of ${data.reps} (whiskers: min–max), ${m.cores} × ${m.cpuModel}, Node ${m.node}, ${data.startedAt.slice(0, 10)}, commit ${data.commit ?? '?'}`
  const legend = designs.map((d, i) => {
    const lx = 50 + (i % 3) * 300
    const ly = H - 34 + Math.floor(i / 3) * 18
    const dash = d === 'pipe' ? ' stroke-dasharray="6 4"' : ''
    return `<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${COLORS[d]}" stroke-width="3"${dash}/><text x="${lx + 28}" y="${ly}" class="legend">${esc(LABELS[d] ?? d)}</text>`
  }).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif">
<style>
  .frame { fill: #fff; stroke: #999; }
  .grid { stroke: #ddd; }
  .minor { stroke: #f0f0f0; }
  .title { font-size: 13px; font-weight: 600; text-anchor: middle; fill: #222; }
  .axis { font-size: 12px; text-anchor: middle; fill: #444; }
  .xtick { font-size: 11px; text-anchor: middle; fill: #444; }
  .ytick { font-size: 11px; text-anchor: end; fill: #444; }
  .legend { font-size: 12px; fill: #222; }
  .sub { font-size: 11px; text-anchor: middle; fill: #666; }
</style>
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="${W / 2}" y="20" class="title">echo, 100-byte JSON: throughput and tail latency by connections</text>
<text x="${W / 2}" y="37" class="sub">${esc(subtitle)}</text>
${panel({ x0: 80, y0: 70, w: 340, h: 250, title: 'requests per second (log scale, higher is better)', unit: 'req/s', series: seriesFor('rps'), connections, pick: 'rps' })}
${panel({ x0: 540, y0: 70, w: 340, h: 250, title: 'p99 latency (log scale, lower is better)', unit: 'ms', series: seriesFor('p99'), connections, pick: 'p99' })}
${legend}
</svg>
`
}
