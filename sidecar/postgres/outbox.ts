// One input chunk's output for the other socket, with no copy of forwarded frames.

/**
 * What one input chunk produces for the other socket: runs of frames forwarded as they
 * are leave as subarrays of the chunk (no copy; the whole chunk when nothing changed),
 * replacement frames in between, all in one write. Reused for every chunk.
 */
export class Outbox {
  readonly out: Buffer[] = [];
  private runStart = 0;
  private lastEnd = 0;

  reset(): void {
    this.out.length = 0;
    this.runStart = 0;
    this.lastEnd = 0;
  }

  /** `rep`: undefined forwards the frame [start, end) as it is, a Buffer replaces it, null drops it. */
  frame(rep: Buffer | null | undefined, buf: Buffer, start: number, end: number): void {
    if (rep !== undefined) {
      if (start > this.runStart) this.out.push(buf.subarray(this.runStart, start));
      if (rep !== null) this.out.push(rep);
      this.runStart = end;
    }
    this.lastEnd = end;
  }

  /** Adds the last untouched run of `data` (the buffer the frames were read from); true when there is anything to write. */
  finish(data: Buffer): boolean {
    if (this.lastEnd > this.runStart) this.out.push(this.runStart === 0 && this.lastEnd === data.length ? data : data.subarray(this.runStart, this.lastEnd));
    return this.out.length > 0;
  }
}
