// A least-recently-used map bounded both in entries and in (estimated) bytes.
// A Map keeps insertion order: a hit is re-inserted at the end, eviction takes the front.

export interface LruLimits {
  maxEntries: number;
  maxBytes: number;
}

export interface LruStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

export class LruCache<V> {
  private readonly map = new Map<string, { value: V; bytes: number }>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;

  constructor(private readonly limits: LruLimits) {
    if (!(limits.maxEntries >= 0) || !(limits.maxBytes >= 0)) throw new RangeError('cache limits must be non-negative');
  }

  get(key: string): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  /** `bytes` is the caller's estimate of the value's size; the key's is added here. */
  set(key: string, value: V, bytes: number): void {
    const size = bytes + key.length * 2 + 64;
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.bytes -= old.bytes;
    }
    // An entry that alone exceeds the budget would only flush everything else.
    if (size > this.limits.maxBytes || this.limits.maxEntries === 0) return;
    this.map.set(key, { value, bytes: size });
    this.bytes += size;
    while (this.map.size > this.limits.maxEntries || this.bytes > this.limits.maxBytes) {
      const first = this.map.keys().next();
      if (first.done) break;
      const e = this.map.get(first.value)!;
      this.map.delete(first.value);
      this.bytes -= e.bytes;
      this.evictions++;
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  stats(): LruStats {
    return { entries: this.map.size, bytes: this.bytes, hits: this.hits, misses: this.misses, evictions: this.evictions };
  }
}
