#!/usr/bin/env node
// The `dalle` command. Runs the TypeScript CLI through tsx so there is one source of truth and no build step.
import { register } from 'tsx/esm/api';
register();
await import('../services/cli/main.ts');
