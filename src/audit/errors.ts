/** Why an audit operation failed. Callers fail closed on any of them. */
export type AuditErrorCode =
  | 'countersign.audit.unavailable'
  | 'countersign.audit.contended'
  | 'countersign.audit.chain_broken'
  | 'countersign.audit.invalid_event'
  | 'countersign.audit.closed';

export class AuditError extends Error {
  constructor(
    readonly code: AuditErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AuditError';
  }
}

/** Redis could not be reached, or the command failed: the event is not (known to be) in the trail. */
export function auditUnavailable(cause: unknown): AuditError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new AuditError('countersign.audit.unavailable', `audit trail unavailable (Redis): ${reason}`, {
    cause,
  });
}
