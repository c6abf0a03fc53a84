// Reads a file as lines with bounded memory, keeping what a verifier must report:
// the 1-based line number and whether the line ended with '\n' (a last line
// without one is a torn write or a cut file).

import { createReadStream } from 'node:fs';

export interface Line {
  /** 1-based. */
  no: number;
  text: string;
  /** False only for a last line with no '\n' after it. */
  terminated: boolean;
  /** Byte offset of the line's first byte. */
  offset: number;
}

export async function* readLines(file: string): AsyncGenerator<Line> {
  let no = 0;
  let offset = 0;
  let pending: Buffer[] = [];
  let pendingLen = 0;
  for await (const chunk of createReadStream(file)) {
    const buf = chunk as Buffer;
    let start = 0;
    let nl: number;
    while ((nl = buf.indexOf(0x0a, start)) !== -1) {
      const part = buf.subarray(start, nl);
      const whole = pendingLen ? Buffer.concat([...pending, part]) : part;
      pending = [];
      pendingLen = 0;
      no++;
      yield { no, text: whole.toString('utf8'), terminated: true, offset };
      offset += whole.length + 1;
      start = nl + 1;
    }
    if (start < buf.length) {
      pending.push(buf.subarray(start));
      pendingLen += buf.length - start;
    }
  }
  if (pendingLen) yield { no: no + 1, text: Buffer.concat(pending).toString('utf8'), terminated: false, offset };
}
