// Checkpoint signing keys: Ed25519 (JWS alg EdDSA) or P-256 (ES256), read from a
// PEM (PKCS#8 private, SPKI public) or JWK file. A key is named by its RFC 7638
// JWK thumbprint, which is also the JWS `kid`, so `audit verify` can say which
// key signed and a mismatched key is reported as such rather than as a bad signature.

import { readFile, writeFile, mkdir, chmod } from 'node:fs/promises';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, importSPKI } from 'jose';
import type { CryptoKey, JWK } from 'jose';

export type CheckpointAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  alg: CheckpointAlg;
  kid: string;
  privateKey: CryptoKey;
}

export interface VerifyingKey {
  alg: CheckpointAlg;
  kid: string;
  publicKey: CryptoKey;
}

export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

function algOf(key: KeyObject, file: string): CheckpointAlg {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new KeyFileError(`${file}: unsupported key type ${key.asymmetricKeyType ?? 'unknown'}: use Ed25519 or EC P-256 (agentgate audit keygen makes one)`);
}

async function readKeyText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new KeyFileError(`${file}: cannot read key file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Parses the file into a Node KeyObject (private when it holds a private key). */
async function loadKeyObject(file: string): Promise<KeyObject> {
  const text = await readKeyText(file);
  try {
    if (text.trimStart().startsWith('{')) {
      const jwk = JSON.parse(text) as JWK;
      return 'd' in jwk && jwk.d ? createPrivateKey({ key: jwk as never, format: 'jwk' }) : createPublicKey({ key: jwk as never, format: 'jwk' });
    }
    return /-----BEGIN (ENCRYPTED )?PRIVATE KEY-----|-----BEGIN EC PRIVATE KEY-----/.test(text) ? createPrivateKey(text) : createPublicKey(text);
  } catch (err) {
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(`${file}: not a PEM or JWK key: ${(err as Error).message}`);
  }
}

async function thumbprint(pub: KeyObject): Promise<string> {
  return calculateJwkThumbprint(pub.export({ format: 'jwk' }) as JWK);
}

export async function loadSigningKey(file: string): Promise<SigningKey> {
  const key = await loadKeyObject(file);
  if (key.type !== 'private') throw new KeyFileError(`${file}: checkpoint signing needs the private key, this is a public key`);
  const alg = algOf(key, file);
  const pkcs8 = key.export({ format: 'pem', type: 'pkcs8' }).toString();
  return { alg, kid: await thumbprint(createPublicKey(key)), privateKey: await importPKCS8(pkcs8, alg) };
}

/** Accepts a public key, or a private key whose public half is used. */
export async function loadVerifyingKey(file: string): Promise<VerifyingKey> {
  const key = await loadKeyObject(file);
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const alg = algOf(pub, file);
  const spki = pub.export({ format: 'pem', type: 'spki' }).toString();
  return { alg, kid: await thumbprint(pub), publicKey: await importSPKI(spki, alg) };
}

export const PRIVATE_KEY_FILE = 'audit-signing.key.pem';
export const PUBLIC_KEY_FILE = 'audit-signing.pub.pem';

/** Writes a new key pair into dir: the private key with mode 0600, the public key 0644. Never overwrites unless force. */
export async function generateKeyFiles(dir: string, alg: CheckpointAlg = 'EdDSA', force = false): Promise<{ privateFile: string; publicFile: string; kid: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const privateFile = path.join(dir, PRIVATE_KEY_FILE);
  const publicFile = path.join(dir, PUBLIC_KEY_FILE);
  const flag = force ? 'w' : 'wx';
  try {
    await writeFile(privateFile, await exportPKCS8(privateKey), { mode: 0o600, flag });
    await chmod(privateFile, 0o600); // --force over an existing file keeps its old mode otherwise
    await writeFile(publicFile, await exportSPKI(publicKey), { mode: 0o644, flag });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileError(`${(err as NodeJS.ErrnoException).path}: already exists (use --force to replace it)`);
    throw err;
  }
  const kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  return { privateFile, publicFile, kid };
}

