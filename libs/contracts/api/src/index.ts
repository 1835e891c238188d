export { page, pageQuery, problemDetails, readinessReport, tenantSlug } from './lib/common';
export type { PageQuery, ProblemDetailsResponse } from './lib/common';
export { CHANGE_CHANNELS } from './lib/change-channels';
export type { ChangeChannel } from './lib/change-channels';
export { createTenantRequest, membershipRole, tenantListItem, tenantResponse, tenantStatus } from './lib/tenants';
export type { CreateTenantRequest, MembershipRole, TenantListItem, TenantResponse } from './lib/tenants';
export { addMemberRequest, memberResponse, updateMemberRequest } from './lib/members';
export type { AddMemberRequest, MemberResponse, UpdateMemberRequest } from './lib/members';
export {
  createUpstreamRequest,
  secretEnv,
  secretHeaders,
  toolPrefix,
  updateUpstreamRequest,
  upstreamResponse,
  upstreamTransport,
} from './lib/upstreams';
export type { CreateUpstreamRequest, UpdateUpstreamRequest, UpstreamResponse, UpstreamTransport } from './lib/upstreams';
export { agentClientKind, agentClientResponse, createAgentClientRequest } from './lib/agent-clients';
export type { AgentClientResponse, CreateAgentClientRequest } from './lib/agent-clients';
export { apiKeyResponse, createApiKeyRequest, createdApiKeyResponse } from './lib/api-keys';
export type { ApiKeyResponse, CreateApiKeyRequest, CreatedApiKeyResponse } from './lib/api-keys';
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
