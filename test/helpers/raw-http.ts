// Raw HTTP/1.1 on a socket, for what fetch cannot send or show: pipelined
// requests in one packet, bytes that are not HTTP, Expect: 100-continue.

import { connect, type Socket } from 'node:net'

export interface RawExchangeOptions {
  /** The exchange ends (the socket is destroyed) once this says the answer so far is complete. */
  enough?: (answer: string) => boolean
  /** Sees every piece of the answer as it grows, with the socket: e.g. to send a body after 100 Continue. */
  onAnswer?: (answer: string, socket: Socket) => void
  /** An answer that never comes fails the test's match, not the run (default 10 s). */
  timeoutMs?: number
}

/**
 * Writes `bytes` to the server at `url` and returns everything it answers, up to
 * the moment it closes the connection, `enough` says so, or the timeout.
 */
export async function rawExchange (url: string, bytes: string, { enough, onAnswer, timeoutMs = 10_000 }: RawExchangeOptions = {}): Promise<string> {
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
  await closed
  return answer
}
