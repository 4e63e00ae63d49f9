/**
 * Shared by the capture-replay tests: where the TLS captures are (../shared/testdata/captures),
 * the manifest's (tshark) names for handshake message types, and a seeded PRNG so that a
 * failing random chunking can be reproduced.
 */
import fs from 'node:fs';
import { HandshakeType } from '../../internal/tls';
import { sharedTestdata } from './root';
import { testdataSuite } from './testdata';

export const CAPTURES = sharedTestdata('captures');
export const haveCaptures = fs.existsSync(`${CAPTURES}/manifest.json`);
/** Suites over the captures: skipped with a reason when they are absent, failing under CI. */
export const captureSuite = testdataSuite('the TLS captures (testdata/captures)', `${CAPTURES}/manifest.json`);

/** The manifest's message names (tshark style). */
export const MESSAGE_NAMES: Record<number, string> = {
  [HandshakeType.client_hello]: 'ClientHello',
  [HandshakeType.server_hello]: 'ServerHello',
  [HandshakeType.new_session_ticket]: 'NewSessionTicket',
  [HandshakeType.certificate]: 'Certificate',
  [HandshakeType.server_key_exchange]: 'ServerKeyExchange',
  [HandshakeType.certificate_request]: 'CertificateRequest',
  [HandshakeType.server_hello_done]: 'ServerHelloDone',
  [HandshakeType.certificate_verify]: 'CertificateVerify',
  [HandshakeType.client_key_exchange]: 'ClientKeyExchange',
  [HandshakeType.finished]: 'Finished',
};

/** Deterministic PRNG (mulberry32): numbers in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
