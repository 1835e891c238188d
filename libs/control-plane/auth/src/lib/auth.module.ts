import { Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { AccessGuard } from './access.guard';
import { AUTH_OPTIONS, type ControlPlaneAuthOptions } from './auth.options';
import { PrincipalLoader } from './principal.loader';
import { RouteAccessRegistry } from './route-access.registry';

/** Authentication and authorization for every control-plane route: the global deny-by-default guard. */
@Module({})
export class ControlPlaneAuthModule {
  static forRoot(options: ControlPlaneAuthOptions): DynamicModule {
    return {
      module: ControlPlaneAuthModule,
      global: true,
      imports: [DiscoveryModule],
      providers: [
        { provide: AUTH_OPTIONS, useValue: options },
        PrincipalLoader,
        RouteAccessRegistry,
        { provide: APP_GUARD, useClass: AccessGuard },
      ],
      exports: [RouteAccessRegistry],
    };
  }
}
