/**
 * The run-time PKI of the side-by-side benchmark, made with the `openssl` CLI by the tests' world
 * (test/support/world.ts, ECDSA P-256 throughout) plus what the other contenders need as files:
 *
 *   root ── intermediate ── server leaf "good" (SAN localhost)      the server's chain
 *   client-ca ── proxy identity                                     presented to the server
 *   interception CA ── static leaf for the SNI `localhost`          the downstream side of HAProxy,
 *                                                                   nginx and stunnel (ca-proxy
 *                                                                   mints its own, cached per SNI)
 *   CRLs of root and intermediate (ca-proxy reads the DER folder, the others one PEM bundle)
 *
 * Every key lives in the world's temp folder and goes with `cleanup()`.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { makeWorld, type World } from '../../test/support/world';

/** The host name every connection asks for (SNI) and every certificate names. */
export const SNI = 'localhost';

export interface BenchPki {
  world: World;
  dir: string;
  /** Trust anchor of the server chain (what the proxies and a direct client trust). */
  serverRoot: string;
  /** Server leaf + intermediate, PEM (tlsbench server). */
  serverChain: string;
  serverCert: string;
  serverKey: string;
  /** The intermediate alone (`s_server -cert_chain`). */
  intermediate: string;
  /** CA that issues the proxy identity: upstream servers require a client certificate from it. */
  clientCa: string;
  identityCert: string;
  identityKey: string;
  /** Identity certificate + key in one PEM (HAProxy `crt`). */
  identityBundle: string;
  /** Interception CA certificate: what clients of a proxy trust. */
  interceptionCa: string;
  /** Static leaf for the SNI + interception CA, PEM; and its key; and both in one file (HAProxy). */
  sniChain: string;
  sniKey: string;
  sniBundle: string;
  /** Folder of DER CRLs (ca-proxy `revocation.crlPaths`). */
  crlDir: string;
  /** The same CRLs in one PEM file (HAProxy `crl-file`, nginx `proxy_ssl_crl`, stunnel `CRLfile`). */
  crlBundle: string;
  cleanup(): void;
}

export function makeBenchPki(): BenchPki {
  const world = makeWorld();
  try {
    const dir = path.join(world.dir, 'bench');
    fs.mkdirSync(dir);
    const read = (p: string): string => fs.readFileSync(p, 'utf8');
    const write = (name: string, text: string): string => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, text, { mode: 0o600 });
      return p;
    };
    const sni = world.pki.issueLeaf('sni-localhost', { issuer: 'interception', san: [`DNS:${SNI}`] });
    const crlPem = fs
      .readdirSync(world.crlDir)
      .sort()
      .map((f) => execFileSync('openssl', ['crl', '-inform', 'DER', '-in', path.join(world.crlDir, f), '-outform', 'PEM'], { encoding: 'utf8' }))
      .join('');
    const interceptionCa = world.interceptionCA.certPath;
    return {
      world,
      dir,
      serverRoot: world.pki.root.certPath,
      serverChain: write('server-chain.pem', read(world.good.certPath) + read(world.chainPath)),
      serverCert: world.good.certPath,
      serverKey: world.good.keyPath,
      intermediate: world.chainPath,
      clientCa: world.pki.cas.get('client-ca')!.certPath,
      identityCert: world.identity.certPath,
      identityKey: world.identity.keyPath,
      identityBundle: write('identity-bundle.pem', read(world.identity.certPath) + read(world.identity.keyPath)),
      interceptionCa,
      sniChain: write('sni-chain.pem', read(sni.certPath) + read(interceptionCa)),
      sniKey: sni.keyPath,
      sniBundle: write('sni-bundle.pem', read(sni.certPath) + read(interceptionCa) + read(sni.keyPath)),
      crlDir: world.crlDir,
      crlBundle: write('crls.pem', crlPem),
      cleanup: () => world.cleanup(),
    };
  } catch (err) {
    world.cleanup();
    throw err;
  }
}
