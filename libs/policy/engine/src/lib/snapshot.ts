import { createHash } from 'node:crypto';
import {
  canonicalJson,
  checksumPayload,
  POLICY_IR_VERSION,
  policySnapshotIr,
  type PolicySnapshotBody,
  type PolicySnapshotIr,
} from '@portcullis/contracts/policy-ir';
import { attachRuntime, buildRuntime, newCaches, SnapshotLoadError, type CompileCaches } from './runtime';
import type { PolicySnapshot } from './types';

/** The checksum contract of `@portcullis/contracts/policy-ir`, implemented with Node's SHA-256. */
export const sha256Hex = (payload: string): string => createHash('sha256').update(payload, 'utf8').digest('hex');

export function snapshotChecksum(snapshot: PolicySnapshotBody | PolicySnapshot): string {
  return sha256Hex(checksumPayload(snapshot as PolicySnapshotBody));
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}

/** Freezes the IR, attaches its runtime and returns it. */
export function finishSnapshot(ir: PolicySnapshotIr, caches: CompileCaches = newCaches()): PolicySnapshot {
  const snapshot = deepFreeze(ir) as PolicySnapshot;
  attachRuntime(snapshot, buildRuntime(snapshot, caches));
  return snapshot;
}

/** The canonical JSON of a snapshot: the bytes to store; identical sources give identical bytes. */
export function serializeSnapshot(snapshot: PolicySnapshot): string {
  return canonicalJson(snapshot);
}

/**
 * Rebuilds a snapshot from its stored JSON (a string or an already-parsed value). Refuses, by throwing
 * `SnapshotLoadError`, an IR version this engine does not know, a malformed snapshot, or a checksum that does
 * not match its content. A gateway must keep serving its previous snapshot when this throws.
 */
export function loadSnapshot(json: string | unknown): PolicySnapshot {
  let value: unknown = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch (error) {
      throw new SnapshotLoadError('MALFORMED', `policy snapshot is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SnapshotLoadError('MALFORMED', 'policy snapshot must be a JSON object');
  }
  const irVersion = (value as { irVersion?: unknown }).irVersion;
  if (irVersion !== POLICY_IR_VERSION) {
    throw new SnapshotLoadError(
      'IR_VERSION_UNSUPPORTED',
      `policy snapshot IR version ${JSON.stringify(irVersion)} is not supported by this engine ` +
        `(supports ${POLICY_IR_VERSION}); upgrade the gateway or recompile the policy`,
    );
  }
  const parsed = policySnapshotIr.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : ` at ${issue.path.join('.') || '(root)'}: ${issue.message}`;
    throw new SnapshotLoadError('MALFORMED', `policy snapshot does not match IR v${POLICY_IR_VERSION}${where}`);
  }
  const expected = snapshotChecksum(parsed.data);
  if (expected !== parsed.data.checksum) {
    throw new SnapshotLoadError(
      'CHECKSUM_MISMATCH',
      `policy snapshot checksum mismatch (stored ${parsed.data.checksum}, content ${expected})`,
    );
  }
  try {
    return finishSnapshot(parsed.data);
  } catch (error) {
    if (error instanceof SnapshotLoadError) throw error;
    throw new SnapshotLoadError('MALFORMED', `policy snapshot could not be rebuilt: ${(error as Error).message}`);
  }
}
