// DALLE_LOG_LEVEL is lower-case (`debug`, `info`, `warn`, `error`, `silent`), the names our own messages
// use; Temporal's DefaultLogger wants its upper-case LogLevel and treats any other string as "log
// everything" (its severity lookup gives -1), so `silent` would have meant TRACE.
import type { LogLevel } from '@temporalio/common';

const LEVELS: Record<string, LogLevel> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARN',
  error: 'ERROR',
  // Temporal has no "off": errors still show.
  silent: 'ERROR',
};

export class LogLevelError extends Error {
  readonly fatal = true;
  constructor(readonly value: string) {
    super(`DALLE_LOG_LEVEL must be one of ${Object.keys(LEVELS).join(', ')}, got '${value}'`);
    this.name = 'LogLevelError';
  }
}

/** Temporal's log level for DALLE_LOG_LEVEL (any case); WARN when unset or empty. */
export function temporalLogLevel(value: string | undefined): LogLevel {
  if (!value) return 'WARN';
  const level = LEVELS[value.toLowerCase()];
  if (!level) throw new LogLevelError(value);
  return level;
}
