export { ADDRESS_REFUSED, checkUpstreamUrl, createGuardedLookup, createGuardedLookups, isAddressPermitted, LOOKUP_QUEUED, isPrivateAddress } from './lib/ssrf-guard';
export type { AddressResolver, NetworkPolicy, UrlDecision } from './lib/ssrf-guard';
