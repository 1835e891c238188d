export { ADDRESS_REFUSED, checkUpstreamUrl, createGuardedLookup, isAddressPermitted, isPrivateAddress } from './lib/ssrf-guard';
export type { AddressResolver, NetworkPolicy, UrlDecision } from './lib/ssrf-guard';
