// The binary numeric format: ndigits, weight, sign, dscale (int16 each), then ndigits
// base-10000 digits, most significant first; the value is Σ digit·10000^(weight−i).

export interface DecimalDigits {
  negative: boolean;
  /** Integer part without leading zeros ('' for 0). */
  int: string;
  /** Fraction digits, exactly dscale of them. */
  frac: string;
  dscale: number;
}

const NAN = 0xc000;
const PINF = 0xd000;
const NINF = 0xf000;

/** The digits of a binary numeric, or undefined for NaN and ±Infinity (no digits to mask). */
export function decodeNumeric(buf: Buffer, start: number, end: number): DecimalDigits | undefined {
  if (end - start < 8) throw new RangeError('truncated numeric value');
  const ndigits = buf.readInt16BE(start);
  const weight = buf.readInt16BE(start + 2);
  const sign = buf.readUInt16BE(start + 4);
  const dscale = buf.readInt16BE(start + 6);
  if (sign === NAN || sign === PINF || sign === NINF) return undefined;
  if (ndigits < 0 || end - start !== 8 + ndigits * 2 || dscale < 0) throw new RangeError('malformed numeric value');
  let int = '';
  let frac = '';
  for (let i = 0; i < ndigits; i++) {
    const d = buf.readInt16BE(start + 8 + i * 2).toString().padStart(4, '0');
    if (i <= weight) int += d;
    else frac += d;
  }
  for (let i = ndigits; i <= weight; i++) int += '0000';
  if (weight < -1) frac = '0000'.repeat(-weight - 1) + frac;
  int = int.replace(/^0+/, '');
  frac = frac.padEnd(dscale, '0').slice(0, dscale);
  return { negative: sign === 0x4000, int, frac, dscale };
}

export function encodeNumeric(negative: boolean, int: string, frac: string, dscale: number): Buffer {
  const intDigits = int.replace(/^0+/, '');
  const padInt = intDigits.padStart(Math.ceil(intDigits.length / 4) * 4, '0');
  const padFrac = frac.padEnd(Math.ceil(frac.length / 4) * 4, '0');
  const groups: number[] = [];
  for (let i = 0; i < padInt.length; i += 4) groups.push(Number(padInt.slice(i, i + 4)));
  let weight = groups.length - 1;
  for (let i = 0; i < padFrac.length; i += 4) groups.push(Number(padFrac.slice(i, i + 4)));
  while (groups.length && groups[groups.length - 1] === 0) groups.pop();
  while (groups.length && groups[0] === 0) {
    groups.shift();
    weight--;
  }
  const b = Buffer.alloc(8 + groups.length * 2);
  b.writeInt16BE(groups.length, 0);
  b.writeInt16BE(groups.length ? weight : 0, 2);
  b.writeUInt16BE(negative && groups.length ? 0x4000 : 0, 4);
  b.writeInt16BE(dscale, 6);
  groups.forEach((g, i) => b.writeInt16BE(g, 8 + i * 2));
  return b;
}
