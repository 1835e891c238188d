export { compile } from './lib/compile';
export { evaluate, upstreamInUse, usableTarget, visibleTools, type UsageContext } from './lib/evaluate';
export type { ListedTarget } from './lib/evaluate';
export { loadSnapshot, serializeSnapshot, snapshotChecksum } from './lib/snapshot';
export { foldCase, foldCaseWide, SnapshotLoadError, upstreamGlobMatches } from './lib/runtime';
export { compileGlob, GlobSyntaxError } from './lib/glob';
export { canonicalResourceUri } from './lib/resource-uri';
export type { Glob } from './lib/glob';
export type {
  CompileError,
  CompileResult,
  ConditionError,
  Decision,
  PolicyInput,
  PolicyPrincipal,
  PolicySnapshot,
  PolicyTargetRef,
} from './lib/types';
