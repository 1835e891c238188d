export { TenantsModule } from './lib/tenants.module';
export { TenantsRepository } from './lib/tenants.repository';
