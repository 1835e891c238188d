export { ADDRESS_REFUSED, checkUpstreamUrl, createGuardedLookup, createGuardedLookups, isAddressPermitted, isPrivateAddress } from './lib/ssrf-guard';
export type { AddressResolver, NetworkPolicy, UrlDecision } from './lib/ssrf-guard';
