import { Inject, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import {
  createPrismaClient,
  createSystemPrismaClient,
  type PortcullisPrismaClient,
  type PrismaClientOptions,
  type SystemPrismaClient,
} from '@portcullis/data/db';

/** Injection token of the application's PrismaClient (`portcullis_app`, row-level security applies). */
export const PRISMA_CLIENT = Symbol('PRISMA_CLIENT');
/** Injection token of the system client (`portcullis_system`, BYPASSRLS); only provided when asked for. */
export const SYSTEM_PRISMA_CLIENT = Symbol('SYSTEM_PRISMA_CLIENT');

export interface DbModuleOptions extends PrismaClientOptions {
  /**
   * Also provide SYSTEM_PRISMA_CLIENT, connected with this URL. Only for apps that run cross-tenant jobs (the audit
   * worker's retention, the gateway's cache loaders); say why where you pass it.
   */
  readonly systemUrl?: string;
}

const DB_CLIENTS = Symbol('DB_CLIENTS');

/** Disconnects the clients when the app closes (after in-flight requests; see installGracefulShutdown). */
class DbLifecycle implements OnApplicationShutdown {
  constructor(@Inject(DB_CLIENTS) private readonly clients: readonly { $disconnect(): Promise<void> }[]) {}

  async onApplicationShutdown(): Promise<void> {
    await Promise.all(this.clients.map((client) => client.$disconnect()));
  }
}

/**
 * Provides the PrismaClient built from a URL given at registration: `DbModule.forRoot({ url: config.db.url })`.
 * Global, so feature modules inject PRISMA_CLIENT without importing this module.
 */
@Module({})
export class DbModule {
  static forRoot(options: DbModuleOptions): DynamicModule {
    const { systemUrl, ...clientOptions } = options;
    const app = createPrismaClient(clientOptions);
    const system = systemUrl ? createSystemPrismaClient({ ...clientOptions, url: systemUrl }) : undefined;
    return {
      module: DbModule,
      global: true,
      providers: [
        { provide: PRISMA_CLIENT, useValue: app },
        ...(system ? [{ provide: SYSTEM_PRISMA_CLIENT, useValue: system }] : []),
        { provide: DB_CLIENTS, useValue: system ? [app, system] : [app] },
        DbLifecycle,
      ],
      exports: [PRISMA_CLIENT, ...(system ? [SYSTEM_PRISMA_CLIENT] : [])],
    };
  }
}

export type { PortcullisPrismaClient, SystemPrismaClient };
