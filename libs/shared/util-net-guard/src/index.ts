export { ADDRESS_REFUSED, checkUpstreamUrl, createGuardedLookup, isAddressPermitted, isPrivateAddress } from './lib/ssrf-guard';
export type { NetworkPolicy, UrlDecision } from './lib/ssrf-guard';
