import { AppError } from '@portcullis/shared/util-errors';

export const tenantErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such tenant.'),
  slugTaken: (slug: string) =>
    new AppError('CONFLICT', `The slug "${slug}" is already used by another tenant.`, {
      fields: [{ path: 'slug', message: 'already used' }],
    }),
};
