import type { IncomingMessage } from 'node:http';
import type { TrustedProxies } from '@portcullis/shared/util-config';
import proxyaddr from 'proxy-addr';

/**
 * The client's address as Fastify reports it (proxy-addr, as Fastify uses it): the socket's peer, or with trusted
 * proxies the nearest X-Forwarded-For address that is not one of them (entries further left are the client's to write).
 */
export function clientAddressOf(trust: TrustedProxies): (req: IncomingMessage) => string | undefined {
  if (trust === false) return (req) => req.socket.remoteAddress;
  const trusted = typeof trust === 'number' ? (_address: string, hop: number) => hop < trust : proxyaddr.compile([...trust]);
  return (req) => (req.socket.remoteAddress === undefined ? undefined : proxyaddr(req, trusted));
}
