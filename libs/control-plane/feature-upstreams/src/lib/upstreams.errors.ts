import { AppError } from '@portcullis/shared/util-errors';

const invalid = (path: string, message: string) =>
  new AppError('VALIDATION_FAILED', 'The request is not valid.', { fields: [{ path, message }] });

export const upstreamErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such upstream.'),
  toolPrefixTaken: (prefix: string, holder: string) =>
    new AppError(
      'CONFLICT',
      `Tool prefix "${prefix}" is already used by upstream "${holder}" in this tenant; their tool names would collide. Choose another prefix.`,
      { fields: [{ path: 'toolPrefix', message: `already used by upstream "${holder}"` }] },
    ),
  nameTaken: (name: string) =>
    new AppError('CONFLICT', `An upstream named "${name}" already exists in this tenant.`, {
      fields: [{ path: 'name', message: 'already used' }],
    }),
  conflict: () => new AppError('CONFLICT', 'The name or tool prefix is already used in this tenant.'),
  stdioNeedsPlatformAdmin: () =>
    new AppError('FORBIDDEN', 'Only platform admins may create stdio upstreams or change their command, arguments or environment.'),
  commandNotAllowed: () => invalid('command', 'not in the stdio command allowlist of this installation'),
  fieldNotForTransport: (field: string, transport: string) => invalid(field, `does not apply to ${transport} upstreams`),
};
