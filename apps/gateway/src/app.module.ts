import { Module, type DynamicModule } from '@nestjs/common';
import { pingRedis, type Redis } from '@portcullis/data/redis';
import { HealthModule, REDIS, RedisModule } from '@portcullis/shared/nest-runtime';
import type { Logger } from '@portcullis/shared/util-logger';
import type { GatewayConfig } from './config';

/**
 * Nest owns the gateway's lifecycle (health, shutdown). The MCP request path is plain functions from
 * libs/gateway/*, registered on the Fastify instance directly: no DI or ORM per request.
 */
@Module({})
export class AppModule {
  static forRoot(config: GatewayConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        RedisModule.forRoot({ url: config.redis.url, connectionName: 'gateway', logger }),
        HealthModule.forRoot({
          logger,
          inject: [REDIS],
          useFactory: (redis: Redis) => [{ name: 'redis', check: () => pingRedis(redis) }],
        }),
      ],
    };
  }
}
