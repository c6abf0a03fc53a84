// Collects a masker's output for one write. Unchanged bytes are kept as views of
// the input (no copy), so clean text costs one subarray per chunk; only changed
// stretches are copied.

export class Output {
  private parts: Uint8Array[] = [];
  private size = 0;
  private src: Uint8Array | null = null;
  private passStart = 0;
  private passEnd = 0;

  /** Bytes src[start, end) go out unchanged. */
  pass(src: Uint8Array, start: number, end: number): void {
    if (end <= start) return;
    if (src === this.src && start === this.passEnd) {
      this.passEnd = end;
      return;
    }
    this.flushPass();
    this.src = src;
    this.passStart = start;
    this.passEnd = end;
  }

  /** Bytes the caller owns (copied or built for this output). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.flushPass();
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  pushByte(b: number): void {
    this.push(Uint8Array.of(b));
  }

  private flushPass(): void {
    if (this.src !== null && this.passEnd > this.passStart) {
      this.parts.push(this.src.subarray(this.passStart, this.passEnd));
      this.size += this.passEnd - this.passStart;
    }
    this.src = null;
    this.passStart = this.passEnd = 0;
  }

  /** Everything collected since the last take, as one Buffer; resets. */
  take(): Buffer {
    this.flushPass();
    const parts = this.parts;
    let out: Buffer;
    if (parts.length === 0) out = Buffer.alloc(0);
    else if (parts.length === 1) {
      const p = parts[0];
      out = Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength);
    } else out = Buffer.concat(parts, this.size);
    this.parts = [];
    this.size = 0;
    return out;
  }

  /** Drops everything collected (fail closed after an error). */
  discard(): void {
    this.parts = [];
    this.size = 0;
    this.src = null;
    this.passStart = this.passEnd = 0;
  }
}
