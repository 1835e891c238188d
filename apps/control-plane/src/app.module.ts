import { Module, type DynamicModule } from '@nestjs/common';
import { parseKeyring } from '@portcullis/auth/secrets';
import { ControlPlaneAuthModule } from '@portcullis/control-plane/auth';
import { ChangeEventsModule } from '@portcullis/control-plane/change-events';
import { AgentClientsModule } from '@portcullis/control-plane/feature-agent-clients';
import { ApiKeysModule } from '@portcullis/control-plane/feature-api-keys';
import { ApprovalsModule } from '@portcullis/control-plane/feature-approvals';
import { AuditModule, loadVerifyKeys } from '@portcullis/control-plane/feature-audit';
import { GroupsModule } from '@portcullis/control-plane/feature-groups';
import { MembersModule } from '@portcullis/control-plane/feature-members';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { TenantsModule } from '@portcullis/control-plane/feature-tenants';
import { UpstreamsModule } from '@portcullis/control-plane/feature-upstreams';
import { databaseReadinessCheck, DbModule, PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { pingRedis, type Redis } from '@portcullis/data/redis';
import { HealthModule, REDIS, RedisModule } from '@portcullis/shared/nest-runtime';
import type { DeepReadonly } from '@portcullis/shared/util-config';
import type { Logger } from '@portcullis/shared/util-logger';
import type { ControlPlaneConfig } from './config';

/** Probes defined in libs/shared/nest-runtime (which cannot carry @Public): open by name, listed in the route snapshot. */
export const INFRASTRUCTURE_ROUTES = ['GET /healthz', 'GET /readyz'] as const;

/** Composition only: features are imported from libs/control-plane/*. */
@Module({})
export class AppModule {
  static forRoot(config: DeepReadonly<ControlPlaneConfig>, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        DbModule.forRoot({
          url: config.database.url,
          applicationName: 'control-plane',
          // A change to a tenant's directory (members, groups, agent clients, upstreams, tools, policy) waits on the
          // tenant's snapshot lock and recompiles its policy, a second or more for a large one: a change queued behind
          // a few others must not run out of Prisma's default 5 s and be answered 503 as if the database were down.
          transaction: { timeoutMs: 30_000, maxWaitMs: 10_000 },
          // A database that stops answering (a partition: the connection open, nothing coming back) would otherwise
          // hold every request without end; bounded, the request is answered 503. No statement of the API runs long.
          statementTimeoutMs: 30_000,
          connectTimeoutMs: 10_000,
        }),
        RedisModule.forRoot({ url: config.redis.url, connectionName: 'control-plane', logger }),
        HealthModule.forRoot({
          logger,
          inject: [PRISMA_CLIENT, REDIS],
          useFactory: (db: PortcullisPrismaClient, redis: Redis) => [
            databaseReadinessCheck(db),
            { name: 'redis', check: () => pingRedis(redis) },
          ],
        }),
        ControlPlaneAuthModule.forRoot({ token: config.auth.token, infrastructureRoutes: INFRASTRUCTURE_ROUTES, logger }),
        ChangeEventsModule.forRoot({
          redisUrl: config.redis.url,
          queuePrefix: config.queue.prefix,
          timeoutMs: config.redisWriteTimeoutMs,
          logger,
        }),
        TenantsModule,
        MembersModule,
        UpstreamsModule.forRoot({
          keyring: parseKeyring(config.secrets.keyringSpec),
          stdioCommandAllowlist: config.upstreams.stdioCommandAllowlist,
          stdioRunAs: config.upstreams.stdioRunAs,
          stdioUidRange: config.upstreams.stdioUidRange,
          network: config.upstreams.network,
          testTimeoutMs: config.upstreams.testTimeoutMs,
          maxStoredDefinitions: config.upstreams.maxStoredDefinitions,
          logger,
        }),
        AgentClientsModule,
        ApiKeysModule,
        PoliciesModule,
        ApprovalsModule,
        GroupsModule,
        AuditModule.forRoot({
          exportDir: config.audit.exportDir,
          redisUrl: config.redis.url,
          queuePrefix: config.queue.prefix,
          enqueueTimeoutMs: config.redisWriteTimeoutMs,
          syncExportMaxRows: config.audit.syncExportMaxRows,
          ...(config.audit.verifyKeysFile === null ? {} : { verifyKeys: loadVerifyKeys(config.audit.verifyKeysFile) }),
        }),
      ],
    };
  }
}
