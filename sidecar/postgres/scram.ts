// SCRAM-SHA-256 client side (RFC 5802, RFC 7677) as PostgreSQL speaks it: the user
// name in the SASL exchange is empty (the server takes the startup user), and no
// channel binding ("n,,"). The server's signature is verified, so a server that
// does not know the password cannot complete the exchange.

import crypto from 'node:crypto';

export class ScramError extends Error {
  override name = 'ScramError';
}

// PBKDF2 with thousands of iterations costs milliseconds; the salt and count of a
// role only change with its password, so reconnects reuse the derived key.
const saltedCache = new Map<string, Buffer>();

function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  const key = `${iterations}:${salt.toString('base64')}:${crypto.createHash('sha256').update(password).digest('base64')}`;
  let v = saltedCache.get(key);
  if (!v) {
    v = crypto.pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
    if (saltedCache.size > 64) saltedCache.clear();
    saltedCache.set(key, v);
  }
  return v;
}

const hmac = (key: Buffer, data: string) => crypto.createHmac('sha256', key).update(data).digest();

export class ScramClient {
  private readonly clientNonce = crypto.randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=,r=${this.clientNonce}`;
  private expectedServerSignature?: Buffer;

  constructor(private readonly password: string) {}

  /** The SASLInitialResponse payload. */
  clientFirst(): string {
    return `n,,${this.clientFirstBare}`;
  }

  /** Takes the server-first message, returns the client-final message. */
  clientFinal(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations < 1) throw new ScramError('malformed SCRAM server-first-message');
    if (!nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) throw new ScramError('SCRAM server nonce does not extend the client nonce');
    const salted = saltedPassword(this.password, Buffer.from(salt, 'base64'), iterations);
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = crypto.createHash('sha256').update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.allocUnsafe(32);
    for (let i = 0; i < 32; i++) proof[i] = clientKey[i] ^ clientSignature[i];
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage);
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Verifies the server-final message; throws unless the server proved it knows the password. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = parseAttributes(serverFinal);
    if (attrs.has('e')) throw new ScramError(`SCRAM error from server: ${attrs.get('e')}`);
    const v = attrs.get('v');
    if (!v || !this.expectedServerSignature) throw new ScramError('malformed SCRAM server-final-message');
    const got = Buffer.from(v, 'base64');
    if (got.length !== 32 || !crypto.timingSafeEqual(got, this.expectedServerSignature)) throw new ScramError('SCRAM server signature does not match: the server does not know the password');
  }
}

function parseAttributes(msg: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const part of msg.split(',')) {
    const eq = part.indexOf('=');
    if (eq === 1) m.set(part[0], part.slice(2));
  }
  return m;
}

/** PostgreSQL's MD5 password response: "md5" + md5(md5(password + user) + salt). */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = crypto.createHash('md5').update(password + user).digest('hex');
  return 'md5' + crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
}
