/**
 * Leaf minting for intercept mode: the workload's side of split TLS (session D) is answered
 * with a certificate for the SNI it asked for, issued on the fly by the interception CA that
 * the pod trusts.
 *
 * Why @peculiar/x509: node:crypto can verify certificates but cannot issue them, and
 * node-forge has no elliptic curves. Key generation and signing stay in WebCrypto (Node's
 * OpenSSL underneath); @peculiar/x509 only assembles and encodes the TBSCertificate.
 *
 * Profile of a minted leaf (RFC 5280 §4.1, §4.2; CA/Browser Forum baseline where it matters
 * to TLS clients): ECDSA P-256 key; subjectAltName dNSName = SNI (iPAddress for an IP
 * literal); extendedKeyUsage serverAuth; keyUsage digitalSignature (critical);
 * basicConstraints cA=FALSE (critical); authorityKeyIdentifier = the CA's
 * subjectKeyIdentifier; 16 random bytes of positive serial; notBefore = now − 5 min (clock
 * skew between proxy and workload), notAfter = now + validityHours, capped at the CA's notAfter.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import crypto, { webcrypto, X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { pemBlocks, toPem } from './pem';
import { errText, privateKeyError } from './errors';
import { dnOf } from './certinfo';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** The DOM `CryptoKey` type @peculiar/x509 is declared with (Node's webcrypto.CryptoKey is the same object). */
type PeculiarKey = x509.X509CertificateCreateWithKeyParams['signingKey'];

/** @peculiar/x509, with Node's WebCrypto installed as its provider (for dev-pki and tests). */
export { x509 };

/** Why a leaf could not be minted, or the interception CA could not be used. */
export class MintError extends Error {
  constructor(
    readonly code: 'invalid_name' | 'bad_ca' | 'ca_expired' | 'ca_not_yet_valid' | 'unsupported_key',
    message: string,
  ) {
    super(message);
    this.name = 'MintError';
  }
}

/** Clock skew tolerated between the proxy and the workload (notBefore is back-dated by it). */
export const NOT_BEFORE_SKEW_MS = 5 * 60 * 1000;
/** A cached leaf is reused until this fraction of its validity period has elapsed. */
export const REUSE_FRACTION = 0.8;

export interface LeafMinterOptions {
  /** The interception CA certificate (PEM). Further certificates in the bundle are its chain, sent after the leaf. */
  caCertPem: string;
  /** The CA's private key (PEM: PKCS#8, SEC1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). */
  caKeyPem: string;
  /** Passphrase of an encrypted `caKeyPem`. */
  caKeyPassphrase?: string;
  /** Lifetime of a minted leaf, hours (default 24). */
  validityHours?: number;
  /** Most leaves kept (least recently used evicted first; default 1000, at least 1). */
  cacheSize?: number;
  /** Clock (default `() => new Date()`), injectable for tests. */
  now?: () => Date;
  /** Build a `tls.SecureContext` for every minted leaf (default true). */
  secureContext?: boolean;
}

/** One minted leaf, as the engine's downstream TLSSocket needs it. */
export interface MintedLeaf {
  /** The name the leaf was issued for: lower-cased SNI without trailing dot, or a canonical IP literal. */
  name: string;
  /** The leaf alone (PEM). */
  certPem: string;
  /** The leaf followed by the interception CA bundle (PEM): what the server side of session D sends. */
  chainPem: string;
  /** The leaf's PKCS#8 private key (PEM, unencrypted; it never leaves the process). */
  keyPem: string;
  certDer: Buffer;
  /** Serial number, lower-case hex (16 bytes). */
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
  /** `tls.createSecureContext({cert: chainPem, key: keyPem})`, built once per cached leaf. */
  secureContext?: tls.SecureContext;
}

/** A CA private key ready to sign through WebCrypto, with the signature algorithm that goes with it. */
export interface SigningKey {
  key: webcrypto.CryptoKey;
  algorithm: { name: 'ECDSA'; hash: string } | { name: 'RSASSA-PKCS1-v1_5'; hash: string };
}

const CURVES: Record<string, { webcrypto: string; hash: string }> = {
  prime256v1: { webcrypto: 'P-256', hash: 'SHA-256' },
  secp384r1: { webcrypto: 'P-384', hash: 'SHA-384' },
  secp521r1: { webcrypto: 'P-521', hash: 'SHA-512' },
};

