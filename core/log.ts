// Operational logs (not the audit trail). Structured JSON through pino to stderr,
// so stdout stays free for command output and `audit: { file: "-" }`.
// Never log a raw PAN or a credential: callers pass masked strings, and the
// redaction list below catches the fields that could carry credentials.

import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

export function createLogger(component: string, level = process.env.AGENTGATE_LOG_LEVEL ?? 'info'): Logger {
  return pino(
    {
      name: `agentgate-${component}`,
      level,
      base: { component },
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization', 'secret', '*.secret'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: false }),
  );
}
