export { page, pageQuery, problemDetails, readinessReport, tenantSlug } from './lib/common';
export type { PageQuery, ProblemDetailsResponse } from './lib/common';
export { CHANGE_CHANNELS } from './lib/change-channels';
export type { ChangeChannel } from './lib/change-channels';
export { createTenantRequest, membershipRole, tenantListItem, tenantResponse, tenantStatus, updateTenantRequest } from './lib/tenants';
export type { CreateTenantRequest, MembershipRole, TenantListItem, TenantResponse, UpdateTenantRequest } from './lib/tenants';
export { auditResultMode, failMode, tenantRateLimit, tenantSettings } from './lib/tenant-settings';
export type { AuditResultMode, FailMode, TenantRateLimit, TenantSettings, TenantSettingsInput } from './lib/tenant-settings';
export { addMemberRequest, memberResponse, updateMemberRequest } from './lib/members';
export type { AddMemberRequest, MemberResponse, UpdateMemberRequest } from './lib/members';
export {
  argsWithEnv,
  createUpstreamRequest,
  isReservedUpstreamHeader,
  secretEnv,
  secretHeaders,
  toolApprovalMode,
  toolPrefix,
  updateUpstreamRequest,
  upstreamResponse,
  upstreamTransport,
} from './lib/upstreams';
export type { CreateUpstreamRequest, ToolApprovalMode, UpdateUpstreamRequest, UpstreamResponse, UpstreamTransport } from './lib/upstreams';
export {
  approveUpstreamToolRequest,
  forgetUpstreamToolsQuery,
  forgetUpstreamToolsResponse,
  TEST_CONNECTION_MAX_ITEMS,
  testConnectionResponse,
  upstreamToolKind,
  upstreamToolResponse,
  upstreamToolsQuery,
  upstreamToolsResponse,
  upstreamToolState,
} from './lib/upstream-tools';
export type {
  ApproveUpstreamToolRequest,
  ForgetUpstreamToolsQuery,
  ForgetUpstreamToolsResponse,
  TestConnectionResponse,
  UpstreamToolKindName,
  UpstreamToolResponse,
  UpstreamToolsQuery,
  UpstreamToolsResponse,
  UpstreamToolState,
} from './lib/upstream-tools';
export { agentClientKind, agentClientResponse, createAgentClientRequest } from './lib/agent-clients';
export type { AgentClientResponse, CreateAgentClientRequest } from './lib/agent-clients';
export { apiKeyResponse, createApiKeyRequest, createdApiKeyResponse } from './lib/api-keys';
export type { ApiKeyResponse, CreateApiKeyRequest, CreatedApiKeyResponse } from './lib/api-keys';
export {
  addGroupMemberRequest,
  createGroupRequest,
  groupExternalId,
  groupMemberResponse,
  groupResponse,
  groupSource,
  updateGroupRequest,
} from './lib/groups';
export type { AddGroupMemberRequest, CreateGroupRequest, GroupMemberResponse, GroupResponse, UpdateGroupRequest } from './lib/groups';
export {
  policyResponse,
  putPolicyRequest,
  savedPolicyResponse,
  simulatedDecision,
  simulatePolicyRequest,
  simulatePolicyResponse,
  simulateSubject,
  snapshotResponse,
  visibleTarget,
} from './lib/policies';
export type {
  ParsedPutPolicyRequest,
  ParsedSimulatePolicyRequest,
  PolicyResponse,
  PutPolicyRequest,
  SavedPolicyResponse,
  SimulatePolicyRequest,
  SimulatePolicyResponse,
  SnapshotResponse,
} from './lib/policies';
export {
  auditChainProblem,
  auditEventFilters,
  auditEventResponse,
  auditEventsExportQuery,
  auditEventsQuery,
  auditExportFormat,
  auditExportResponse,
  auditAnchorResponse,
  auditAnchorsQuery,
  auditVerifyQuery,
  auditVerifyResponse,
  createAuditExportRequest,
} from './lib/audit';
export type {
  AuditAnchorResponse,
  AuditAnchorsQuery,
  AuditEventFilters,
  AuditEventResponse,
  AuditEventsQuery,
  AuditExportResponse,
  AuditVerifyQuery,
  AuditVerifyResponse,
  CreateAuditExportRequest,
  ParsedCreateAuditExportRequest,
} from './lib/audit';
export { APPROVAL_EDITABLE_METHODS, approvalArgumentsHash, MAX_APPROVAL_ARGUMENT_BYTES, editedArgumentsProblem, approvalResponse, approvalStatus, approvalTargetKind, approveRequest, denyRequest, listApprovalsQuery } from './lib/approvals';
export type { ApprovalResponse, ApproveRequest, DenyRequest, ListApprovalsQuery } from './lib/approvals';
