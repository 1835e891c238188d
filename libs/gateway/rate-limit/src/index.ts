export { counterKey } from './lib/keys';
export type { RateLimitSubject } from './lib/keys';
export { RateLimitService } from './lib/rate-limiter';
export type { AppliedLimit, FailMode, RateLimitOutcome, RateLimitServiceOptions } from './lib/rate-limiter';
