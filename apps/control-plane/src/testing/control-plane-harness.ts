import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { OpenAPIObject } from '@nestjs/swagger';
import { QUEUES, type AuditEventV1 } from '@portcullis/contracts/jobs';
import { issueAccessToken, RouteAccessRegistry, type TenantRole } from '@portcullis/control-plane/auth';
import { createSystemPrismaClient, type SystemPrismaClient } from '@portcullis/data/db';
import { createRedisClient, type Redis } from '@portcullis/data/redis';
import { createHttpApp } from '@portcullis/shared/nest-runtime';
import { parseConfig } from '@portcullis/shared/util-config';
import { newId, type TenantId } from '@portcullis/shared/util-ids';
import { createLogger } from '@portcullis/shared/util-logger';
import { createTestTenant, testContext, waitFor, type TestTenant } from '@portcullis/shared/util-testing';
import { Queue } from 'bullmq';
import { randomBytes } from 'node:crypto';
import { AppModule } from '../app.module';
import { controlPlaneConfigSchema, type ControlPlaneConfig } from '../config';
import { installControlPlaneMetrics } from '../metrics';
import { setupOpenApi } from '../openapi';

export const STDIO_ALLOWED = '/usr/local/bin/allowed-mcp-server';

/**
 * The real AppModule in-process against the run's Postgres (application role, RLS applies) and Redis, with its
 * own BullMQ prefix (so audit jobs can be read back without other runs' jobs) and its logs captured.
 */
export async function startControlPlane(env: Record<string, string> = {}) {
  const ctx = testContext();
  const logs: string[] = [];
  const logger = createLogger({ service: 'control-plane-test', level: 'debug', destination: { write: (line: string) => void logs.push(line) } });
  const queuePrefix = `cpt-${randomBytes(5).toString('hex')}`;
  const config = parseConfig(controlPlaneConfigSchema, {
    NODE_ENV: 'test',
    DATABASE_URL: ctx.databaseUrl,
    REDIS_URL: ctx.redisUrl,
    QUEUE_PREFIX: queuePrefix,
    CONTROL_PLANE_STDIO_COMMAND_ALLOWLIST: STDIO_ALLOWED,
    ...env,
  }) as ControlPlaneConfig;
  const app = await createHttpApp(AppModule.forRoot(config, logger), { logger, bodyLimitBytes: 1024 * 1024 });
  const openapi: OpenAPIObject = setupOpenApi(app);
  // As main.ts: metrics when CONTROL_PLANE_METRICS_PORT is set (0 in specs: any free port).
  const metrics = config.metrics ? installControlPlaneMetrics(app as NestFastifyApplication, logger) : undefined;
  await app.init();
  await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();

  const system: SystemPrismaClient = createSystemPrismaClient({ url: ctx.systemDatabaseUrl });
  const redis: Redis = createRedisClient({ url: ctx.redisUrl, connectionName: 'control-plane-test' });
  const queue = new Queue(QUEUES.audit, { connection: redis, prefix: queuePrefix });

  const fastify = (app as NestFastifyApplication).getHttpAdapter().getInstance();
  const metricsPort = metrics && config.metrics ? await metrics.listen(config.metrics.host, config.metrics.port) : undefined;

  const harness = {
    app,
    config,
    logs,
    openapi,
    system,
    registry: app.get(RouteAccessRegistry),

    async request(method: string, url: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) {
      const response = await fastify.inject({
        method: method as 'GET',
        url,
        headers: {
          ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
          ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...options.headers,
        },
        ...(options.body === undefined ? {} : { payload: JSON.stringify(options.body) }),
      });
      const text = response.body;
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      return { status: response.statusCode, headers: response.headers, text, json: json as Record<string, unknown> & { items?: Record<string, unknown>[] } };
    },

    async user(options: { platformAdmin?: boolean; email?: string } = {}) {
      const row = await system.user.create({
        data: {
          id: newId(),
          email: options.email ?? `u-${randomBytes(6).toString('hex')}@example.test`,
          name: 'Test user',
          platformRole: options.platformAdmin ? 'platform_admin' : 'none',
        },
        select: { id: true, email: true },
      });
      const { token } = await issueAccessToken(config.auth.token, { userId: row.id });
      return { id: row.id, email: row.email, token };
    },

    tenant(): Promise<TestTenant> {
      return createTestTenant(system);
    },

    async member(tenantId: TenantId, role: TenantRole) {
      const user = await harness.user();
      await system.membership.create({ data: { tenantId, userId: user.id, role } });
      return user;
    },

    async auditEvents(tenantId: string): Promise<AuditEventV1[]> {
      const jobs = await queue.getJobs(['waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed']);
      return jobs
        .map((job) => job.data as AuditEventV1)
        .filter((event) => event.tenantId === tenantId)
        .sort((a, b) => a.eventId.localeCompare(b.eventId));
    },

    /** Waits until at least `count` audit events of the tenant are in the queue. */
    eventsAtLeast(tenantId: string, count: number): Promise<AuditEventV1[]> {
      return waitFor(
        async () => {
          const events = await harness.auditEvents(tenantId);
          return events.length >= count ? events : null;
        },
        { description: `${count} audit events for tenant ${tenantId}` },
      );
    },

    /**
     * Sends `requests` while another transaction holds the row `id` of `table` FOR UPDATE, and lets it go once each of
     * them waits on it (a lock not granted, in this run's database): each has read the row before any could write
     * it, as when they arrive at the same moment. Their answers, in the order sent.
     */
    async atOnce<T>(table: 'api_keys' | 'groups', id: string, requests: () => Promise<T>[]): Promise<T[]> {
      const { sent } = await system.$transaction(
        async (tx) => {
          await tx.$queryRawUnsafe(`SELECT id FROM ${table} WHERE id = $1::uuid FOR UPDATE`, id);
          const sent = requests();
          await waitFor(
            async () => {
              const [row] = await system.$queryRaw<{ waiting: bigint }[]>`
                SELECT count(DISTINCT l.pid) AS waiting FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                WHERE NOT l.granted AND a.datname = current_database()`;
              return Number(row?.waiting ?? 0) >= sent.length;
            },
            { timeoutMs: 10_000, description: `${sent.length} requests waiting on the ${table} row` },
          );
          return { sent };
        },
        { timeout: 20_000 },
      );
      return Promise.all(sent);
    },

    /** `http://host:port/metrics` when CONTROL_PLANE_METRICS_PORT was set. */
    metricsUrl: metricsPort === undefined ? undefined : `http://${config.metrics?.host ?? '127.0.0.1'}:${metricsPort}/metrics`,

    async close() {
      await metrics?.close();
      await app.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      await redis.quit();
      await system.$disconnect();
    },
  };
  return harness;
}

export type ControlPlaneHarness = Awaited<ReturnType<typeof startControlPlane>>;
