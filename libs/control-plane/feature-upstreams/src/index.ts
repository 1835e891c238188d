export { UpstreamsModule } from './lib/upstreams.module';
export type { UpstreamsOptions } from './lib/upstreams.options';
export { TESTS_PER_MINUTE } from './lib/upstreams.errors';