/**
 * Imports a PEM private key (any encoding OpenSSL reads) into WebCrypto for signing.
 * EC keys on P-256/384/521 sign with ECDSA and the matching SHA-2; RSA keys with
 * PKCS#1 v1.5 and SHA-256. RSA-PSS and EdDSA CA keys are refused (`unsupported_key`).
 */
export async function importSigningKey(keyPem: string, passphrase?: string): Promise<SigningKey> {
  let keyObject: crypto.KeyObject;
  try {
    keyObject = crypto.createPrivateKey({ key: keyPem, format: 'pem', passphrase });
  } catch (e) {
    throw new MintError('bad_ca', `the CA key: ${privateKeyError(e)}`);
  }
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  if (keyObject.asymmetricKeyType === 'ec') {
    const curve = CURVES[keyObject.asymmetricKeyDetails?.namedCurve ?? ''];
    if (!curve) throw new MintError('unsupported_key', `CA key curve ${keyObject.asymmetricKeyDetails?.namedCurve} is not supported`);
    const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: curve.webcrypto }, false, ['sign']);
    return { key, algorithm: { name: 'ECDSA', hash: curve.hash } };
  }
  if (keyObject.asymmetricKeyType === 'rsa') {
    const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
    return { key, algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
  }
  throw new MintError('unsupported_key', `CA key type ${keyObject.asymmetricKeyType} is not supported (use EC or RSA)`);
}

/** What a leaf certificate says (the profile in the file docstring; dev-pki.ts issues its leaves the same way). */
export interface LeafCertificateSpec {
  serialHex: string;
  subject: x509.Name;
  /** The issuer's subject (`x509.X509Certificate.subjectName`, or its string form). */
  issuer: x509.Name | string;
  notBefore: Date;
  notAfter: Date;
  publicKey: webcrypto.CryptoKey;
  signing: SigningKey;
  eku: 'serverAuth' | 'clientAuth';
  san: { type: 'dns' | 'ip'; value: string }[];
  /** RFC 5280 §4.2.1.6: critical when the subject is empty. */
  sanCritical: boolean;
  /** The issuer's subjectKeyIdentifier, hex; null leaves authorityKeyIdentifier out. */
  authorityKeyIdHex: string | null;
}

/**
 * An end-entity certificate: basicConstraints cA=FALSE and keyUsage digitalSignature (both
 * critical), extendedKeyUsage `eku`, subjectAltName, authorityKeyIdentifier (when known) and
 * subjectKeyIdentifier.
 */
export async function createLeafCertificate(spec: LeafCertificateSpec): Promise<x509.X509Certificate> {
  const publicKey = spec.publicKey as unknown as PeculiarKey;
  return x509.X509CertificateGenerator.create({
    serialNumber: spec.serialHex,
    subject: spec.subject,
    issuer: spec.issuer,
    notBefore: spec.notBefore,
    notAfter: spec.notAfter,
    publicKey,
    signingKey: spec.signing.key as unknown as PeculiarKey,
    signingAlgorithm: spec.signing.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage[spec.eku]], false),
      new x509.SubjectAlternativeNameExtension(spec.san, spec.sanCritical),
      ...(spec.authorityKeyIdHex ? [new x509.AuthorityKeyIdentifierExtension(spec.authorityKeyIdHex, false)] : []),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
    ],
  });
}

/** 16 random bytes, top bit clear (positive INTEGER) and next bit set (no leading zero octet), as hex. */
export function randomSerialHex(): string {
  const b = crypto.randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b.toString('hex');
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/**
 * The name a leaf is issued for, normalised: a DNS name (RFC 6066 §3 HostName, A-labels,
 * lower-cased, trailing dot dropped; `_` tolerated as real servers use it) or an IP literal
 * (brackets of `[v6]` dropped). Wildcards and anything else are refused.
 * @throws MintError `invalid_name`
 */
export function normalizeLeafName(sni: string): { name: string; ip: boolean } {
  let s = sni.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (net.isIP(s) !== 0) {
    // Canonical form so that 127.000.000.001-style spellings cannot split the cache.
    return { name: net.isIPv6(s) ? new URL(`http://[${s}]/`).hostname.slice(1, -1) : s, ip: true };
  }
  s = s.toLowerCase();
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.length === 0 || s.length > 253) throw new MintError('invalid_name', `invalid server name (length ${s.length})`);
  const labels = s.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) throw new MintError('invalid_name', `invalid server name ${JSON.stringify(sni.slice(0, 80))}`);
  }
  return { name: s, ip: false };
}

