import type { PolicySnapshotBody, PolicySnapshotIr } from './policy-ir';

/**
 * Canonical JSON: object keys sorted by UTF-16 code unit, no whitespace, `undefined` properties dropped,
 * non-finite numbers and `undefined` array items rejected. Two structurally equal values give the same string.
 */
export function canonicalJson(value: unknown): string {
  return write(value, '$');
}

function write(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: non-finite number at ${path}`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return `[${value.map((item, index) => {
          if (item === undefined) throw new TypeError(`canonicalJson: undefined at ${path}[${index}]`);
          return write(item, `${path}[${index}]`);
        }).join(',')}]`;
      }
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record)
        .filter((key) => record[key] !== undefined)
        .sort(compareCodeUnits);
      return `{${keys.map((key) => `${JSON.stringify(key)}:${write(record[key], `${path}.${key}`)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: cannot encode ${typeof value} at ${path}`);
  }
}

/** Locale-independent string order (what `Array.prototype.sort` does without a comparator). */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The checksum contract: a snapshot's `checksum` is the lowercase hex SHA-256 of the UTF-8 bytes of
 * `checksumPayload(snapshot)`, i.e. the canonical JSON of the snapshot without its `checksum` field.
 * (The hash itself lives in the engine, which runs on Node; this lib stays usable in a browser.)
 */
export const CHECKSUM_ALGORITHM = 'sha256' as const;

export function checksumPayload(snapshot: PolicySnapshotBody | PolicySnapshotIr): string {
  const { checksum: _checksum, ...body } = snapshot as PolicySnapshotIr;
  return canonicalJson(body);
}

/** Computes a snapshot checksum from its payload: `(payload) => sha256hex(utf8(payload))`. */
export type SnapshotChecksumFn = (payload: string) => string;
