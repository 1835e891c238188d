import { AppError } from '@portcullis/shared/util-errors';

export const groupErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such group.'),
  externalIdTaken: (externalId: string) =>
    new AppError('CONFLICT', `A group with external id "${externalId}" already exists in this tenant.`, {
      fields: [{ path: 'externalId', message: 'already used by another group' }],
    }),
  memberNotFound: () => new AppError('NOT_FOUND', 'That user is not in this group.'),
  notATenantMember: () =>
    new AppError('VALIDATION_FAILED', 'Only members of the tenant can be added to its groups.', {
      fields: [{ path: 'userId', message: 'not a member of this tenant' }],
    }),
  changedMeanwhile: () => new AppError('CONFLICT', 'The group or the membership was removed while adding; reload and try again.'),
  alreadyInGroup: () =>
    new AppError('CONFLICT', 'That user is already in this group.', { fields: [{ path: 'userId', message: 'already in the group' }] }),
};
