export { APPROVAL_RPC, HeldCallGate } from './lib/approval-gate';
export type { HeldCallGateOptions } from './lib/approval-gate';
export { PrismaApprovalStore } from './lib/approval-store';
export type { ApprovalState, ApprovalStore, NewApproval } from './lib/approval-store';
export { argumentsHash } from './lib/arguments-hash';
