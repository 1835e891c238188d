import { AppError } from '@portcullis/shared/util-errors';

export const memberErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such member.'),
  alreadyMember: (email: string) =>
    new AppError('CONFLICT', `${email} is already a member of this tenant.`, { fields: [{ path: 'email', message: 'already a member' }] }),
  lastOwner: () =>
    new AppError('CONFLICT', 'A tenant must keep at least one owner: make someone else owner first.'),
  onlyOwnersManageOwners: () => new AppError('FORBIDDEN', 'Only owners may grant the owner role or change or remove an owner.'),
  noLongerMember: () => new AppError('FORBIDDEN', 'You are no longer a member of this tenant.'),
  roleNoLongerAllows: (role: string) => new AppError('FORBIDDEN', `Your role (${role}) does not allow this in this tenant.`),
};
