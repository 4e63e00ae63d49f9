/**
 * A throw-away test PKI built with the `openssl` CLI (OpenSSL 3.0), so tests exercise real
 * certificates and CRLs produced by an independent implementation. Everything is synchronous
 * (execFileSync) and lives in one temp folder; call `cleanup()` when done. No private key ever
 * leaves the temp folder.
 *
 * Layout: `<dir>/<caName>/{key.pem, cert.pem, cert.der, ca.cnf, index.txt, crlnumber}` per CA,
 * `<dir>/leaves/<name>.{key,cert}.pem` per leaf, `<dir>/crls/<caName>-<n>.crl` (DER) per CRL.
 *
 * Usage:
 * ```ts
 * const pki = makePki({ keyType: 'ec' });
 * const leaf = pki.issueLeaf('srv', { san: ['DNS:srv.test'] });
 * pki.revoke('intermediate', leaf.certPath, 'keyCompromise');
 * const crlPath = pki.crl('intermediate', { nextUpdateDays: 7 });
 * ```
 */
import { execFileSync } from 'node:child_process';
import crypto, { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type KeyType = 'rsa' | 'ec' | 'ec384' | 'ed25519' | 'rsa-pss';

/** CRLReason names as `openssl ca -crl_reason` takes them (case-insensitive; RFC 5280 §5.3.1 spelling accepted). */
export type RevokeReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'CACompromise'
  | 'cACompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'certificateHold'
  | 'removeFromCRL';

export interface CaHandle {
  name: string;
  /** Subject DN in openssl `-subj` form, e.g. `/O=ca-proxy test/CN=root`. */
  subject: string;
  dir: string;
  keyPath: string;
  certPath: string; // PEM
  certDerPath: string;
  certPem: string;
  certDer: Buffer;
  x509: X509Certificate;
}

export interface LeafHandle {
  name: string;
  keyPath: string;
  certPath: string; // PEM
  certPem: string;
  certDer: Buffer;
  x509: X509Certificate;
  /** The serial as given to `-set_serial` (hex, no 0x). */
  serialHex: string;
}

export interface CaOptions {
  /** Name of the issuing CA; omitted = self-signed root. */
  issuer?: string;
  /** Subject in `-subj` form; default `/O=ca-proxy test/CN=<name>`. */
  subject?: string;
  keyType?: KeyType;
  /** keyUsage extension value; default `critical,keyCertSign,cRLSign`. `null` omits the extension. */
  keyUsage?: string | null;
  /** basicConstraints pathLenConstraint (RFC 5280 §4.2.1.9); omitted by default. */
  pathLen?: number;
  /** Further extension lines for the CA certificate, e.g. `nameConstraints = critical,permitted;DNS:.a.test`. */
  extraExtensions?: string[];
}

export interface LeafOptions {
  /** subjectAltName entries, e.g. `['DNS:a.test', 'IP:127.0.0.1']`. */
  san?: string[];
  /** Serial as hex (no 0x); default 16 random bytes with the top bit cleared. */
  serial?: string;
  /** Add extendedKeyUsage clientAuth (and serverAuth). Default: serverAuth only. */
  clientAuth?: boolean;
  /** Issuing CA name; default `intermediate`. */
  issuer?: string;
  keyType?: KeyType;
  days?: number;
}

export interface CrlOptions {
  /** nextUpdate = thisUpdate + this many days (default 7). Ignored when `nextUpdate` is given. */
  nextUpdateDays?: number;
  /** thisUpdate = now − hoursAgo (default 0). */
  hoursAgo?: number;
  /** Explicit thisUpdate / nextUpdate. */
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** The cRLNumber to put in this CRL (decimal or bigint); default: the CA's counter (1, 2, …). */
  crlNumber?: number | bigint;
  /** Include authorityKeyIdentifier (default true). */
  aki?: boolean;
  /** Extra lines for the crl_extensions section, e.g. `1.2.3.4=critical,ASN1:NULL`. */
  extraExtensions?: string[];
  /** Output file (default `<dir>/crls/<ca>-<n>.crl`). */
  out?: string;
}

export interface Pki {
  dir: string;
  root: CaHandle;
  intermediate: CaHandle;
  cas: Map<string, CaHandle>;
  /** Create another CA (e.g. an impostor with the same subject as `root` but another key). */
  addCa(name: string, opts?: CaOptions): CaHandle;
  issueLeaf(name: string, opts?: LeafOptions): LeafHandle;
  /** Record `certPath` as revoked in `caName`'s database (`openssl ca -revoke`). */
  revoke(caName: string, certPath: string, reason?: RevokeReason): void;
  /** Issue a CRL with `openssl ca -gencrl`, return the path of the DER file. */
  crl(caName: string, opts?: CrlOptions): string;
  /** `openssl crl -inform DER -text -noout` output (the oracle for tests). */
  crlText(crlPath: string): string;
  cleanup(): void;
}

function run(args: string[], cwd?: string): string {
  try {
    return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`openssl ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
}

function genKey(keyPath: string, keyType: KeyType): void {
  const algo: Record<KeyType, string[]> = {
    rsa: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
    'rsa-pss': ['-algorithm', 'RSA-PSS', '-pkeyopt', 'rsa_keygen_bits:2048'],
    ec: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    ec384: ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    ed25519: ['-algorithm', 'ED25519'],
  };
  run(['genpkey', ...algo[keyType], '-out', keyPath]);
}

/** Ed25519 signs without a separate digest; `openssl ca` then wants md `default`. */
function mdFor(keyType: KeyType): string {
  return keyType === 'ed25519' ? 'default' : keyType === 'ec384' ? 'sha384' : 'sha256';
}

/** openssl `-crl_lastupdate` format: YYYYMMDDHHMMSSZ. */
function gtime(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

function randomSerialHex(): string {
  const b = crypto.randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x10; // positive, 16 significant bytes
  return b.toString('hex');
}

export function makePki(opts: { dir?: string; keyType?: KeyType } = {}): Pki {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'ca-proxy-pki-'));
  const defaultKeyType = opts.keyType ?? 'rsa';
  const cas = new Map<string, CaHandle>();
  const caKeyTypes = new Map<string, KeyType>();
  fs.mkdirSync(path.join(dir, 'leaves'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'crls'), { recursive: true });
  let crlCounter = 0;

  function getCa(name: string): CaHandle {
    const ca = cas.get(name);
    if (!ca) throw new Error(`makePki: no CA named ${name}`);
    return ca;
  }

  function writeCaConfig(ca: CaHandle, crlExt: string[]): string {
    const cnf = path.join(ca.dir, 'ca.cnf');
    fs.writeFileSync(
      cnf,
      [
        '[ca]',
        'default_ca = CA_default',
        '[CA_default]',
        `database = ${path.join(ca.dir, 'index.txt')}`,
        `crlnumber = ${path.join(ca.dir, 'crlnumber')}`,
        `certificate = ${ca.certPath}`,
        `private_key = ${ca.keyPath}`,
        `new_certs_dir = ${ca.dir}`,
        `default_md = ${mdFor(caKeyTypes.get(ca.name)!)}`,
        'default_crl_days = 7',
        'unique_subject = no',
        'crl_extensions = crl_ext',
        '[crl_ext]',
        ...crlExt,
        '',
      ].join('\n'),
    );
    return cnf;
  }

  function addCa(name: string, o: CaOptions = {}): CaHandle {
    if (cas.has(name)) throw new Error(`makePki: CA ${name} exists`);
    const keyType = o.keyType ?? defaultKeyType;
    const caDir = path.join(dir, name);
    fs.mkdirSync(caDir, { recursive: true });
    const keyPath = path.join(caDir, 'key.pem');
    const certPath = path.join(caDir, 'cert.pem');
    const certDerPath = path.join(caDir, 'cert.der');
    const subject = o.subject ?? `/O=ca-proxy test/CN=${name}`;
    genKey(keyPath, keyType);
    const keyUsage = o.keyUsage === undefined ? 'critical,keyCertSign,cRLSign' : o.keyUsage;
    const ext = path.join(caDir, 'ext.cnf');
    fs.writeFileSync(
      ext,
      [
        '[req]',
        'distinguished_name = dn',
        '[dn]',
        '[v3_ca]',
        `basicConstraints = critical,CA:TRUE${o.pathLen === undefined ? '' : `,pathlen:${o.pathLen}`}`,
        ...(keyUsage === null ? [] : [`keyUsage = ${keyUsage}`]),
        ...(o.extraExtensions ?? []),
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid:always',
        '',
      ].join('\n'),
    );
    const md = keyType === 'ed25519' ? [] : [`-${mdFor(keyType)}`];
    if (o.issuer === undefined) {
      run(['req', '-x509', '-new', '-key', keyPath, '-subj', subject, '-days', '3650', ...md,
        '-config', ext, '-extensions', 'v3_ca', '-set_serial', '0x' + randomSerialHex(), '-out', certPath]);
    } else {
      const parent = getCa(o.issuer);
      const csr = path.join(caDir, 'req.csr');
      run(['req', '-new', '-key', keyPath, '-subj', subject, '-config', ext, '-out', csr]);
      run(['x509', '-req', '-in', csr, '-CA', parent.certPath, '-CAkey', parent.keyPath, '-days', '3650', ...md,
        '-set_serial', '0x' + randomSerialHex(), '-extfile', ext, '-extensions', 'v3_ca', '-out', certPath]);
    }
    run(['x509', '-in', certPath, '-outform', 'DER', '-out', certDerPath]);
    fs.writeFileSync(path.join(caDir, 'index.txt'), '');
    fs.writeFileSync(path.join(caDir, 'crlnumber'), '01\n');
    const certPem = fs.readFileSync(certPath, 'utf8');
    const certDer = fs.readFileSync(certDerPath);
    const ca: CaHandle = { name, subject, dir: caDir, keyPath, certPath, certDerPath, certPem, certDer, x509: new X509Certificate(certDer) };
    cas.set(name, ca);
    caKeyTypes.set(name, keyType);
    return ca;
  }

  function issueLeaf(name: string, o: LeafOptions = {}): LeafHandle {
    const issuer = getCa(o.issuer ?? 'intermediate');
    const keyType = o.keyType ?? defaultKeyType;
    const base = path.join(dir, 'leaves', name);
    const keyPath = `${base}.key.pem`;
    const certPath = `${base}.cert.pem`;
    genKey(keyPath, keyType);
    const ext = `${base}.ext.cnf`;
    const san = o.san ?? [`DNS:${name}.test`];
    fs.writeFileSync(
      ext,
      [
        '[req]',
        'distinguished_name = dn',
        '[dn]',
        '[leaf]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature' + (keyType.startsWith('rsa') ? ',keyEncipherment' : ''),
        `extendedKeyUsage = serverAuth${o.clientAuth ? ',clientAuth' : ''}`,
        `subjectAltName = ${san.join(',')}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid:always',
        '',
      ].join('\n'),
    );
    const serialHex = o.serial ?? randomSerialHex();
    const csr = `${base}.csr`;
    const issuerKeyType = caKeyTypes.get(issuer.name)!;
    const md = issuerKeyType === 'ed25519' ? [] : [`-${mdFor(issuerKeyType)}`];
    run(['req', '-new', '-key', keyPath, '-subj', `/O=ca-proxy test/CN=${name}`, '-config', ext, '-out', csr]);
    run(['x509', '-req', '-in', csr, '-CA', issuer.certPath, '-CAkey', issuer.keyPath, '-days', String(o.days ?? 365), ...md,
      '-set_serial', '0x' + serialHex, '-extfile', ext, '-extensions', 'leaf', '-out', certPath]);
    const certPem = fs.readFileSync(certPath, 'utf8');
    const x509 = new X509Certificate(certPem);
    return { name, keyPath, certPath, certPem, certDer: x509.raw, x509, serialHex };
  }

  function revoke(caName: string, certPath: string, reason: RevokeReason = 'unspecified'): void {
    const ca = getCa(caName);
    const cnf = writeCaConfig(ca, []);
    // certificateHold needs a hold instruction in OpenSSL; -crl_reason refuses it.
    const why = reason === 'certificateHold' ? ['-crl_hold', 'holdInstructionReject'] : ['-crl_reason', reason];
    run(['ca', '-batch', '-config', cnf, '-revoke', certPath, ...why]);
  }

  function crl(caName: string, o: CrlOptions = {}): string {
    const ca = getCa(caName);
    const crlExt = [...(o.aki === false ? [] : ['authorityKeyIdentifier = keyid:always']), ...(o.extraExtensions ?? [])];
    const cnf = writeCaConfig(ca, crlExt);
    if (o.crlNumber !== undefined) {
      let hex = BigInt(o.crlNumber).toString(16);
      if (hex.length % 2) hex = '0' + hex;
      fs.writeFileSync(path.join(ca.dir, 'crlnumber'), hex + '\n');
    }
    const thisUpdate = o.thisUpdate ?? new Date(Date.now() - (o.hoursAgo ?? 0) * 3600_000);
    const nextUpdate = o.nextUpdate ?? new Date(thisUpdate.getTime() + (o.nextUpdateDays ?? 7) * 86400_000);
    const out = o.out ?? path.join(dir, 'crls', `${caName}-${++crlCounter}.crl`);
    const pem = `${out}.pem`;
    run(['ca', '-batch', '-config', cnf, '-gencrl', '-crl_lastupdate', gtime(thisUpdate), '-crl_nextupdate', gtime(nextUpdate), '-out', pem]);
    run(['crl', '-in', pem, '-outform', 'DER', '-out', out]);
    fs.rmSync(pem);
    return out;
  }

  function crlText(crlPath: string): string {
    return run(['crl', '-inform', 'DER', '-in', crlPath, '-text', '-noout']);
  }

  const root = addCa('root', { keyType: defaultKeyType });
  const intermediate = addCa('intermediate', { issuer: 'root', keyType: defaultKeyType });
  return {
    dir,
    root,
    intermediate,
    cas,
    addCa,
    issueLeaf,
    revoke,
    crl,
    crlText,
    cleanup: () => {
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
