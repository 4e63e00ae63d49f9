/**
 * Writes a large benchmark CRL (default 1,000,000 entries, ≈ 49 MB DER) with a minimal DER
 * writer, signed with an RSA-2048 key via node:crypto, plus its self-signed issuer certificate
 * (made by `openssl req`, keyUsage cRLSign). Cached under bench/.data/ (git-ignored): delete the
 * folder to regenerate.
 *
 * Each entry: a 16-octet serial (`serialFor(i)`, deterministic), a UTCTime revocationDate and a
 * reasonCode entry extension — 49 bytes, as in a real CA's CRL.
 *
 * `writeBenchCrl` writes the same kind of CRL for any issuing CA (RSA or EC P-256 key): `make bench`
 * has the server chain's intermediate issue it, so ca-proxy looks real certificates up in it.
 *
 * Run alone: `node dist/bench/gen-crl.js [entries]`.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { certInfo } from '../internal/pki/certinfo';

export interface BenchCrl {
  crlPath: string;
  caCertPath: string;
  entries: number;
  bytes: number;
}

// ---- minimal DER writer ------------------------------------------------------------------------
function derLen(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) b.unshift(v & 0xff);
  return Buffer.from([0x80 | b.length, ...b]);
}
function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const c = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLen(c.length), c]);
}
const seq = (...p: Buffer[]): Buffer => tlv(0x30, ...p);
const oid = (hex: string): Buffer => tlv(0x06, Buffer.from(hex, 'hex'));
function utcTime(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return tlv(0x17, Buffer.from(s, 'latin1'));
}
function uint(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = '00' + hex;
  return tlv(0x02, Buffer.from(hex, 'hex'));
}

const SHA256_WITH_RSA = seq(oid('2a864886f70d01010b'), Buffer.from([0x05, 0x00]));
// ecdsa-with-SHA256 (RFC 5758 §3.2): parameters absent.
const ECDSA_WITH_SHA256 = seq(oid('2a8648ce3d040302'));
// removeFromCRL (8) only belongs in delta CRLs, so it is left out.
const REASONS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 1];

/** The serial of entry `i`: 16 octets, top bit clear, first octet non-zero (so the DER INTEGER is 16 octets). */
export function serialFor(i: number): Buffer {
  // xorshift-style mixing of i: deterministic, looks random, no collisions for i < 2^32.
  const b = Buffer.alloc(16);
  let x = (i + 1) >>> 0;
  for (let k = 0; k < 4; k++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32BE(x, k * 4);
  }
  b.writeUInt32BE((i + 1) >>> 0, 12); // keeps serials unique whatever the mixing does
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b;
}

/** Create (or reuse) the benchmark CRL with `entries` entries under `dir`. */
export function ensureBenchCrl(entries = 1_000_000, dir = path.resolve(__dirname, '..', '..', 'bench', '.data')): BenchCrl {
  fs.mkdirSync(dir, { recursive: true });
  const crlPath = path.join(dir, `crl-${entries}.der`);
  const caCertPath = path.join(dir, 'bench-ca.pem');
  const keyPath = path.join(dir, 'bench-ca.key.pem');
  if (fs.existsSync(crlPath) && fs.existsSync(caCertPath)) return { crlPath, caCertPath, entries, bytes: fs.statSync(crlPath).size };

  if (!fs.existsSync(keyPath) || !fs.existsSync(caCertPath)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    fs.writeFileSync(keyPath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const cnf = path.join(dir, 'ca.cnf');
    fs.writeFileSync(cnf, '[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
    execFileSync('openssl', ['req', '-x509', '-new', '-key', keyPath, '-subj', '/O=ca-proxy bench/CN=bench CRL CA', '-days', '3650', '-sha256', '-config', cnf, '-extensions', 'v3', '-out', caCertPath]);
  }
  const bytes = writeBenchCrl({ entries, caCertPath, caKeyPath: keyPath, crlNumber: 1000 + entries, outPath: crlPath });
  return { crlPath, caCertPath, entries, bytes };
}

/** What `writeBenchCrl` signs with and writes. */
export interface BenchCrlSpec {
  entries: number;
  /** The issuing CA (PEM certificate with a subjectKeyIdentifier, and its RSA or EC P-256 key). */
  caCertPath: string;
  caKeyPath: string;
  crlNumber: number;
  outPath: string;
}

/**
 * Writes a CRL of `entries` entries (serials `serialFor(0…entries-1)`) issued by the given CA,
 * signed sha256WithRSAEncryption or ecdsa-with-SHA256 after the key's type; returns its size.
 */
export function writeBenchCrl(spec: BenchCrlSpec): number {
  const { entries } = spec;
  const ca = new crypto.X509Certificate(fs.readFileSync(spec.caCertPath));
  const key = crypto.createPrivateKey(fs.readFileSync(spec.caKeyPath));
  const sigAlg = key.asymmetricKeyType === 'ec' ? ECDSA_WITH_SHA256 : SHA256_WITH_RSA;
  // The CRL issuer Name is the CA's subject, byte for byte; AKI = the CA's subjectKeyIdentifier.
  const info = certInfo(ca);
  const subjectDer = info.subjectDer;
  const aki = seq(oid('551d23'), tlv(0x04, seq(tlv(0x80, info.subjectKeyId!))));

  const now = new Date();
  const thisUpdate = utcTime(now);
  const nextUpdate = utcTime(new Date(now.getTime() + 7 * 86400_000));
  const revDate = utcTime(new Date(now.getTime() - 86400_000));

  // Entries are fixed-size: write them straight into one buffer.
  const entryLen = 49;
  const list = Buffer.allocUnsafe(entryLen * entries);
  const head = Buffer.from([0x30, 47, 0x02, 16]);
  const ext = Buffer.from('300c300a0603551d1504030a01', 'hex'); // + reason octet
  for (let i = 0, p = 0; i < entries; i++, p += entryLen) {
    head.copy(list, p);
    serialFor(i).copy(list, p + 4);
    revDate.copy(list, p + 20);
    ext.copy(list, p + 35);
    list[p + 48] = REASONS[i % REASONS.length]!;
  }
  const revoked = Buffer.concat([Buffer.from([0x30]), derLen(list.length), list]);
  const crlNumber = seq(oid('551d14'), tlv(0x04, uint(BigInt(spec.crlNumber))));
  const tbs = seq(
    Buffer.from([0x02, 0x01, 0x01]),
    sigAlg,
    subjectDer,
    thisUpdate,
    nextUpdate,
    revoked,
    tlv(0xa0, seq(crlNumber, aki)),
  );
  const sig = crypto.sign('sha256', tbs, key);
  const crl = seq(tbs, sigAlg, tlv(0x03, Buffer.from([0]), sig));
  fs.writeFileSync(spec.outPath, crl);
  return crl.length;
}

if (require.main === module) {
  const n = Number(process.argv[2] ?? 1_000_000);
  const t0 = Date.now();
  const r = ensureBenchCrl(n);
  console.log(`${r.crlPath}: ${r.entries} entries, ${r.bytes} bytes (${Date.now() - t0} ms)`);
}
