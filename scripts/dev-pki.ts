/**
 * Development PKI for `make run` / `make demo`: every certificate, key and CRL the embedded
 * default configuration needs, made with Node alone (WebCrypto keys, @peculiar/x509 encoding),
 * so a fresh checkout needs nothing beyond Node.
 *
 *   node dist/scripts/dev-pki.js DIR        (normally `.local/`)
 *
 * Idempotent: a file set that is present, parses, matches its key, is signed by its (current)
 * issuer and is valid for more than a day is reused; otherwise it is (re)made, and so is
 * everything below it. The CRL is re-issued when older than a day (or past nextUpdate), so the
 * proxy never starts with a stale one; each re-issue increments cRLNumber (RFC 5280 §5.2.3).
 *
 * Files (keys are PKCS#8 PEM, mode 0600; all keys ECDSA P-256):
 *   interception-ca.{crt,key}  signs the leaves minted for workloads (CN "ca-proxy development interception CA")
 *   client-ca.{crt,key}        CA the demo servers trust for client certificates
 *   proxy-identity.{crt,key}   the proxy's client certificate (clientAuth), signed by client-ca
 *   demo-ca.{crt,key}          CA of the demo servers
 *   demo-good.{crt,key}        SAN good.demo.localhost, localhost, IP 127.0.0.1
 *   demo-revoked.{crt,key}     SAN revoked.demo.localhost, listed on demo-crl.pem
 *   demo-crl.pem               by demo-ca: demo-revoked revoked (keyCompromise), nextUpdate +7 days
 *   workload-ca.{crt,key}      CA of workload client certificates
 *   workload.{crt,key}         a workload client certificate (clientAuth)
 */
import crypto, { webcrypto, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createLeafCertificate, importSigningKey, randomSerialHex, x509, type SigningKey } from '../internal/pki/mint';
import { pemBlocks, toPem } from '../internal/pki/pem';

const DAY_MS = 86400_000;
/** CAs and leaves: one year. */
const CERT_VALIDITY_MS = 365 * DAY_MS;
/** A certificate with less than this left is re-made. */
const RENEW_BEFORE_MS = DAY_MS;
/** CRL: nextUpdate = thisUpdate + 7 days; re-issued once older than a day. */
const CRL_NEXT_UPDATE_MS = 7 * DAY_MS;
const CRL_MAX_AGE_MS = DAY_MS;
const BACKDATE_MS = 5 * 60_000;
const O = 'ca-proxy development';

type PeculiarKey = x509.X509CertificateCreateWithKeyParams['signingKey'];

export interface DevPkiOptions {
  /** Clock (default now). */
  now?: Date;
  /** Progress lines (default: none). The CLI prints them. */
  log?: (line: string) => void;
}

export interface DevPkiResult {
  dir: string;
  /** Base names (e.g. `demo-ca.crt`) made by this run. */
  created: string[];
  /** Base names found usable and kept. */
  reused: string[];
  /** Absolute path of every file, by base name. */
  files: Record<string, string>;
}

interface Pair {
  base: string;
  cert: x509.X509Certificate;
  node: X509Certificate;
  signing: SigningKey;
  created: boolean;
}

interface Ctx {
  dir: string;
  now: Date;
  log: (line: string) => void;
  result: DevPkiResult;
}

function writeFileAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.chmodSync(tmp, mode); // the umask may have narrowed or the file may have existed
  fs.renameSync(tmp, file);
}

function record(ctx: Ctx, name: string, created: boolean, why = ''): void {
  ctx.result.files[name] = path.join(ctx.dir, name);
  (created ? ctx.result.created : ctx.result.reused).push(name);
  ctx.log(`${created ? 'created' : 'reused '} ${path.join(ctx.dir, name)}${why ? ` (${why})` : ''}`);
}

async function newKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

/** The existing pair `base.{crt,key}` if usable (see file docstring), else why not. */
async function loadPair(ctx: Ctx, base: string, issuer: Pair | null): Promise<Pair | string> {
  const crtFile = path.join(ctx.dir, `${base}.crt`);
  const keyFile = path.join(ctx.dir, `${base}.key`);
  if (!fs.existsSync(crtFile) || !fs.existsSync(keyFile)) return 'absent';
  try {
    const der = pemBlocks(fs.readFileSync(crtFile, 'utf8'), 'CERTIFICATE', crtFile)[0];
    if (!der) return 'no certificate in file';
    const node = new X509Certificate(der.der);
    const keyPem = fs.readFileSync(keyFile, 'utf8');
    if (!node.checkPrivateKey(crypto.createPrivateKey(keyPem))) return 'key does not match';
    if (new Date(node.validTo).getTime() - ctx.now.getTime() < RENEW_BEFORE_MS) return 'expiring';
    if (issuer) {
      if (issuer.created) return `issuer ${issuer.base} was re-made`;
      if (!node.checkIssued(issuer.node) || !node.verify(issuer.node.publicKey)) return `not signed by ${issuer.base}`;
    }
    return { base, cert: new x509.X509Certificate(der.der), node, signing: await importSigningKey(keyPem), created: false };
  } catch (e) {
    return `unreadable: ${(e as Error).message}`;
  }
}

