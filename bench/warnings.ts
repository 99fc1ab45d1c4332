/**
 * Counts MaxListenersExceededWarnings instead of printing them (other warnings still print).
 *
 * The SDK's StreamableHTTPClientTransport passes one long-lived AbortSignal to every fetch; undici removes
 * the abort listener it adds only when the Request is garbage-collected, so a busy session passes undici's
 * limit of 1500 listeners and Node prints one warning, with a stack, per request. Printed, they would bury
 * the report; counted, they are reported as a finding with where the first one came from.
 */
export interface WarningCount {
  count: number;
  firstStack?: string;
}

export function countListenerWarnings(label: string): WarningCount {
  const counted: WarningCount = { count: 0 };
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error) => {
    if (warning.name !== 'MaxListenersExceededWarning') {
      console.error(`${label}: ${warning.name}: ${warning.message}`);
      return;
    }
    counted.count++;
    counted.firstStack ??= (warning.stack ?? '')
      .split('\n')
      .slice(1)
      .map((line) => line.trim())
      .filter((line) => !line.startsWith('at node:') && !line.includes('(node:'))
      .slice(0, 5)
      .join(' < ');
  });
  return counted;
}
