import { AppError } from '@portcullis/shared/util-errors';

export const apiKeyErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such API key.'),
  agentClientNotFound: () =>
    new AppError('VALIDATION_FAILED', 'The request is not valid.', {
      fields: [{ path: 'agentClientId', message: 'no such agent client in this tenant' }],
    }),
  agentClientDisabled: () =>
    new AppError('CONFLICT', 'The agent client is disabled; enable it before creating keys for it.'),
};
