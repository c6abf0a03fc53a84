// SPDY/3.1 framing and header compression as the exec relay uses them. No server:
// frames are built here and cut at every byte boundary.

import { expect } from 'chai';
import zlib from 'node:zlib';
import { CONTROL, FLAG_FIN, FrameReader, HeaderDeflater, HeaderInflater, SPDY_DICTIONARY, SpdyProtocolError, controlFrame, dataFrame, headerBlockOf } from '../../../sidecar/kubernetes/spdy.js';

describe('SPDY/3.1 framing', () => {
  it('has the 1423-byte header dictionary of the SPDY/3 draft, ending in ",enq=0."', () => {
    expect(SPDY_DICTIONARY.length).to.equal(1423);
    expect(SPDY_DICTIONARY.subarray(0, 11)).to.deep.equal(Buffer.from('\0\0\0\x07options', 'latin1'));
    expect(SPDY_DICTIONARY.subarray(-7).toString('latin1')).to.equal(',enq=0.');
  });

  it('reads the same frames however the bytes are cut', () => {
    const bytes = Buffer.concat([controlFrame(CONTROL.PING, 0, Buffer.of(0, 0, 0, 1)), dataFrame(3, FLAG_FIN, Buffer.from('hello')), dataFrame(5, 0, Buffer.alloc(0))]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const r = new FrameReader();
      const frames = [...r.push(bytes.subarray(0, cut)), ...r.push(bytes.subarray(cut))];
      expect(frames.map((f) => [f.control, f.type, f.streamId, f.flags, f.payload.toString()])).to.deep.equal([
        [true, CONTROL.PING, 0, 0, '\0\0\0\x01'],
        [false, 0, 3, FLAG_FIN, 'hello'],
        [false, 0, 5, 0, ''],
      ]);
    }
  });

  it('refuses a control frame of another SPDY version', () => {
    const f = controlFrame(CONTROL.PING, 0, Buffer.of(0, 0, 0, 1));
    f.writeUInt16BE(0x8002, 0);
    expect(() => new FrameReader().push(f)).to.throw(SpdyProtocolError, 'SPDY version 2 (only 3 is spoken)');
  });

  it('inflates header blocks of one direction in order, sharing one zlib context', async () => {
    const d = new HeaderDeflater();
    const i = new HeaderInflater();
    const a = await d.deflate({ streamtype: 'error' });
    const b = await d.deflate({ streamtype: 'stdout' });
    expect(Object.fromEntries(await i.inflate(a))).to.deep.equal({ streamtype: 'error' });
    expect(Object.fromEntries(await i.inflate(b))).to.deep.equal({ streamtype: 'stdout' });
    // The second block depends on the first: alone it does not inflate.
    expect(() => zlib.inflateSync(b, { dictionary: SPDY_DICTIONARY })).to.throw();
    d.close();
    i.close();
  });

  it('finds the header block of a SYN_STREAM after its 10 fixed bytes', async () => {
    const d = new HeaderDeflater();
    const block = await d.deflate({ streamtype: 'stdin' });
    const payload = Buffer.concat([Buffer.of(0, 0, 0, 7, 0, 0, 0, 0, 0, 0), block]);
    const [f] = new FrameReader().push(controlFrame(CONTROL.SYN_STREAM, 0, payload));
    expect(f!.streamId).to.equal(7);
    expect(headerBlockOf(f!)).to.deep.equal(block);
    d.close();
  });
});

describe('exec over SPDY/3.1 at the frame level (API server: the double)', function () {
  this.timeout(30_000);
  it('masks a PAN the container writes across two DATA frames and keeps the byte count of the stream', async () => {
    const { startHarness, PAN_MASKED } = await import('./harness.js');
    const tls = await import('node:tls');
    const { readFile } = await import('node:fs/promises');
    const path = await import('node:path');
    const h = await startHarness();
    try {
      h.double.put('namespaces', { metadata: { name: 'payments' } });
      h.double.put('pods', { metadata: { name: 'debug-0', namespace: 'payments' } });
      const [host, port] = [h.proxy.address.replace(/:\d+$/, ''), Number(h.proxy.address.split(':').pop())];
      const sock = tls.connect({ host, port, ca: await readFile(path.join(h.identityDir, 'ca.crt'), 'utf8') });
      await new Promise((r) => sock.once('secureConnect', r));
      sock.write(
        `POST /api/v1/namespaces/payments/pods/debug-0/exec?command=cat&stdin=true&stdout=true HTTP/1.1\r\nHost: ${h.proxy.address}\r\n` +
          `Authorization: Bearer ${await h.token()}\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n`,
      );
      let buf = Buffer.alloc(0);
      const reader = new FrameReader();
      const frames: import('../../../sidecar/kubernetes/spdy.js').Frame[] = [];
      let upgraded = false;
      sock.on('data', (c: Buffer) => {
        if (upgraded) return void frames.push(...reader.push(c));
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          upgraded = true;
          expect(buf.subarray(0, 12).toString()).to.equal('HTTP/1.1 101');
          frames.push(...reader.push(buf.subarray(end + 4)));
        }
      });
      await until(() => upgraded);
      const d = new HeaderDeflater();
      const syn = async (id: number, type: string) =>
        controlFrame(CONTROL.SYN_STREAM, 0, Buffer.concat([Buffer.of(0, 0, 0, id, 0, 0, 0, 0, 0, 0), await d.deflate({ streamtype: type })]));
      sock.write(await syn(1, 'error'));
      sock.write(await syn(3, 'stdin'));
      sock.write(await syn(5, 'stdout'));
      await until(() => frames.filter((f) => f.control && f.type === CONTROL.SYN_REPLY).length === 3);
      sock.write(dataFrame(3, 0, Buffer.from('card 41111111')));
      sock.write(dataFrame(3, 0, Buffer.from('11111111 end\n')));
      sock.write(dataFrame(3, FLAG_FIN, Buffer.alloc(0)));
      await until(() => frames.some((f) => !f.control && f.streamId === 1 && f.flags & FLAG_FIN));
      const stdout = frames.filter((f) => !f.control && f.streamId === 5);
      expect(Buffer.concat(stdout.map((f) => f.payload)).toString()).to.equal(`card ${PAN_MASKED} end\n`);
      expect(stdout.reduce((n, f) => n + f.payload.length, 0)).to.equal('card 4111111111111111 end\n'.length);
      d.close();
      sock.destroy();
    } finally {
      await h.stop();
    }
  });
});

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
