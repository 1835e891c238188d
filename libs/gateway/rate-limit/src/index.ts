export { counterKey } from './lib/keys';
export type { RateLimitSubject } from './lib/keys';
export { RateLimitService } from './lib/rate-limiter';
export type { AppliedLimit, FailMode, RateLimitOutcome, RateLimitServiceOptions } from './lib/rate-limiter';
export { createRateLimitRedis, rateLimitHooks, TENANT_LIMIT_RULE } from './lib/rate-limit-hooks';
export type { RateLimitHooksOptions } from './lib/rate-limit-hooks';
export { DEFAULT_LEASE_OPTIONS, QuotaLeases } from './lib/quota-leases';
export type { ConsumeFn, QuotaLeaseOptions, TakeResult, WindowCount } from './lib/quota-leases';
