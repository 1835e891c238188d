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
} from './lib/core/ssrf-guard';
export type { NetworkPolicy, UrlDecision } from './lib/core/ssrf-guard';
