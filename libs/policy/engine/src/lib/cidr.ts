/**
 * IPv4/IPv6 address and CIDR parsing for the `inCidr(ip, cidr)` CEL function. Addresses become 16 bytes;
 * IPv4 (and IPv4-mapped IPv6, `::ffff:a.b.c.d`) use the mapped form so `10.0.0.0/8` matches both spellings.
 */

export interface Cidr {
  readonly bytes: Uint8Array;
  /** Prefix length over the 128-bit form. */
  readonly bits: number;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function parseV4(text: string): number[] | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out: number[] = [];
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || (part.length > 1 && part.startsWith('0'))) return null;
    const n = Number(part);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseV6(text: string): number[] | null {
  let body = text;
  let tail: number[] = [];
  const lastColon = body.lastIndexOf(':');
  if (body.includes('.')) {
    const v4 = parseV4(body.slice(lastColon + 1));
    if (v4 === null) return null;
    tail = v4;
    body = `${body.slice(0, lastColon + 1)}0:0`;
  }
  const halves = body.split('::');
  if (halves.length > 2) return null;
  const parseGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const group of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
      groups.push(parseInt(group, 16));
    }
    return groups;
  };
  const head = parseGroups(halves[0] ?? '');
  const rest = halves.length === 2 ? parseGroups(halves[1] ?? '') : [];
  if (head === null || rest === null) return null;
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...new Array<number>(missing).fill(0), ...rest];
  const bytes = groups.flatMap((g) => [g >> 8, g & 0xff]);
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** Parses an IPv4 or IPv6 address (no zone id) into 16 bytes, or returns null. */
export function parseIp(text: string): Uint8Array | null {
  if (text.length > 45) return null;
  const v4 = parseV4(text);
  if (v4 !== null) return Uint8Array.from([...V4_MAPPED_PREFIX, ...v4]);
  if (!text.includes(':')) return null;
  const v6 = parseV6(text);
  return v6 === null ? null : Uint8Array.from(v6);
}

/** Parses `a.b.c.d/n` or `x:y::/n` (a bare address means a single host), or returns null. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const bytes = parseIp(address);
  if (bytes === null) return null;
  const isV4 = parseV4(address) !== null;
  const max = isV4 ? 32 : 128;
  let bits = max;
  if (slash !== -1) {
    const suffix = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(suffix)) return null;
    bits = Number(suffix);
    if (bits > max) return null;
  }
  return { bytes, bits: isV4 ? bits + 96 : bits };
}

export function cidrContains(cidr: Cidr, ip: Uint8Array): boolean {
  let remaining = cidr.bits;
  for (let i = 0; i < 16 && remaining > 0; i++, remaining -= 8) {
    const mask = remaining >= 8 ? 0xff : (0xff << (8 - remaining)) & 0xff;
    if (((cidr.bytes[i] ?? 0) & mask) !== ((ip[i] ?? 0) & mask)) return false;
  }
  return true;
}
