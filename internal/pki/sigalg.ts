/**
 * Signature algorithms (AlgorithmIdentifier, RFC 5280 §4.1.1.2 / §5.1.1.2) mapped to node:crypto
 * calls, shared by CRL signatures (crl-verify.ts) and certificate signatures (path.ts): one table,
 * one way to build the verify options, so a CRL and a certificate signed the same way are judged
 * the same way.
 *
 * Supported: RSA PKCS#1 v1.5 with SHA-1/SHA-2 (RFC 4055, RFC 8017), RSASSA-PSS with its
 * parameters (RFC 4055 §3.1; node:crypto uses the message digest for MGF1, so a different MGF1
 * hash is unsupported), ECDSA with SHA-2 (RFC 5758 §3.2), DSA with SHA-1/SHA-2 (RFC 3279 §2.2.2,
 * RFC 5758 §3.1; PKITS 4.1.4–4.1.6 still use it), Ed25519/Ed448 (RFC 8410).
 */
import crypto, { type KeyObject } from 'node:crypto';
import { BoundedReader, ParseError } from '../bytes/reader';
import { Tag, contextTag, enter, peekTag, readNull, readOid, readSmallInt } from './der';
import { PkiFailure } from './errors';

/** How node:crypto must be called for one signatureAlgorithm. */
export interface ResolvedAlgorithm {
  /** Display name, e.g. sha256WithRSAEncryption, rsassaPss(sha256), ecdsa-with-SHA384, Ed25519. */
  name: string;
  /** Digest for crypto.verify, or null for EdDSA. */
  digest: string | null;
  /** asymmetricKeyType values of keys that may verify it. */
  keyTypes: string[];
  /** RSASSA-PSS: padding and salt length for crypto.verify. */
  pss?: { saltLength: number };
}

/** Why an AlgorithmIdentifier cannot be used. */
export type SignatureAlgorithmFailure = PkiFailure<'unsupported_algorithm' | 'malformed'>;

const RSA_PKCS1: Record<string, string> = {
  '1.2.840.113549.1.1.5': 'sha1',
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
};
const ECDSA: Record<string, string> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
const DSA: Record<string, string> = {
  '1.2.840.10040.4.3': 'sha1',
  '2.16.840.1.101.3.4.3.1': 'sha224',
  '2.16.840.1.101.3.4.3.2': 'sha256',
};
const HASHES: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const OID_RSASSA_PSS = '1.2.840.113549.1.1.10';
const OID_MGF1 = '1.2.840.113549.1.1.8';

/**
 * Map a signatureAlgorithm (dotted OID and the raw parameters element, or null when absent) to
 * node:crypto parameters.
 * @throws PkiFailure `unsupported_algorithm`, `malformed` (parameters not allowed or not decodable)
 */
export function resolveSignatureAlgorithm(alg: { oid: string; params: Buffer | null }): ResolvedAlgorithm {
  const { oid, params } = alg;
  const noParams = (allowNull: boolean): void => {
    if (params === null) return;
    if (allowNull && params.length === 2 && params[0] === Tag.NULL && params[1] === 0) return;
    throw new PkiFailure('malformed', `signatureAlgorithm ${oid}: unexpected parameters`);
  };
  const rsa = RSA_PKCS1[oid];
  if (rsa) {
    noParams(true);
    return { name: `${rsa}WithRSAEncryption`, digest: rsa, keyTypes: ['rsa'] };
  }
  const ec = ECDSA[oid];
  if (ec) {
    noParams(false);
    return { name: `ecdsa-with-${ec.toUpperCase()}`, digest: ec, keyTypes: ['ec'] };
  }
  const dsa = DSA[oid];
  if (dsa) {
    noParams(false);
    return { name: `dsa-with-${dsa.toUpperCase()}`, digest: dsa, keyTypes: ['dsa'] };
  }
  if (oid === '1.3.101.112') {
    noParams(false);
    return { name: 'Ed25519', digest: null, keyTypes: ['ed25519'] };
  }
  if (oid === '1.3.101.113') {
    noParams(false);
    return { name: 'Ed448', digest: null, keyTypes: ['ed448'] };
  }
  if (oid === OID_RSASSA_PSS) {
    if (params === null) throw new PkiFailure('malformed', 'RSASSA-PSS without parameters');
    try {
      return resolvePss(params);
    } catch (e) {
      if (e instanceof ParseError) throw new PkiFailure('malformed', `RSASSA-PSS-params: ${e.message}`, { cause: e });
      throw e;
    }
  }
  throw new PkiFailure('unsupported_algorithm', `signature algorithm ${oid} is not supported`);
}

