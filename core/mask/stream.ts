// Node stream adapter: any StreamMasker as a Transform, for pipelines
// (`agentgate mask`, HTTP response bodies) that want backpressure for free.

import { Transform } from 'node:stream';
import { JsonMasker } from './json.js';
import type { MaskOptions } from './options.js';
import { TextMasker } from './text.js';
import type { StreamMasker } from './text.js';

export type MaskFormatName = 'text' | 'json';

export function createMaskStream(opts: MaskOptions & { format?: MaskFormatName } = {}): Transform {
  const masker: StreamMasker = opts.format === 'json' ? new JsonMasker(opts) : new TextMasker(opts);
  return maskerTransform(masker);
}

/** Wraps a masker; an invalid-JSON error ends the stream with that error and nothing after it. */
export function maskerTransform(masker: StreamMasker): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      let out: Buffer;
      try {
        out = masker.write(chunk);
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, out.length > 0 ? out : undefined);
    },
    flush(done) {
      let out: Buffer;
      try {
        out = masker.end();
      } catch (err) {
        done(err as Error);
        return;
      }
      done(null, out.length > 0 ? out : undefined);
    },
  });
}
