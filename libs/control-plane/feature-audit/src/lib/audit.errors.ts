import { MAX_EXPORTS_IN_PROGRESS } from '@portcullis/audit/core';
import { AppError } from '@portcullis/shared/util-errors';

export const auditErrors = {
  exportNotFound: () => new AppError('NOT_FOUND', 'No such audit export.'),
  verifyBeyondHead: (headSeq: string) =>
    new AppError('BAD_REQUEST', `afterSeq is beyond the chain head (${headSeq}); continue from an earlier answer's lastSeq.`),
  exportNotReady: (status: string) =>
    new AppError('CONFLICT', `The export is ${status}; its file can be downloaded once it is completed.`),
  exportNotCancellable: (status: string) =>
    new AppError('CONFLICT', `The export is ${status}; only a queued or running export can be cancelled.`),
  exportFileGone: () =>
    new AppError('NOT_FOUND', 'The export file is no longer available (expired or removed); request a new export.'),
  tooManyRowsForSync: (max: number) =>
    new AppError(
      'BAD_REQUEST',
      `More than ${max} events match; narrow the filters or request an export job (POST .../audit/exports).`,
    ),
  tooManyExports: () =>
    new AppError('RATE_LIMITED', `This tenant already has ${MAX_EXPORTS_IN_PROGRESS} exports queued or running; wait for one to finish.`),
  tooManySyncExports: (max: number) =>
    new AppError('RATE_LIMITED', `This tenant already has ${max} downloads of audit events under way; wait for one to finish.`, { retryAfterSeconds: 5 }),
  tooManyVerifies: (max: number) =>
    new AppError('RATE_LIMITED', `This tenant already has ${max === 1 ? 'a verification' : `${max} verifications`} of its audit trail under way; wait for it to finish.`, { retryAfterSeconds: 5 }),
  verifierBusy: () =>
    new AppError('RATE_LIMITED', 'Audit trails are being verified for other tenants; try again shortly.', { retryAfterSeconds: 5 }),
  prunedMeanwhile: () =>
    new AppError('CONFLICT', 'Retention removed old events while the export read them, so it would not be one unbroken run of the trail; request it again.'),
  queueUnavailable: () =>
    new AppError('DEPENDENCY_UNAVAILABLE', 'The export could not be queued right now; try again shortly.'),
};
