/**
 * Proxy identities: the named certificate + key pairs that ca-proxy presents to an external
 * server that sends CertificateRequest (RFC 8446 §4.3.2, RFC 5246 §7.4.4), in place of the
 * workload's own certificate. Loaded once from configuration (`identities[]`) and validated
 * up front, so a bad file is a startup error naming the identity, never a failed handshake.
 */
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { IdentityConfig } from '../config/types';
import { dnOf } from './certinfo';
import { PemError, pemBlocks, pemCertificates, toPem } from './pem';
import { errText, privateKeyError } from './errors';

/** An identity that cannot be used. `identity` and `file` say which. */
export class IdentityError extends Error {
  constructor(
    readonly identity: string,
    readonly file: string | null,
    message: string,
  ) {
    super(`identity ${JSON.stringify(identity)}${file ? ` (${file})` : ''}: ${message}`);
    this.name = 'IdentityError';
  }
}

/** The options to hand to `tls.connect` / `tls.createSecureContext` for this identity. */
export type IdentitySecureContextOptions =
  /** PEM chain (leaf first) and the *decrypted* PKCS#8 key (an encrypted key file is decrypted once at load). */
  | { cert: string; key: string }
  | { pfx: Buffer; passphrase?: string };

export interface ProxyIdentity {
  name: string;
  secureContextOptions: IdentitySecureContextOptions;
  /** The leaf's subject, RFC 4514 string (as certinfo's `formatName`), or `unknown` (see `pfxLeaf`). */
  leafSubject: string;
  /** SHA-256 of the leaf's DER, lower-case hex; `unknown` when the leaf could not be read. */
  leafSha256: string;
  /** The leaf's notAfter; Invalid Date when unknown. */
  notAfter: Date;
  /** The files it was loaded from (for messages). */
  source: string;
}

export interface LoadIdentitiesOptions {
  /** Where `passphraseEnv` is looked up (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Clock for the expiry check (default now). */
  now?: Date;
  /** Receives the warnings (certificate expiring within 7 days). Default: none. */
  warn?: (message: string) => void;
}

/** An identity whose certificate expires within this window loads with a warning. */
export const EXPIRY_WARNING_MS = 7 * 86400_000;

function readFile(identity: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new IdentityError(identity, file, `cannot read file (${(e as NodeJS.ErrnoException).code ?? errText(e)})`);
  }
}

/**
 * The leaf of a PKCS#12 identity. Node has no public PKCS#12 parser, and the certificate bags
 * of an OpenSSL 3 `pkcs12 -export` file are encrypted (PBES2), so the only node-native way to
 * see the leaf is to let OpenSSL open the file: `createSecureContext({pfx})` does, and the
 * native SecureContext keeps the leaf it loaded, exposed as `context.getCertificate()` (DER).
 * That method is internal to Node (present in Node 18–22, used by Node's own tests); when a
 * Node release drops it we degrade to `leafSubject: 'unknown'` rather than shipping a second
 * PKCS#12 implementation (node-forge, or a PBES2/PKCS#12-KDF decoder of our own) just for a
 * display string. `openssl pkcs12` at run time is not an option: the proxy needs nothing but Node.
 */
function pfxLeaf(ctx: tls.SecureContext): X509Certificate | null {
  const native = (ctx as unknown as { context?: { getCertificate?: () => Buffer | null | undefined } }).context;
  try {
    const der = typeof native?.getCertificate === 'function' ? native.getCertificate() : null;
    return der ? new X509Certificate(der) : null;
  } catch {
    return null;
  }
}

const subjectOf = (cert: X509Certificate): string => dnOf(cert);

function checkValidity(name: string, file: string, leaf: X509Certificate, now: Date, warn?: (m: string) => void): void {
  const notBefore = new Date(leaf.validFrom);
  const notAfter = new Date(leaf.validTo);
  if (now >= notAfter) throw new IdentityError(name, file, `certificate ${subjectOf(leaf)} expired at ${notAfter.toISOString()}`);
  if (now < notBefore) throw new IdentityError(name, file, `certificate ${subjectOf(leaf)} is not valid before ${notBefore.toISOString()}`);
  if (notAfter.getTime() - now.getTime() < EXPIRY_WARNING_MS) {
    warn?.(`identity ${JSON.stringify(name)} (${file}): certificate ${subjectOf(leaf)} expires at ${notAfter.toISOString()}`);
  }
}

function passphraseOf(cfg: IdentityConfig, env: NodeJS.ProcessEnv): string | undefined {
  if (cfg.passphraseEnv === undefined) return undefined;
  const value = env[cfg.passphraseEnv];
  if (value === undefined) throw new IdentityError(cfg.name, null, `environment variable ${cfg.passphraseEnv} (passphraseEnv) is not set`);
  return value;
}

