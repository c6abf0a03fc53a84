// Fresh certificates for one throw-away Kubernetes control plane (see kube-cluster.ts),
// made with the openssl CLI: a CA, the API server's serving certificate, an admin client
// certificate in system:masters, and the service-account signing key pair.
// Everything lives in the cluster's own temp dir and dies with it.

import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface KubePki {
  caFile: string;
  caKeyFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  adminCertFile: string;
  adminKeyFile: string;
  saKeyFile: string;
  saPubFile: string;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await exec('openssl', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  }
}

// P-256 for TLS keeps generation fast; the service-account key is RSA because RS256 is
// what every JWKS verifier (and the API server's own default) expects.
async function ecKey(file: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
}

/** Issues a certificate for `subject` signed by `ca`, with the given openssl extension lines. */
export async function signed(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
  ca: { caFile: string; caKeyFile: string },
): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  await ecKey(key);
  await openssl(['req', '-new', '-key', key, '-out', csr, '-subj', subject]);
  await writeFile(ext, extensions);
  await openssl([
    'x509', '-req', '-in', csr, '-CA', ca.caFile, '-CAkey', ca.caKeyFile, '-CAcreateserial',
    '-out', cert, '-days', '2', '-sha256', '-extfile', ext,
  ]);
  return { cert, key };
}

/** Creates the PKI under `dir/pki`. `serviceIP` is the first address of the service CIDR (the in-cluster `kubernetes` Service). */
export async function makeKubePki(dir: string, serviceIP = '10.0.0.1'): Promise<KubePki> {
  const pki = path.join(dir, 'pki');
  await mkdir(pki, { recursive: true, mode: 0o700 });
  const caFile = path.join(pki, 'ca.crt');
  const caKeyFile = path.join(pki, 'ca.key');
  await ecKey(caKeyFile);
  await openssl([
    'req', '-x509', '-new', '-key', caKeyFile, '-out', caFile, '-days', '2', '-sha256',
    '-subj', '/CN=agentgate e2e kubernetes CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const ca = { caFile, caKeyFile };
  const sa = path.join(pki, 'sa.key');
  const saPub = path.join(pki, 'sa.pub');
  const [server, admin] = await Promise.all([
    signed(
      pki, 'apiserver', '/CN=kube-apiserver',
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth',
        `subjectAltName=IP:127.0.0.1,IP:${serviceIP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local`,
        '',
      ].join('\n'),
      ca,
    ),
    signed(
      pki, 'admin', '/O=system:masters/CN=agentgate-e2e-admin',
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyEncipherment', 'extendedKeyUsage=clientAuth', ''].join('\n'),
      ca,
    ),
    openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', sa]).then(() =>
      openssl(['pkey', '-in', sa, '-pubout', '-out', saPub]),
    ),
  ]);
  return {
    caFile, caKeyFile,
    serverCertFile: server.cert, serverKeyFile: server.key,
    adminCertFile: admin.cert, adminKeyFile: admin.key,
    saKeyFile: sa, saPubFile: saPub,
  };
}

/** A TLS serving certificate for 127.0.0.1/localhost signed by the cluster CA (webhooks, the sidecar's upstream test servers). */
export async function makeServingCert(pki: KubePki, dir: string, name: string): Promise<{ certFile: string; keyFile: string }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { cert, key } = await signed(
    dir, name, `/CN=${name}`,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'),
    { caFile: pki.caFile, caKeyFile: pki.caKeyFile },
  );
  return { certFile: cert, keyFile: key };
}
