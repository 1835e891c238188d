export { ConfigError, ListenError, listenNaming, loadConfigOrExit, parseConfig } from './lib/load-config';
export type { DeepReadonly, Environment } from './lib/load-config';
export * as configFields from './lib/fragments';
export type { TrustedProxies } from './lib/fragments';
export { withoutTrailingSlashes } from './lib/text';
