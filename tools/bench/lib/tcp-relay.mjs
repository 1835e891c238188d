#!/usr/bin/env node
// A TCP relay, for `npm run bench:gateway -- --tcp-relay`: each accepted connection is piped byte for byte to a new
// connection to the upstream, with no HTTP parsing at all. What it adds to a call is the least any Node process in
// the path can add on this machine (two more loopback hops and two event-loop wake-ups per call), below which no
// HTTP-speaking proxy, the bare one or the gateway, can go. Listens on 127.0.0.1 only.
//
//   node tools/bench/lib/tcp-relay.mjs <port> <upstream origin, e.g. http://127.0.0.1:4000>
import net from 'node:net';

const [portArg, origin] = process.argv.slice(2);
if (!portArg || !origin) {
  console.error('usage: tcp-relay.mjs <port> <upstream origin>');
  process.exit(2);
}
const upstream = new URL(origin);

const server = net.createServer({ noDelay: true }, (agentSide) => {
  const upstreamSide = net.connect({ host: upstream.hostname, port: Number(upstream.port), noDelay: true });
  agentSide.pipe(upstreamSide);
  upstreamSide.pipe(agentSide);
  const closeBoth = () => {
    agentSide.destroy();
    upstreamSide.destroy();
  };
  for (const socket of [agentSide, upstreamSide]) {
    socket.on('error', closeBoth);
    socket.on('close', closeBoth);
  }
});
server.listen(Number(portArg), '127.0.0.1');
process.on('SIGTERM', () => {
  server.close();
  setTimeout(() => process.exit(0), 200).unref();
});
