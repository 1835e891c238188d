import { AppError } from '@portcullis/shared/util-errors';

export const apiKeyErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such API key.'),
  agentClientNotFound: () =>
    new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      fields: [{ path: 'agentClientId', message: 'no such agent client in this tenant' }],
    }),
  agentClientDisabled: () =>
    new AppError('CONFLICT', 'The agent client is disabled; enable it before creating keys for it.'),
  /** The caller's role changed (or they left the tenant) after the access check. */
  roleNoLongerAllows: () => new AppError('FORBIDDEN', 'Your role in this tenant no longer allows creating API keys.'),
};
