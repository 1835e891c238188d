import { Module, type DynamicModule } from '@nestjs/common';
import { databaseReadinessCheck, DbModule, PRISMA_CLIENT, type PortcullisPrismaClient } from '@portcullis/data/db-nest';
import { pingRedis, type Redis } from '@portcullis/data/redis';
import { HealthModule, REDIS, RedisModule } from '@portcullis/shared/nest-runtime';
import type { Logger } from '@portcullis/shared/util-logger';
import type { ControlPlaneConfig } from './config';

/** Composition only: features are imported from libs/control-plane/* as they arrive. */
@Module({})
export class AppModule {
  static forRoot(config: ControlPlaneConfig, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        DbModule.forRoot({ url: config.database.url, applicationName: 'control-plane' }),
        RedisModule.forRoot({ url: config.redis.url, connectionName: 'control-plane', logger }),
        HealthModule.forRoot({
          logger,
          inject: [PRISMA_CLIENT, REDIS],
          useFactory: (db: PortcullisPrismaClient, redis: Redis) => [
            databaseReadinessCheck(db),
            { name: 'redis', check: () => pingRedis(redis) },
          ],
        }),
      ],
    };
  }
}
