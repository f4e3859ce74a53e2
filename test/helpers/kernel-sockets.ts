// The kernel's view of a TCP connection, from /proc/net/tcp and tcp6: whether the server's end
// of one is left behind (orphaned in FIN_WAIT1 with unsent bytes) after the server let it go.

import { readFile } from 'node:fs/promises'

/**
 * The kernel's TCP sockets at local port `serverPort` with peer port `clientPort` (IPv4 and
 * IPv6 tables), as [state, send queue bytes]: the server's end of one connection, if left.
 */
export async function serverEndOf (serverPort: number, clientPort: number): Promise<Array<[string, number]>> {
  const hex = (port: number): string => `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map(async (path) => await readFile(path, 'utf8').catch(() => '')))
  return tables.flatMap((table) => table.split('\n').slice(1).map((row) => row.trim().split(/\s+/)))
    .filter((fields) => fields.length > 4 && fields[1].endsWith(hex(serverPort)) && fields[2].endsWith(hex(clientPort)))
    .map((fields) => [fields[3], parseInt(fields[4].split(':')[0], 16)])
}
