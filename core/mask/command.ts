// `agentgate mask`: a stdin → stdout filter, streaming chunk by chunk, so it can
// sit in a pipe in front of anything that writes logs or query output.

import { UsageError, parseFlags } from '../cli/command.js';
import type { Command } from '../cli/command.js';
import { pipeline } from 'node:stream/promises';
import { JsonMaskError, JsonMasker } from './json.js';
import { maskerTransform } from './stream.js';
import type { KeepMode } from './options.js';
import { TextMasker } from './text.js';
import type { StreamMasker } from './text.js';

const usage = `Usage: agentgate mask [--format text|json] [--keep last4|bin+last4]

Masks card data from stdin to stdout, streaming.
  --format text   (default) every PAN masked in place: digits become '*', the last
                  four stay, separators and length stay. Other bytes are untouched.
  --format json   JSON values (one document, NDJSON, watch events): PANs masked in
                  strings and keys, a PAN written as a number becomes a masked string,
                  values of card-data keys (cvv, cvc, pin, track1, track2, ...) are
                  starred whole. Invalid JSON: exit 1, nothing written after the error.
  --keep last4      keep the last four digits (default)
  --keep bin+last4  keep the first six and the last four

Example:
  echo 'card 4111 1111 1111 1111 ok' | agentgate mask
  card **** **** **** 1111 ok
`;

export const command: Command = {
  name: 'mask',
  summary: 'mask card data (PANs, CVV, track data) from stdin to stdout',
  usage,
  async run(argv) {
    const { values } = parseFlags(argv, {
      format: { type: 'string', default: 'text' },
      keep: { type: 'string', default: 'last4' },
    });
    const format = values.format;
    if (format !== 'text' && format !== 'json') throw new UsageError(`--format must be 'text' or 'json', not '${format}'`);
    const keep = values.keep;
    if (keep !== 'last4' && keep !== 'bin+last4') throw new UsageError(`--keep must be 'last4' or 'bin+last4', not '${keep}'`);
    const masker: StreamMasker = format === 'json' ? new JsonMasker({ keep: keep as KeepMode }) : new TextMasker({ keep: keep as KeepMode });
    return filter(masker);
  },
};

async function filter(masker: StreamMasker): Promise<number> {
  try {
    // pipeline: backpressure from stdout, and every stream's error lands here.
    await pipeline(process.stdin, maskerTransform(masker), process.stdout);
  } catch (err) {
    if (err instanceof JsonMaskError) {
      process.stderr.write(`agentgate mask: ${err.message}\n`);
      return 1;
    }
    // The reader went away (`agentgate mask | head`): stop quietly, like cat.
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return 0;
    process.stderr.write(`agentgate mask: ${(err as Error).message}\n`);
    return 1;
  }
  return 0;
}
