// Child process for the crash test: appends audit events as fast as it can
// (yielding so the writes go out) until it is killed with SIGKILL.
// Usage: node crash-child.js FILE

import { openAuditWriter } from '../../../core/audit/open.js';
import { event } from './fixture.js';

const w = await openAuditWriter({ file: process.argv[2], fsyncIntervalMs: 5 });
let i = w.head.seq;
process.stdout.write('ready\n');
for (;;) {
  for (let k = 0; k < 50; k++) w.append(event(++i, { statement: `update orders set note = 'card 4111111111111111' where id = ${i}` }));
  await new Promise((r) => setImmediate(r));
}
