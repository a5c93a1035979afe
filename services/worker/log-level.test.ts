import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogLevelError, temporalLogLevel } from './log-level.ts';

test('log level: DALLE_LOG_LEVEL in lower case maps to the Temporal logger level', () => {
  assert.equal(temporalLogLevel(undefined), 'WARN');
  assert.equal(temporalLogLevel(''), 'WARN');
  assert.equal(temporalLogLevel('debug'), 'DEBUG');
  assert.equal(temporalLogLevel('silent'), 'ERROR');
  assert.equal(temporalLogLevel('WARN'), 'WARN');
  assert.throws(
    () => temporalLogLevel('loud'),
    (e: unknown) => e instanceof LogLevelError && /got 'loud'/.test(e.message),
  );
});
