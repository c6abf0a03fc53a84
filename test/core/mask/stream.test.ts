// createMaskStream: the maskers as node:stream Transforms.

import { expect } from 'chai';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { createMaskStream } from '../../../core/mask/index.js';

async function through(chunks: string[], format: 'text' | 'json'): Promise<{ out: string; err?: Error }> {
  let out = '';
  const sink = new Writable({
    write(c: Buffer, _e, done) {
      out += c.toString();
      done();
    },
  });
  try {
    await pipeline(Readable.from(chunks.map((c) => Buffer.from(c))), createMaskStream({ format }), sink);
    return { out };
  } catch (err) {
    return { out, err: err as Error };
  }
}

describe('mask: Transform streams', () => {
  it('masks text cut across chunks', async () => {
    expect(await through(['card 4111 1111 ', '1111 1111 end'], 'text')).to.deep.equal({ out: 'card **** **** **** 1111 end' });
  });

  it('fails the pipeline on invalid JSON and writes nothing of the failing chunk', async () => {
    const r = await through(['{"a":"4111111111111111"}\n', '{"b": 4111111111111111 x'], 'json');
    expect(r.out).to.equal('{"a":"************1111"}\n');
    expect(r.err?.message).to.match(/^invalid JSON at line 2/);
  });
});