async function writePair(ctx: Ctx, base: string, cert: x509.X509Certificate, keys: webcrypto.CryptoKeyPair, why: string): Promise<Pair> {
  const keyPem = toPem(Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 'PRIVATE KEY');
  const der = Buffer.from(cert.rawData);
  writeFileAtomic(path.join(ctx.dir, `${base}.key`), keyPem, 0o600);
  writeFileAtomic(path.join(ctx.dir, `${base}.crt`), toPem(der, 'CERTIFICATE'), 0o644);
  record(ctx, `${base}.crt`, true, why);
  record(ctx, `${base}.key`, true);
  return { base, cert, node: new X509Certificate(der), signing: await importSigningKey(keyPem), created: true };
}

function validity(ctx: Ctx): { notBefore: Date; notAfter: Date } {
  const t = Math.floor(ctx.now.getTime() / 1000) * 1000;
  return { notBefore: new Date(t - BACKDATE_MS), notAfter: new Date(t + CERT_VALIDITY_MS) };
}

/** A self-signed root CA (basicConstraints cA, pathLen 0: it signs only leaves). */
async function ensureCa(ctx: Ctx, base: string, cn: string): Promise<Pair> {
  const existing = await loadPair(ctx, base, null);
  if (typeof existing !== 'string') {
    record(ctx, `${base}.crt`, false);
    record(ctx, `${base}.key`, false);
    return existing;
  }
  const keys = await newKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    name: new x509.Name([{ O: [O] }, { CN: [cn] }]),
    ...validity(ctx),
    keys: keys as unknown as { publicKey: PeculiarKey; privateKey: PeculiarKey },
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as PeculiarKey),
    ],
  });
  return writePair(ctx, base, cert, keys, existing);
}

interface LeafProfile {
  cn: string;
  san: { type: 'dns' | 'ip'; value: string }[];
  eku: 'serverAuth' | 'clientAuth';
}

async function ensureLeaf(ctx: Ctx, base: string, issuer: Pair, profile: LeafProfile): Promise<Pair> {
  const existing = await loadPair(ctx, base, issuer);
  if (typeof existing !== 'string') {
    record(ctx, `${base}.crt`, false);
    record(ctx, `${base}.key`, false);
    return existing;
  }
  const keys = await newKeyPair();
  const ski = issuer.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const cert = await createLeafCertificate({
    serialHex: randomSerialHex(),
    subject: new x509.Name([{ O: [O] }, { CN: [profile.cn] }]),
    issuer: issuer.cert.subjectName,
    ...validity(ctx),
    publicKey: keys.publicKey,
    signing: issuer.signing,
    eku: profile.eku,
    san: profile.san,
    sanCritical: false,
    authorityKeyIdHex: ski ? ski.keyId : null,
  });
  return writePair(ctx, base, cert, keys, existing);
}

/** DER INTEGER (tag, short/long length, minimal two's-complement content) for a non-negative bigint. */
function derInteger(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let body = Buffer.from(hex, 'hex');
  if (body[0]! & 0x80) body = Buffer.concat([Buffer.from([0]), body]);
  return Buffer.concat([Buffer.from([0x02, body.length]), body]); // cRLNumber is at most 20 octets (§5.2.3)
}

/** The cRLNumber of a CRL (extnValue holds a DER INTEGER), or null. */
function crlNumberOf(crl: x509.X509Crl): bigint | null {
  const ext = crl.extensions.find((e) => e.type === '2.5.29.20');
  if (!ext) return null;
  const v = Buffer.from(ext.value);
  if (v[0] !== 0x02 || v[1]! > 20 || v.length !== 2 + v[1]!) return null;
  return BigInt('0x' + (v.subarray(2).toString('hex') || '0'));
}

