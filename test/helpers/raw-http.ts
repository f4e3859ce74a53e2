// Raw HTTP/1.1 on a socket, for what fetch cannot send or show: pipelined
// requests in one packet, bytes that are not HTTP, Expect: 100-continue, and
// connections held open by the test (fetch pools its own).

import { connect, type Socket } from 'node:net'

export interface RawExchangeOptions {
  /** The exchange ends (the socket is destroyed) once this says the answer so far is complete. */
  enough?: (answer: string) => boolean
  /** Sees every piece of the answer as it grows, with the socket: e.g. to send a body after 100 Continue. */
  onAnswer?: (answer: string, socket: Socket) => void
  /** An answer that never comes fails the test's match, not the run (default 10 s). */
  timeoutMs?: number
  /** Ends the client's side (FIN) once the bytes are written, as a client that stops sending mid-request does. */
  endAfterWrite?: boolean
}

/**
 * Writes `bytes` to the server at `url` and returns everything it answers, up to
 * the moment it closes the connection, `enough` says so, or the timeout.
 */
export async function rawExchange (url: string, bytes: string, { enough, onAnswer, timeoutMs = 10_000, endAfterWrite = false }: RawExchangeOptions = {}): Promise<string> {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  let answer = ''
  socket.on('error', () => {})
  socket.setTimeout(timeoutMs, () => socket.destroy())
  socket.setEncoding('utf8').on('data', (text: string) => {
    answer += text
    onAnswer?.(answer, socket)
    if (enough?.(answer) === true) socket.destroy()
  })
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.write(bytes)
  if (endAfterWrite) socket.end()
  await closed
  return answer
}

export interface HeldConnection {
  /** Sends one request and resolves with its answer once whole (by content-length), or with what came before the connection closed. */
  request: (bytes: string) => Promise<string>
  /** Resolves once the connection is closed, by either side. */
  closed: Promise<void>
  destroy: () => void
}

/** A keep-alive connection that stays open until the test closes it (or the server does). */
export function holdConnection (url: string, { timeoutMs = 10_000 }: { timeoutMs?: number } = {}): HeldConnection {
  const socket = connect(Number(new URL(url).port), '127.0.0.1')
  let received = ''
  let isClosed = false
  socket.on('error', () => {})
  socket.setTimeout(timeoutMs, () => socket.destroy())
  // latin1: one character per byte, so content-length counts characters.
  socket.setEncoding('latin1').on('data', (text: string) => { received += text })
  const closed = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; resolve() }))
  const isWhole = (answer: string): boolean => {
    const headerEnd = answer.indexOf('\r\n\r\n')
    if (headerEnd === -1) return false
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(answer.slice(0, headerEnd))?.[1] ?? 0)
    return answer.length >= headerEnd + 4 + length
  }
  return {
    async request (bytes: string): Promise<string> {
      const from = received.length
      socket.write(bytes)
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (!isClosed && !isWhole(received.slice(from))) return
          socket.off('data', check)
          resolve()
        }
        socket.on('data', check)
        void closed.then(check)
      })
      return received.slice(from)
    },
    closed,
    destroy: () => { socket.destroy() }
  }
}
