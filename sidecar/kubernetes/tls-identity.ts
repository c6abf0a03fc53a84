// The loopback listener's CA and serving certificate, generated in memory at start.
// Node can sign but not build X.509 certificates, so node-forge assembles them; the
// RSA keys come from Node's native generator (forge's pure-JS one is far slower).
// The CA key never leaves this process: agents only ever see `ca.crt`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';

export interface ServingIdentity {
  caPem: string;
  certPem: string;
  keyPem: string;
}

export interface ServingIdentityOptions {
  /** DNS names and IP addresses the serving certificate is valid for. */
  dnsNames?: string[];
  ipAddresses?: string[];
  /** Validity (default 365 days); the sidecar restarts long before. */
  days?: number;
  commonName?: string;
}

function rsaKeys(): { pub: forge.pki.rsa.PublicKey; priv: forge.pki.rsa.PrivateKey; privPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return {
    pub: forge.pki.publicKeyFromPem(publicKey) as forge.pki.rsa.PublicKey,
    priv: forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey,
    privPem: privateKey,
  };
}

function serial(): string {
  // Positive 16-byte serial (high bit clear), as RFC 5280 wants.
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

/** Creates a fresh CA and a serving certificate it signed. */
export function createServingIdentity(opts: ServingIdentityOptions = {}): ServingIdentity {
  const days = opts.days ?? 365;
  const notBefore = new Date(Date.now() - 60_000); // tolerate small clock skew between containers
  const notAfter = new Date(notBefore.getTime() + days * 86_400_000);

  const ca = rsaKeys();
  const caCert = forge.pki.createCertificate();
  caCert.publicKey = ca.pub;
  caCert.serialNumber = serial();
  caCert.validity.notBefore = notBefore;
  caCert.validity.notAfter = notAfter;
  const caName = [{ name: 'commonName', value: `agentgate loopback CA ${randomBytes(4).toString('hex')}` }];
  caCert.setSubject(caName);
  caCert.setIssuer(caName);
  caCert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  caCert.sign(ca.priv, forge.md.sha256.create());

  const leaf = rsaKeys();
  const cert = forge.pki.createCertificate();
  cert.publicKey = leaf.pub;
  cert.serialNumber = serial();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: 'commonName', value: opts.commonName ?? 'agentgate-proxy' }]);
  cert.setIssuer(caName);
  const altNames = [
    ...(opts.dnsNames ?? ['localhost']).map((value) => ({ type: 2, value })),
    ...(opts.ipAddresses ?? ['127.0.0.1', '::1']).map((ip) => ({ type: 7, ip })),
  ];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(ca.priv, forge.md.sha256.create());

  return { caPem: forge.pki.certificateToPem(caCert), certPem: forge.pki.certificateToPem(cert), keyPem: leaf.privPem };
}
