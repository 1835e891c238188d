import type { CompileError } from '@portcullis/policy/engine';
import { AppError, type FieldIssue } from '@portcullis/shared/util-errors';

/** A compile error as a problem+json field issue: the path into the request, the rule it belongs to, the message. */
type RuleIssue = FieldIssue & { readonly ruleId: string | null };

const issues = (errors: readonly CompileError[]): RuleIssue[] =>
  errors.map((error) => ({
    path: error.path,
    ruleId: error.ruleId,
    message: error.ruleId === null ? error.message : `rule "${error.ruleId}": ${error.message}`,
  }));

export const policyErrors = {
  ifMatchRequired: () =>
    new AppError('PRECONDITION_REQUIRED', 'Send If-Match with the ETag of the policy you edited (GET the policy first).'),
  ifMatchMalformed: () => new AppError('PRECONDITION_FAILED', 'If-Match must be the policy ETag, e.g. "3".'),
  stale: (current: number) =>
    new AppError(
      'PRECONDITION_FAILED',
      `The policy changed since you read it (it is now at version ${current}). Reload it, reapply your edit and save again.`,
    ),
  doesNotCompile: (errors: readonly CompileError[]) =>
    new AppError('VALIDATION_FAILED', 'The policy does not compile; nothing was saved.', { fields: issues(errors) }),
  /** A change elsewhere (a member removed, an upstream renamed...) would leave the policy uncompilable. */
  changeBreaksPolicy: (errors: readonly CompileError[]) =>
    new AppError(
      'CONFLICT',
      'This change would make the tenant policy invalid (a rule refers to what it removes or renames); ' +
        'update or disable those rules first. Nothing was changed.',
      { fields: issues(errors) },
    ),
  snapshotNotFound: () => new AppError('NOT_FOUND', 'No such policy snapshot.'),
  snapshotNotRestorable: (version: number) =>
    new AppError('CONFLICT', `Snapshot ${version} was written in an older source format and cannot be restored.`),
  /** The old rules refer to a group, user or agent client that no longer exists. */
  rollbackBreaksPolicy: (version: number, errors: readonly CompileError[]) =>
    new AppError(
      'CONFLICT',
      `The rules of snapshot ${version} no longer compile against the tenant as it is now; nothing was changed.`,
      { fields: issues(errors) },
    ),
};