function hashAlgOid(r: BoundedReader, what: string): string {
  const alg = enter(r, Tag.SEQUENCE, what);
  const oid = readOid(alg, what);
  if (!alg.atEnd) readNull(alg, `${what} parameters`);
  alg.expectEnd(what);
  const h = HASHES[oid];
  if (!h) throw new PkiFailure('unsupported_algorithm', `${what} ${oid} is not supported`);
  return h;
}

function resolvePss(params: Buffer): ResolvedAlgorithm {
  const r = new BoundedReader(params);
  const seq = enter(r, Tag.SEQUENCE, 'RSASSA-PSS-params');
  r.expectEnd('RSASSA-PSS-params');
  // Defaults: SHA-1, MGF1 with SHA-1, salt 20, trailer 1 (RFC 4055 §3.1).
  let hash = 'sha1';
  let mgfHash = 'sha1';
  let saltLength = 20;
  if (peekTag(seq) === contextTag(0, true)) hash = hashAlgOid(enter(seq, contextTag(0, true), 'hashAlgorithm'), 'hashAlgorithm');
  if (peekTag(seq) === contextTag(1, true)) {
    const mgf = enter(enter(seq, contextTag(1, true), 'maskGenAlgorithm'), Tag.SEQUENCE, 'maskGenAlgorithm');
    const mgfOid = readOid(mgf, 'maskGenAlgorithm');
    if (mgfOid !== OID_MGF1) throw new PkiFailure('unsupported_algorithm', `mask generation ${mgfOid} is not MGF1`);
    mgfHash = hashAlgOid(mgf, 'MGF1 hash');
  }
  if (peekTag(seq) === contextTag(2, true)) saltLength = readSmallInt(enter(seq, contextTag(2, true), 'saltLength'), 'saltLength');
  if (peekTag(seq) === contextTag(3, true)) {
    const trailer = readSmallInt(enter(seq, contextTag(3, true), 'trailerField'), 'trailerField');
    if (trailer !== 1) throw new PkiFailure('unsupported_algorithm', `RSASSA-PSS trailerField ${trailer}`);
  }
  seq.expectEnd('RSASSA-PSS-params');
  if (mgfHash !== hash) throw new PkiFailure('unsupported_algorithm', `RSASSA-PSS with MGF1 hash ${mgfHash} != message hash ${hash}`);
  return { name: `rsassaPss(${hash})`, digest: hash, keyTypes: ['rsa', 'rsa-pss'], pss: { saltLength } };
}

/** The crypto.verify key input for `alg` with `key`, or null when the key cannot verify it (wrong key type). */
export function verifyKeyInput(alg: ResolvedAlgorithm, key: KeyObject): crypto.VerifyKeyObjectInput | null {
  if (!alg.keyTypes.includes(key.asymmetricKeyType ?? '')) return null;
  if (alg.pss) return { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: alg.pss.saltLength };
  return { key };
}

/** Whether `sig` over `data` verifies with `key` under `alg` (false for a key of the wrong type or a bad signature encoding). */
export function verifySignature(alg: ResolvedAlgorithm, data: Buffer, sig: Buffer, key: KeyObject): boolean {
  const o = verifyKeyInput(alg, key);
  if (!o) return false;
  try {
    return crypto.verify(alg.digest, data, o, sig);
  } catch {
    return false;
  }
}

/** `verifySignature` in the libuv thread pool (crypto.verify with a callback): hashing large data does not block the loop. */
export function verifySignatureAsync(alg: ResolvedAlgorithm, data: Buffer, sig: Buffer, key: KeyObject): Promise<boolean> {
  const o = verifyKeyInput(alg, key);
  if (!o) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    try {
      crypto.verify(alg.digest, data, o, sig, (err, res) => resolve(!err && res));
    } catch {
      resolve(false);
    }
  });
}