function loadPem(cfg: IdentityConfig, baseDir: string, passphrase: string | undefined, opts: LoadIdentitiesOptions): ProxyIdentity {
  const certFile = path.resolve(baseDir, cfg.cert!);
  const keyFile = path.resolve(baseDir, cfg.key!);
  const certText = readFile(cfg.name, certFile).toString('utf8');
  let chain: Buffer[];
  try {
    chain = pemCertificates(certText, certFile);
  } catch (e) {
    throw new IdentityError(cfg.name, certFile, e instanceof PemError ? e.message.slice(certFile.length + 2) : errText(e));
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]!);
  } catch (e) {
    throw new IdentityError(cfg.name, certFile, `cannot parse the first certificate: ${errText(e)}`);
  }
  const keyText = readFile(cfg.name, keyFile).toString('utf8');
  try {
    if (pemBlocks(keyText, undefined, keyFile).every((b) => !b.label.endsWith('PRIVATE KEY'))) {
      throw new IdentityError(cfg.name, keyFile, 'no PEM PRIVATE KEY block found');
    }
  } catch (e) {
    if (e instanceof IdentityError) throw e;
    throw new IdentityError(cfg.name, keyFile, errText(e));
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey({ key: keyText, format: 'pem', passphrase: passphrase ?? '' });
  } catch (e) {
    throw new IdentityError(cfg.name, keyFile, privateKeyError(e));
  }
  // The key must belong to the leaf, or every server that asks for a certificate fails the
  // CertificateVerify check — only after the workload's connection is already committed.
  if (!leaf.checkPrivateKey(key)) {
    throw new IdentityError(cfg.name, keyFile, `private key does not match certificate ${subjectOf(leaf)} (${certFile})`);
  }
  checkValidity(cfg.name, certFile, leaf, opts.now ?? new Date(), opts.warn);
  const secureContextOptions = {
    cert: chain.map((d) => toPem(d, 'CERTIFICATE')).join(''),
    key: key.export({ format: 'pem', type: 'pkcs8' }) as string,
  };
  try {
    tls.createSecureContext(secureContextOptions);
  } catch (e) {
    throw new IdentityError(cfg.name, certFile, `OpenSSL refused the certificate/key: ${errText(e)}`);
  }
  return {
    name: cfg.name,
    secureContextOptions,
    leafSubject: subjectOf(leaf),
    leafSha256: crypto.createHash('sha256').update(leaf.raw).digest('hex'),
    notAfter: new Date(leaf.validTo),
    source: `${certFile}, ${keyFile}`,
  };
}

function loadPfx(cfg: IdentityConfig, baseDir: string, passphrase: string | undefined, opts: LoadIdentitiesOptions): ProxyIdentity {
  const pfxFile = path.resolve(baseDir, cfg.pfx!);
  const pfx = readFile(cfg.name, pfxFile);
  const secureContextOptions = passphrase === undefined ? { pfx } : { pfx, passphrase };
  let ctx: tls.SecureContext;
  try {
    // OpenSSL's PKCS12_parse checks the MAC (passphrase) and SSL_CTX_use_PrivateKey checks that
    // the key matches the certificate, so success here is the same validation as for PEM.
    ctx = tls.createSecureContext(secureContextOptions);
  } catch (e) {
    const msg = errText(e);
    const hint = /mac verify failure/i.test(msg)
      ? ' (wrong passphrase?)'
      : /unsupported/i.test(msg)
        ? ' (legacy RC2/3DES PKCS#12 encryption; re-export with OpenSSL 3 defaults)'
        : '';
    throw new IdentityError(cfg.name, pfxFile, `cannot load PKCS#12: ${msg}${hint}`);
  }
  const leaf = pfxLeaf(ctx);
  if (leaf) checkValidity(cfg.name, pfxFile, leaf, opts.now ?? new Date(), opts.warn);
  return {
    name: cfg.name,
    secureContextOptions,
    leafSubject: leaf ? subjectOf(leaf) : 'unknown',
    leafSha256: leaf ? crypto.createHash('sha256').update(leaf.raw).digest('hex') : 'unknown',
    notAfter: leaf ? new Date(leaf.validTo) : new Date(NaN),
    source: pfxFile,
  };
}

/**
 * Loads and validates every identity (RFC 5280 validity; key ↔ certificate match).
 * @param configs `identities[]` of the configuration: either `cert` + `key` (PEM) or `pfx` (PKCS#12);
 *   `passphraseEnv` names the environment variable holding the key's / PKCS#12 passphrase
 * @param baseDir relative file names are resolved against it (the config file's folder)
 * @returns identities by name
 * @throws IdentityError naming the identity and the file: duplicate name, unreadable file, bad PEM,
 *   wrong passphrase, key not matching the certificate, certificate expired or not yet valid
 */
export function loadIdentities(configs: IdentityConfig[], baseDir: string, opts: LoadIdentitiesOptions = {}): Map<string, ProxyIdentity> {
  const env = opts.env ?? process.env;
  const out = new Map<string, ProxyIdentity>();
  for (const cfg of configs) {
    if (!cfg.name) throw new IdentityError(String(cfg.name), null, 'an identity needs a name');
    if (out.has(cfg.name)) throw new IdentityError(cfg.name, null, 'duplicate identity name');
    const passphrase = passphraseOf(cfg, env);
    let identity: ProxyIdentity;
    if (cfg.pfx !== undefined) {
      if (cfg.cert !== undefined || cfg.key !== undefined) throw new IdentityError(cfg.name, null, 'give either pfx or cert + key, not both');
      identity = loadPfx(cfg, baseDir, passphrase, opts);
    } else if (cfg.cert !== undefined && cfg.key !== undefined) {
      identity = loadPem(cfg, baseDir, passphrase, opts);
    } else {
      throw new IdentityError(cfg.name, null, 'needs cert and key (PEM), or pfx (PKCS#12)');
    }
    out.set(cfg.name, identity);
  }
  return out;
}
