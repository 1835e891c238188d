import { AppError } from '@portcullis/shared/util-errors';
import { REDACTED } from '@portcullis/shared/util-redact';

export const approvalErrors = {
  notFound: () => new AppError('NOT_FOUND', 'No such approval.'),
  alreadyClosed: (status: string) => new AppError('CONFLICT', `This approval is already ${status}; it cannot be decided again.`),
  argumentsChanged: () =>
    new AppError('CONFLICT', 'The held call’s arguments are not the ones you reviewed (argumentsHash differs): reload the approval.', {
      fields: [{ path: 'argumentsHash', message: 'does not match the held call' }],
    }),
  redactedArguments: () =>
    new AppError('VALIDATION_FAILED', 'The edited arguments still hold redacted values: enter every value the call needs.', {
      fields: [{ path: 'arguments', message: `contains ${JSON.stringify(REDACTED)}` }],
    }),
  editsNotApplicable: (problem: string) =>
    new AppError('VALIDATION_FAILED', `These edited arguments cannot run: ${problem}. Approve the call as held, edit it otherwise, or deny it.`, {
      fields: [{ path: 'arguments', message: problem }],
    }),
  roleNoLongerAllows: () => new AppError('FORBIDDEN', 'Your role in this tenant no longer allows deciding approvals.'),
  ownCall: () => new AppError('FORBIDDEN', 'You cannot decide on a call made by you or by an agent acting with your API key: ask another approver.'),
};
