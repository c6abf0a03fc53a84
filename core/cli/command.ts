// The shape every `agentgate <command>` module exports, and the argument parsing
// they share, so that every command fails the same way on bad input: exit 2 and
// one clear line.

import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

export interface Command {
  name: string;
  /** One line for `agentgate --help`. */
  summary: string;
  /** Full text for `agentgate <name> --help`. */
  usage: string;
  /** Returns the exit code. Throw UsageError for bad flags or arguments. */
  run(argv: string[]): Promise<number>;
}

/** A wrong flag or argument: the CLI prints the message on one line and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs in strict mode, with its errors turned into UsageError. */
export function parseFlags<O extends Options>(
  argv: string[],
  options: O,
  opts: { positionals?: { min?: number; max?: number; name?: string } } = {},
) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: opts.positionals !== undefined });
  } catch (err) {
    // parseArgs messages are multi-line and mention internals; keep the first sentence.
    const msg = (err as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
    throw new UsageError(msg);
  }
  const p = opts.positionals;
  if (p) {
    const n = parsed.positionals.length;
    if (p.min !== undefined && n < p.min) throw new UsageError(`missing ${p.name ?? 'argument'}`);
    if (p.max !== undefined && n > p.max) throw new UsageError(`unexpected argument '${parsed.positionals[p.max]}'`);
  }
  return parsed;
}

/** Reads all of stdin (for `-f -` and filters like `agentgate mask`). */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
