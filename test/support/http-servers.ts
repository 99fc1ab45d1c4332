import type { Server } from 'node:http';

/** Closes test HTTP servers, cutting their open connections first (held or streaming responses included). */
export async function closeServers(servers: Server[]): Promise<void> {
  await Promise.all(
    servers.splice(0).map((server) => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    }),
  );
}