interface CaMaterial {
  nodeCert: X509Certificate;
  subjectName: x509.Name;
  /** The CA's subjectKeyIdentifier (hex), or the RFC 5280 §4.2.1.2 method-1 hash of its key when it has none. */
  keyIdHex: string;
  notAfter: Date;
  signing: SigningKey;
  /** The CA certificate(s) as PEM, appended after the leaf. */
  chainPem: string;
}

interface CacheEntry {
  promise: Promise<MintedLeaf>;
  /** Epoch ms after which the entry is no longer handed out; Infinity while in flight. */
  reuseUntil: number;
}

/**
 * Issues and caches leaves for server names.
 *
 * The cache is an LRU keyed by the normalised name (lower-cased SNI): a leaf is reused until
 * 80% of its validity has passed, then re-minted; concurrent `mint` calls for one name share
 * one promise. A failed mint is not cached.
 */
export class LeafMinter {
  private readonly validityMs: number;
  private readonly cacheSize: number;
  private readonly now: () => Date;
  private readonly withContext: boolean;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly ca: Promise<CaMaterial>;

  /**
   * @throws MintError `bad_ca` synchronously when the CA certificate is unreadable, not a CA,
   *   or does not match the key; `ca_expired` / `ca_not_yet_valid` when it is outside its validity
   *   (5 min of clock skew allowed before notBefore); the key import itself fails on the first
   *   `mint` (it is async).
   */
  constructor(opts: LeafMinterOptions) {
    this.validityMs = (opts.validityHours ?? 24) * 3600_000;
    if (!(this.validityMs > 0)) throw new MintError('bad_ca', `validityHours must be positive, got ${opts.validityHours}`);
    this.cacheSize = Math.floor(opts.cacheSize ?? 1000);
    if (!(this.cacheSize >= 1)) throw new MintError('bad_ca', `cacheSize must be at least 1, got ${opts.cacheSize}`);
    this.now = opts.now ?? (() => new Date());
    this.withContext = opts.secureContext ?? true;
    const caDers = pemBlocks(opts.caCertPem, 'CERTIFICATE').map((b) => b.der);
    if (caDers.length === 0) throw new MintError('bad_ca', 'the interception CA PEM holds no CERTIFICATE');
    let nodeCert: X509Certificate;
    try {
      nodeCert = new X509Certificate(caDers[0]!);
    } catch (e) {
      throw new MintError('bad_ca', `cannot parse the interception CA certificate: ${errText(e)}`);
    }
    if (!nodeCert.ca) throw new MintError('bad_ca', `interception CA ${dnOf(nodeCert)} is not a CA (basicConstraints cA is not TRUE)`);
    // Workloads would reject every leaf it signs: refuse it at start, not on the first connection.
    const nowMs = this.now().getTime();
    if (new Date(nodeCert.validTo).getTime() <= nowMs) {
      throw new MintError('ca_expired', `the interception CA expired at ${new Date(nodeCert.validTo).toISOString()}; workloads would reject every minted leaf`);
    }
    if (new Date(nodeCert.validFrom).getTime() > nowMs + NOT_BEFORE_SKEW_MS) {
      throw new MintError('ca_not_yet_valid', `the interception CA is not valid before ${new Date(nodeCert.validFrom).toISOString()}; workloads would reject every minted leaf`);
    }
    let keyObject: crypto.KeyObject;
    try {
      keyObject = crypto.createPrivateKey({ key: opts.caKeyPem, format: 'pem', passphrase: opts.caKeyPassphrase });
    } catch (e) {
      throw new MintError('bad_ca', `the interception CA key: ${privateKeyError(e)}`);
    }
    if (!nodeCert.checkPrivateKey(keyObject)) {
      throw new MintError('bad_ca', `the interception CA private key does not match certificate ${dnOf(nodeCert)}`);
    }
    const chainPem = caDers.map((d) => toPem(d, 'CERTIFICATE')).join('');
    this.ca = this.loadCa(caDers[0]!, nodeCert, opts.caKeyPem, opts.caKeyPassphrase, chainPem);
    // A rejected CA promise is reported by every mint(); keep Node from flagging it as unhandled meanwhile.
    this.ca.catch(() => undefined);
  }

