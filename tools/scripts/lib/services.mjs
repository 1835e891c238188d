// Shared by `npm start`, `npm test` and .ci/run: are Postgres and Redis there, and what to do if not.
import net from 'node:net';

export const START_HINTS = {
  postgres: [
    'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start',
    'or, with Docker: docker compose -f infra/docker-compose.yml up -d postgres',
  ],
  redis: [
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log',
    'or, with Docker: docker compose -f infra/docker-compose.yml up -d redis',
  ],
};

/** Resolves true when something accepts a TCP connection at host:port within `timeoutMs`. */
export function canConnect(host, port, timeoutMs = 1_500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export function hostPort(url, defaultPort) {
  const parsed = new URL(url);
  return { host: parsed.hostname.replace(/^\[|\]$/g, ''), port: Number(parsed.port || defaultPort) };
}

/** Checks both services; prints exactly what to run for each one that is down. Returns true if both answer. */
export async function checkServices({ databaseUrl, redisUrl }) {
  const pg = hostPort(databaseUrl, 5432);
  const redis = hostPort(redisUrl, 6379);
  const [pgUp, redisUp] = await Promise.all([canConnect(pg.host, pg.port), canConnect(redis.host, redis.port)]);
  if (!pgUp) {
    console.error(`\nPostgreSQL is not reachable at ${pg.host}:${pg.port}. Start it with:`);
    for (const line of START_HINTS.postgres) console.error(`  ${line}`);
  }
  if (!redisUp) {
    console.error(`\nRedis is not reachable at ${redis.host}:${redis.port}. Start it with:`);
    for (const line of START_HINTS.redis) console.error(`  ${line}`);
  }
  return pgUp && redisUp;
}
