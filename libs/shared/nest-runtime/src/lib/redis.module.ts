import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { createRedisClient, onRedisError, type Redis } from '@portcullis/data/redis';
import type { Logger } from '@portcullis/shared/util-logger';

export const REDIS = Symbol('REDIS');

@Injectable()
class RedisCloser implements OnApplicationShutdown {
  constructor(@Inject(REDIS) private readonly redis: Redis) {}
  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** One shared ioredis client per process under the `REDIS` token, closed on shutdown. */
@Module({})
export class RedisModule {
  static forRoot(options: { url: string; connectionName: string; logger: Logger; commandTimeoutMs?: number }): DynamicModule {
    return {
      module: RedisModule,
      global: true,
      providers: [
        {
          provide: REDIS,
          useFactory: () => {
            const client = createRedisClient({
              url: options.url,
              connectionName: options.connectionName,
              ...(options.commandTimeoutMs === undefined ? {} : { commandTimeoutMs: options.commandTimeoutMs }),
            });
            onRedisError(client, (error) => options.logger.warn({ err: { message: error.message } }, 'redis error'));
            return client;
          },
        },
        RedisCloser,
      ],
      exports: [REDIS],
    };
  }
}
