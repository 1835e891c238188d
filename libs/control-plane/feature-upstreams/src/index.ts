export { UpstreamsModule } from './lib/upstreams.module';
export type { UpstreamsOptions } from './lib/upstreams.options';