/** Why the existing CRL must be re-issued, or null when it can stay. */
async function crlStaleness(ctx: Ctx, file: string, ca: Pair, revoked: Pair): Promise<{ why: string; previous: bigint | null }> {
  if (!fs.existsSync(file)) return { why: 'absent', previous: null };
  if (ca.created || revoked.created) return { why: 'its CA or revoked certificate was re-made', previous: null };
  try {
    const block = pemBlocks(fs.readFileSync(file, 'utf8'), 'X509 CRL', file)[0];
    if (!block) return { why: 'no CRL in file', previous: null };
    const crl = new x509.X509Crl(block.der);
    const previous = crlNumberOf(crl);
    if (!(await crl.verify({ publicKey: ca.cert.publicKey }))) return { why: 'signature does not verify', previous };
    if (ctx.now.getTime() - crl.thisUpdate.getTime() > CRL_MAX_AGE_MS) return { why: 'older than a day', previous };
    if (crl.thisUpdate.getTime() - ctx.now.getTime() > BACKDATE_MS) return { why: 'thisUpdate in the future', previous };
    if (!crl.nextUpdate || crl.nextUpdate.getTime() <= ctx.now.getTime()) return { why: 'past nextUpdate', previous };
    if (!crl.findRevoked(revoked.cert.serialNumber)) return { why: 'does not list demo-revoked', previous };
    return { why: '', previous };
  } catch (e) {
    return { why: `unreadable: ${(e as Error).message}`, previous: null };
  }
}

async function ensureCrl(ctx: Ctx, ca: Pair, revoked: Pair): Promise<void> {
  const name = 'demo-crl.pem';
  const file = path.join(ctx.dir, name);
  const { why, previous } = await crlStaleness(ctx, file, ca, revoked);
  if (!why) {
    record(ctx, name, false);
    return;
  }
  const thisUpdate = new Date(Math.floor(ctx.now.getTime() / 1000) * 1000);
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const crl = await x509.X509CrlGenerator.create({
    issuer: ca.cert.subjectName,
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + CRL_NEXT_UPDATE_MS),
    signingKey: ca.signing.key as unknown as PeculiarKey,
    signingAlgorithm: ca.signing.algorithm,
    extensions: [
      new x509.Extension('2.5.29.20', false, derInteger(previous === null ? 1n : previous + 1n)),
      ...(ski ? [new x509.AuthorityKeyIdentifierExtension(ski.keyId, false)] : []),
    ],
    entries: [{ serialNumber: revoked.cert.serialNumber, revocationDate: revoked.cert.notBefore, reason: x509.X509CrlReason.keyCompromise }],
  });
  writeFileAtomic(file, toPem(Buffer.from(crl.rawData), 'X509 CRL'), 0o644);
  record(ctx, name, true, why);
}

/**
 * Creates (or reuses) the development PKI under `dir` (created if missing).
 * @returns what was created and reused, and every file's path
 */
export async function ensureDevPki(dir: string, opts: DevPkiOptions = {}): Promise<DevPkiResult> {
  const abs = path.resolve(dir);
  fs.mkdirSync(abs, { recursive: true });
  const ctx: Ctx = { dir: abs, now: opts.now ?? new Date(), log: opts.log ?? (() => undefined), result: { dir: abs, created: [], reused: [], files: {} } };

  await ensureCa(ctx, 'interception-ca', 'ca-proxy development interception CA');

  const clientCa = await ensureCa(ctx, 'client-ca', 'ca-proxy development client CA');
  await ensureLeaf(ctx, 'proxy-identity', clientCa, { cn: 'ca-proxy development proxy identity', san: [{ type: 'dns', value: 'ca-proxy.demo.localhost' }], eku: 'clientAuth' });

  const demoCa = await ensureCa(ctx, 'demo-ca', 'ca-proxy development demo server CA');
  await ensureLeaf(ctx, 'demo-good', demoCa, {
    cn: 'good.demo.localhost',
    san: [{ type: 'dns', value: 'good.demo.localhost' }, { type: 'dns', value: 'localhost' }, { type: 'ip', value: '127.0.0.1' }],
    eku: 'serverAuth',
  });
  const revoked = await ensureLeaf(ctx, 'demo-revoked', demoCa, { cn: 'revoked.demo.localhost', san: [{ type: 'dns', value: 'revoked.demo.localhost' }], eku: 'serverAuth' });
  await ensureCrl(ctx, demoCa, revoked);

  const workloadCa = await ensureCa(ctx, 'workload-ca', 'ca-proxy development workload CA');
  await ensureLeaf(ctx, 'workload', workloadCa, { cn: 'demo-workload', san: [{ type: 'dns', value: 'workload.demo.localhost' }], eku: 'clientAuth' });
  return ctx.result;
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir || process.argv.length > 3) {
    process.stderr.write('usage: node dist/scripts/dev-pki.js DIR\n');
    process.exit(2);
  }
  ensureDevPki(dir, { log: (line) => process.stdout.write(line + '\n') }).catch((e: unknown) => {
    process.stderr.write(`dev-pki: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
