// Whether the kernel still holds part of a connection's answers, undelivered: bytes Node
// handed over (to Node the answer is finished, the connection idle) that a client which
// stopped reading has not taken. An answer of up to a few MB fits in a socket's send buffer
// whole. Closed plainly, such a connection leaves the server's end orphaned in FIN_WAIT1,
// the bytes with it, which the kernel goes on offering to a reader that does not read for
// minutes after the server let go (or exited); reset, it drops them at once. So a connection
// the server closes on a timeout or at shutdown is looked up here first (plugins/connections.ts).
// Linux's /proc/net/tcp and tcp6 say it (its tx_queue); Node has no call that does.

import { readFile } from 'node:fs/promises'
import type { Socket } from 'node:net'

/**
 * Only a connection that has written this much in all is looked up: below it, what the
 * kernel could still hold is too little to matter, and most connections, whose answers are
 * small, close as before without a read of the tables.
 */
export const LOOK_UP_FROM_BYTES = 256 * 1024

const TABLES = ['/proc/net/tcp', '/proc/net/tcp6']

/** A read of the tables under way: the questions asked meanwhile share it. */
let reading: Promise<string> | undefined

async function readTables (): Promise<string> {
  const tables = await Promise.all(TABLES.map(async (path) => await readFile(path, 'latin1').catch(() => '')))
  return tables.join('\n')
}

function hexPort (port: number | undefined): string {
  return (port ?? 0).toString(16).toUpperCase().padStart(4, '0')
}

/**
 * Bytes of `socket`'s answers the kernel has not delivered yet (0 when it holds none, or
 * where /proc cannot say). A row is `sl local_address rem_address st tx_queue:rx_queue ...`;
 * it is found by one search of the text, not by splitting it (tens of thousands of rows
 * at MAX_CONNECTIONS). Sockets are told apart by their two ports: two clients on one
 * ephemeral port at once would be taken for one, which costs at most a reset instead of a
 * close for a connection that is being closed anyway.
 */
export async function unsentInKernel (socket: Socket): Promise<number> {
  const row = new RegExp(`:${hexPort(socket.localPort)} [0-9A-F]+:${hexPort(socket.remotePort)} [0-9A-F]{2} ([0-9A-F]{8}):`, 'g')
  reading ??= readTables().finally(() => { reading = undefined })
  const tables = await reading
  let unsent = 0
  for (const match of tables.matchAll(row)) unsent += parseInt(match[1], 16)
  return unsent
}
