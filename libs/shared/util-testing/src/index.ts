export { testContext } from './lib/context';
export type { TestContext } from './lib/context';
export { createTestTenant } from './lib/tenants';
export type { TenantWriter, TestTenant } from './lib/tenants';
export { waitFor } from './lib/wait-for';
export type { WaitForOptions } from './lib/wait-for';
export { present } from './lib/present';
export { jsonLinesServer } from './lib/stdio-server';
