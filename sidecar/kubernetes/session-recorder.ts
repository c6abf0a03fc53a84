// Exec/attach session recordings in asciicast v2 (one JSON header line, then
// `[seconds, "o"|"i"|"r"|"m", data]` lines), so `asciinema play FILE` replays them.
// Everything written is already masked: stdout/stderr by the stream maskers, stdin
// here, so a PAN typed or printed never reaches the disk.

import { createWriteStream, mkdirSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { createTextMasker } from '../../core/mask/text.js';
import { maskValue } from '../../core/mask/value.js';
import type { TextMasker } from '../../core/mask/text.js';
import type { MaskOptions } from '../../core/mask/options.js';

export class SessionRecorder {
  readonly file: string;
  private readonly out: WriteStream;
  private readonly t0 = process.hrtime.bigint();
  private readonly decoders = new Map<string, StringDecoder>();
  private readonly stdin: TextMasker;

  constructor(dir: string, session: string, header: { command: string; title: string }, opts: MaskOptions) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = path.join(dir, `${session}.cast`);
    this.out = createWriteStream(this.file, { flags: 'wx', mode: 0o600 });
    this.stdin = createTextMasker(opts);
    this.out.write(`${JSON.stringify({ version: 2, width: 80, height: 24, timestamp: Math.floor(Date.now() / 1000), command: maskValue(header.command, opts), title: maskValue(header.title, opts) })}\n`);
  }

  private at(): number {
    return Math.round(Number(process.hrtime.bigint() - this.t0) / 1e3) / 1e6;
  }

  private text(kind: string, bytes: Uint8Array): string {
    let d = this.decoders.get(kind);
    if (!d) this.decoders.set(kind, (d = new StringDecoder('utf8')));
    return d.write(Buffer.from(bytes));
  }

  /** Output that is already masked (stdout, stderr). */
  output(masked: Uint8Array): void {
    const s = this.text('o', masked);
    if (s) this.out.write(`${JSON.stringify([this.at(), 'o', s])}\n`);
  }

  /** Raw stdin: masked here before it is written. */
  input(raw: Uint8Array): void {
    const s = this.text('i', this.stdin.write(raw));
    if (s) this.out.write(`${JSON.stringify([this.at(), 'i', s])}\n`);
  }

  resize(width: number, height: number): void {
    this.out.write(`${JSON.stringify([this.at(), 'r', `${width}x${height}`])}\n`);
  }

  marker(label: string): void {
    this.out.write(`${JSON.stringify([this.at(), 'm', label])}\n`);
  }

  async close(): Promise<void> {
    const rest = this.text('i', this.stdin.end());
    if (rest) this.out.write(`${JSON.stringify([this.at(), 'i', rest])}\n`);
    await new Promise<void>((resolve) => this.out.end(resolve));
  }
}
