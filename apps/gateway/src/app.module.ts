import { Module, type DynamicModule } from '@nestjs/common';
import { databaseReadinessCheck, DbModule, PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { pingRedis, type Redis } from '@portcullis/data/redis';
import { HealthModule, REDIS, RedisModule } from '@portcullis/shared/nest-runtime';
import type { Logger } from '@portcullis/shared/util-logger';
import { REDIS_COMMAND_TIMEOUT_MS, type GatewayConfig } from './config';

/**
 * Nest owns the gateway's lifecycle (health, shutdown). The MCP request path is plain functions from
 * libs/gateway/*, registered on the Fastify instance directly: no DI or ORM per request.
 */
@Module({})
export class AppModule {
  /**
   * `draining`: the gateway is shutting down (its MCP endpoints answer 503): not ready, so balancers stop sending.
   * `configured`: the upstreams and tool pins have loaded once (before, its MCP endpoints answer 503 too).
   */
  static forRoot(config: GatewayConfig, logger: Logger, draining: () => boolean = () => false, configured: () => boolean = () => true): DynamicModule {
    return {
      module: AppModule,
      imports: [
        DbModule.forRoot({ url: config.database.url, applicationName: 'gateway', statementTimeoutMs: 10_000, connectTimeoutMs: 10_000 }),
        RedisModule.forRoot({ url: config.redis.url, connectionName: 'gateway', logger, commandTimeoutMs: REDIS_COMMAND_TIMEOUT_MS }),
        HealthModule.forRoot({
          logger,
          inject: [PRISMA_CLIENT, REDIS],
          useFactory: (db: PortcullisPrismaClient, redis: Redis) => [
            databaseReadinessCheck(db),
            { name: 'redis', check: () => pingRedis(redis) },
            {
              name: 'accepting',
              check: async () => {
                if (draining()) throw new Error('shutting down');
              },
            },
            {
              name: 'configuration',
              check: async () => {
                if (!configured()) throw new Error('upstreams not loaded yet');
              },
            },
          ],
        }),
      ],
    };
  }
}
