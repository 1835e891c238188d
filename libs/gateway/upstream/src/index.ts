export { createUpstreamConnector } from './lib/upstream-connector';
export type { UpstreamConnectorOptions } from './lib/upstream-connector';
export type { UpstreamLogger } from './lib/core/logger';
export { CircuitBreaker } from './lib/core/circuit-breaker';
export type { CircuitBreakerOptions, CircuitState } from './lib/core/circuit-breaker';
export {
  checkUpstreamUrl,
  createGuardedLookup,
  isAddressPermitted,
  isPrivateAddress,
} from '@portcullis/shared/util-net-guard';
export type { NetworkPolicy, UrlDecision } from '@portcullis/shared/util-net-guard';
