import { AppError } from '@portcullis/shared/util-errors';

export const agentClientErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such agent client.'),
  nameTaken: (name: string) =>
    new AppError('CONFLICT', `An agent client named "${name}" already exists in this tenant.`, {
      fields: [{ path: 'name', message: 'already used' }],
    }),
};
