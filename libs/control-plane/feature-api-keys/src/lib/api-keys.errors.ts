import { AppError } from '@portcullis/shared/util-errors';

export const apiKeyErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such API key.'),
  agentClientNotFound: () =>
    new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      fields: [{ path: 'agentClientId', message: 'no such agent client in this tenant' }],
    }),
  agentClientDisabled: () =>
    new AppError('CONFLICT', 'The agent client is disabled; enable it before creating keys for it.'),
  tooManyForAgentClient: (max: number) =>
    new AppError('CONFLICT', `This agent client already has ${max} keys that work: revoke one it no longer uses first.`),
  tooManyForTenant: (max: number) =>
    new AppError('CONFLICT', `This tenant already has ${max} API keys that work: revoke keys no longer used first.`),
  /** The caller's role changed (or they left the tenant) after the access check. */
  roleNoLongerAllows: () => new AppError('FORBIDDEN', 'Your role in this tenant no longer allows creating API keys.'),
};