  private async loadCa(der: Buffer, nodeCert: X509Certificate, keyPem: string, passphrase: string | undefined, chainPem: string): Promise<CaMaterial> {
    const cert = new x509.X509Certificate(der);
    const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
    const keyIdHex = ski
      ? ski.keyId
      : (await x509.SubjectKeyIdentifierExtension.create(await cert.publicKey.export())).keyId;
    return {
      nodeCert,
      // Re-using the parsed Name keeps each attribute's string type, so the leaf's issuer is
      // byte-identical to the CA's subject (RFC 5280 §7.1 matching then succeeds in every client).
      subjectName: cert.subjectName,
      keyIdHex,
      notAfter: new Date(nodeCert.validTo),
      signing: await importSigningKey(keyPem, passphrase),
      chainPem,
    };
  }

  /**
   * A leaf for `sni` (a DNS name, or an IP literal when the front door knows only an address),
   * from the cache when a fresh one is there.
   * @throws MintError `invalid_name` for a name that is not a hostname or IP; `ca_expired` when
   *   the CA's validity leaves no room for a leaf; `bad_ca` / `unsupported_key` for CA key problems.
   */
  mint(sni: string): Promise<MintedLeaf> {
    let key: { name: string; ip: boolean };
    try {
      key = normalizeLeafName(sni);
    } catch (e) {
      return Promise.reject(e);
    }
    const nowMs = this.now().getTime();
    const hit = this.cache.get(key.name);
    if (hit && nowMs < hit.reuseUntil) {
      this.cache.delete(key.name); // move to most-recently-used
      this.cache.set(key.name, hit);
      return hit.promise;
    }
    const entry: CacheEntry = { promise: this.issue(key.name, key.ip), reuseUntil: Infinity };
    this.cache.delete(key.name);
    this.cache.set(key.name, entry);
    this.evict();
    entry.promise.then(
      (leaf) => {
        const lifetime = leaf.notAfter.getTime() - leaf.notBefore.getTime();
        entry.reuseUntil = leaf.notBefore.getTime() + lifetime * REUSE_FRACTION;
      },
      () => {
        if (this.cache.get(key.name) === entry) this.cache.delete(key.name);
      },
    );
    return entry.promise;
  }

  /** Number of cached (or in-flight) leaves. */
  get size(): number {
    return this.cache.size;
  }

  private evict(): void {
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }

  private async issue(name: string, ip: boolean): Promise<MintedLeaf> {
    const ca = await this.ca;
    const nowMs = this.now().getTime();
    const notBefore = new Date(Math.floor((nowMs - NOT_BEFORE_SKEW_MS) / 1000) * 1000);
    const notAfter = new Date(Math.min(Math.floor((nowMs + this.validityMs) / 1000) * 1000, ca.notAfter.getTime()));
    if (notAfter.getTime() <= nowMs) {
      throw new MintError('ca_expired', `interception CA ${dnOf(ca.nodeCert)} expired at ${ca.notAfter.toISOString()}`);
    }
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const serialHex = randomSerialHex();
    // CN is limited to 64 characters (RFC 5280 Appendix A ub-common-name); longer names live only
    // in the SAN, which must then be critical because the subject is empty (§4.2.1.6).
    const subject = name.length <= 64 ? [{ CN: [name] }] : [];
    const cert = await createLeafCertificate({
      serialHex,
      subject: new x509.Name(subject),
      issuer: ca.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signing: ca.signing,
      eku: 'serverAuth',
      san: [{ type: ip ? 'ip' : 'dns', value: name }],
      sanCritical: subject.length === 0,
      authorityKeyIdHex: ca.keyIdHex,
    });
    const certDer = Buffer.from(cert.rawData);
    const certPem = toPem(certDer, 'CERTIFICATE');
    const keyPem = toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY');
    const leaf: MintedLeaf = {
      name,
      certPem,
      chainPem: certPem + ca.chainPem,
      keyPem,
      certDer,
      serialHex,
      notBefore,
      notAfter,
    };
    if (this.withContext) leaf.secureContext = createTlsContext(leaf);
    return leaf;
  }
}

/**
 * The SecureContext the workload-facing TLSSocket uses for a minted leaf: the leaf and the CA
 * chain as `cert`, its key as `key`. Build it once per cached leaf (OpenSSL parses the PEM each time).
 * @param extra further options (ciphers, ALPN-independent settings) merged in
 */
export function createTlsContext(minted: Pick<MintedLeaf, 'chainPem' | 'keyPem'>, extra: tls.SecureContextOptions = {}): tls.SecureContext {
  return tls.createSecureContext({ ...extra, cert: minted.chainPem, key: minted.keyPem });
}
