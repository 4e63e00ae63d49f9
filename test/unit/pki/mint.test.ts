import { describe, test, beforeAll, afterAll } from '@jest/globals';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { LeafMinter, MintError, NOT_BEFORE_SKEW_MS, normalizeLeafName } from '../../../internal/pki/mint';
import { certInfo } from '../../../internal/pki/certinfo';
import { makePki, type Pki } from '../../support/pki';

/** `openssl verify` as the independent oracle: returns its output, never throws. */
function opensslVerify(args: string[]): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync('openssl', ['verify', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

const HOUR = 3600_000;

for (const keyType of ['ec', 'rsa'] as const) {
  describe(`LeafMinter with an ${keyType.toUpperCase()} interception CA`, () => {
    let pki: Pki;
    let caCertPem: string;
    let caKeyPem: string;
    beforeAll(() => {
      pki = makePki({ keyType });
      caCertPem = pki.root.certPem;
      caKeyPem = fs.readFileSync(pki.root.keyPath, 'utf8');
    });
    afterAll(() => pki.cleanup());

    test('the minted leaf verifies with openssl verify as an SSL server for the SNI', async () => {
      const minter = new LeafMinter({ caCertPem, caKeyPem });
      const leaf = await minter.mint('Shop.Example.COM.');
      assert.equal(leaf.name, 'shop.example.com');
      const leafFile = path.join(pki.dir, `minted-${keyType}.pem`);
      fs.writeFileSync(leafFile, leaf.certPem);
      const v = opensslVerify(['-CAfile', pki.root.certPath, '-purpose', 'sslserver', '-verify_hostname', 'shop.example.com', leafFile]);
      assert.ok(v.ok, v.out);
      assert.match(v.out, /: OK/);
      const wrongHost = opensslVerify(['-CAfile', pki.root.certPath, '-verify_hostname', 'other.example.com', leafFile]);
      assert.equal(wrongHost.ok, false, wrongHost.out);
      const otherCa = opensslVerify(['-CAfile', pki.intermediate.certPath, leafFile]);
      assert.equal(otherCa.ok, false, 'a leaf of the root must not verify under another CA');
    });

    test('profile: SAN, EKU, keyUsage, cA=FALSE, validity, serial, AKI = CA SKI, P-256 key', async () => {
      const now = new Date('2030-01-01T00:00:00Z');
      // The test PKI's root is valid for 10 years from today: pick "now" inside it.
      const realNow = new Date(Math.min(now.getTime(), new Date(pki.root.x509.validTo).getTime() - 48 * HOUR));
      const minter = new LeafMinter({ caCertPem, caKeyPem, validityHours: 12, now: () => realNow });
      const leaf = await minter.mint('api.example.com');
      const x = new X509Certificate(leaf.certPem);
      assert.equal(x.subjectAltName, 'DNS:api.example.com');
      assert.equal(x.subject, 'CN=api.example.com');
      assert.deepEqual([...x.keyUsage], ['1.3.6.1.5.5.7.3.1']); // Node's name for extendedKeyUsage (copied: jest's test realm has its own Array)
      assert.equal(x.ca, false);
      assert.equal(x.issuer, pki.root.x509.subject);
      assert.ok(x.checkIssued(pki.root.x509) && x.verify(pki.root.x509.publicKey));
      const expectedNotBefore = Math.floor((realNow.getTime() - NOT_BEFORE_SKEW_MS) / 1000) * 1000;
      assert.equal(new Date(x.validFrom).getTime(), expectedNotBefore);
      assert.equal(new Date(x.validTo).getTime(), Math.floor((realNow.getTime() + 12 * HOUR) / 1000) * 1000);
      assert.equal(leaf.notBefore.getTime(), expectedNotBefore);
      assert.equal(x.publicKey.asymmetricKeyType, 'ec');
      assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
      const info = certInfo(x.raw);
      assert.equal(info.serial.length, 16, 'serial is 16 bytes');
      assert.equal(info.serial[0]! & 0x80, 0, 'serial is positive');
      assert.equal(info.serial.toString('hex'), leaf.serialHex);
      assert.equal(info.keyUsage, 1 << 0, 'keyUsage digitalSignature only');
      assert.ok(info.authorityKeyId && certInfo(pki.root.x509.raw).subjectKeyId);
      assert.deepEqual(info.authorityKeyId, certInfo(pki.root.x509.raw).subjectKeyId);
      assert.match(leaf.keyPem, /^-----BEGIN PRIVATE KEY-----/);
      assert.ok(x.checkPrivateKey(createPrivateKey(leaf.keyPem)));
      assert.ok(leaf.chainPem.startsWith(leaf.certPem) && leaf.chainPem.includes(pki.root.certPem.trim().split('\n')[1]!));
    });
  });
}

describe('LeafMinter behaviour', () => {
  let pki: Pki;
  let caCertPem: string;
  let caKeyPem: string;
  let caNotAfter: Date;
  beforeAll(() => {
    pki = makePki({ keyType: 'ec' });
    caCertPem = pki.root.certPem;
    caKeyPem = fs.readFileSync(pki.root.keyPath, 'utf8');
    caNotAfter = new Date(pki.root.x509.validTo);
  });
  afterAll(() => pki.cleanup());

  test('an IP literal gets an iPAddress SAN (IPv4 and IPv6)', async () => {
    const minter = new LeafMinter({ caCertPem, caKeyPem });
    const v4 = new X509Certificate((await minter.mint('127.0.0.1')).certPem);
    assert.equal(v4.subjectAltName, 'IP Address:127.0.0.1');
    assert.equal(v4.checkIP('127.0.0.1'), '127.0.0.1');
    const v6leaf = await minter.mint('[::0001]');
    assert.equal(v6leaf.name, '::1');
    const v6 = new X509Certificate(v6leaf.certPem);
    assert.equal(v6.checkIP('::1'), '::1');
    const file = path.join(pki.dir, 'v6.pem');
    fs.writeFileSync(file, v6leaf.certPem);
    const v = opensslVerify(['-CAfile', pki.root.certPath, '-verify_ip', '::1', file]);
    assert.ok(v.ok, v.out);
  });

  test('a name longer than 64 characters goes only into a critical SAN', async () => {
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.example.com`;
    const minter = new LeafMinter({ caCertPem, caKeyPem });
    const leaf = await minter.mint(long);
    const file = path.join(pki.dir, 'long.pem');
    fs.writeFileSync(file, leaf.certPem);
    const text = execFileSync('openssl', ['x509', '-in', file, '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /Subject Alternative Name: critical/);
    const v = opensslVerify(['-CAfile', pki.root.certPath, '-verify_hostname', long, file]);
    assert.ok(v.ok, v.out);
  });

  test('invalid names are refused with MintError invalid_name', async () => {
    const minter = new LeafMinter({ caCertPem, caKeyPem });
    for (const bad of ['', '.', '*.example.com', 'a..b', 'exa mple.com', '-a.com', 'a'.repeat(64) + '.com', 'x.'.repeat(130) + 'com', 'é.com', 'a/b']) {
      await assert.rejects(minter.mint(bad), (e: unknown) => e instanceof MintError && e.code === 'invalid_name', `name ${JSON.stringify(bad)}`);
    }
    assert.equal(minter.size, 0);
    assert.deepEqual(normalizeLeafName('_dmarc.Example.org'), { name: '_dmarc.example.org', ip: false });
  });

  test('the cache returns the same leaf for the same SNI, whatever its case', async () => {
    const minter = new LeafMinter({ caCertPem, caKeyPem });
    const a = await minter.mint('cache.example.com');
    const b = await minter.mint('CACHE.example.com');
    assert.equal(a, b);
    const other = await minter.mint('other.example.com');
    assert.notEqual(other.serialHex, a.serialHex);
  });

  test('concurrent mints for one SNI share one promise and one certificate', async () => {
    const minter = new LeafMinter({ caCertPem, caKeyPem });
    const p1 = minter.mint('same.example.com');
    const p2 = minter.mint('Same.Example.com');
    assert.equal(p1, p2);
    const [l1, l2] = await Promise.all([p1, p2]);
    assert.equal(l1.serialHex, l2.serialHex);
  });

  test('cacheSize bounds the cache, evicting the least recently used', async () => {
    const minter = new LeafMinter({ caCertPem, caKeyPem, cacheSize: 2 });
    const a = await minter.mint('a.example.com');
    const b = await minter.mint('b.example.com');
    assert.equal(await minter.mint('a.example.com'), a); // a is now the most recently used
    await minter.mint('c.example.com'); // evicts b
    assert.equal(minter.size, 2);
    assert.equal(await minter.mint('a.example.com'), a);
    const b2 = await minter.mint('b.example.com');
    assert.notEqual(b2.serialHex, b.serialHex, 'b was evicted and re-minted');
  });

  test('a leaf is reused until 80% of its validity has passed', async () => {
    let clock = new Date(Math.min(Date.now(), caNotAfter.getTime() - 72 * HOUR));
    const start = clock.getTime();
    const minter = new LeafMinter({ caCertPem, caKeyPem, validityHours: 10, now: () => clock });
    const first = await minter.mint('fresh.example.com');
    // Validity runs from start − 5 min to start + 10 h; 80% of 10h05m ≈ 8h04m after notBefore.
    const lifetime = first.notAfter.getTime() - first.notBefore.getTime();
    const reuseUntil = first.notBefore.getTime() + lifetime * 0.8;
    clock = new Date(reuseUntil - 1000);
    assert.equal(await minter.mint('fresh.example.com'), first);
    clock = new Date(reuseUntil + 1000);
    const second = await minter.mint('fresh.example.com');
    assert.notEqual(second, first);
    assert.ok(second.notBefore.getTime() > start);
  });

  test("notAfter never passes the CA's notAfter; an expired or not-yet-valid CA is refused, at start and while running", async () => {
    const near = new Date(caNotAfter.getTime() - 2 * HOUR);
    const minter = new LeafMinter({ caCertPem, caKeyPem, validityHours: 24, now: () => near });
    const leaf = await minter.mint('late.example.com');
    assert.equal(leaf.notAfter.getTime(), caNotAfter.getTime());
    assert.equal(new Date(new X509Certificate(leaf.certPem).validTo).getTime(), caNotAfter.getTime());
    const afterExpiry = new Date(caNotAfter.getTime() + HOUR);
    // Already expired: refused at start, as a CA not valid yet is.
    assert.throws(() => new LeafMinter({ caCertPem, caKeyPem, now: () => afterExpiry }), (e: unknown) => e instanceof MintError && e.code === 'ca_expired');
    const early = new Date(new X509Certificate(caCertPem).validFrom).getTime() - 2 * HOUR;
    assert.throws(() => new LeafMinter({ caCertPem, caKeyPem, now: () => new Date(early) }), (e: unknown) => e instanceof MintError && e.code === 'ca_not_yet_valid');
    // Expires while running: minting refuses from then on.
    let clock = near;
    const expiring = new LeafMinter({ caCertPem, caKeyPem, now: () => clock });
    clock = afterExpiry;
    await assert.rejects(expiring.mint('x.example.com'), (e: unknown) => e instanceof MintError && e.code === 'ca_expired');
    assert.equal(expiring.size, 0, 'a failed mint is not cached');
  });

  test('a CA certificate that is not a CA, or a key of another CA, is refused', () => {
    const leaf = pki.issueLeaf('notca', { issuer: 'root' });
    assert.throws(
      () => new LeafMinter({ caCertPem: leaf.certPem, caKeyPem: fs.readFileSync(leaf.keyPath, 'utf8') }),
      (e: unknown) => e instanceof MintError && e.code === 'bad_ca' && /not a CA/.test(e.message),
    );
    assert.throws(
      () => new LeafMinter({ caCertPem, caKeyPem: fs.readFileSync(pki.intermediate.keyPath, 'utf8') }),
      (e: unknown) => e instanceof MintError && e.code === 'bad_ca' && /does not match/.test(e.message),
    );
    assert.throws(() => new LeafMinter({ caCertPem: 'nothing', caKeyPem }), (e: unknown) => e instanceof MintError && e.code === 'bad_ca');
  });

  test('an intermediate interception CA: the chain PEM carries the bundle, and the secure context serves a TLS client', async () => {
    const bundle = pki.intermediate.certPem + pki.root.certPem;
    const minter = new LeafMinter({ caCertPem: bundle, caKeyPem: fs.readFileSync(pki.intermediate.keyPath, 'utf8') });
    const leaf = await minter.mint('localhost');
    assert.ok(leaf.secureContext);
    const chainFile = path.join(pki.dir, 'served-chain.pem');
    fs.writeFileSync(chainFile, leaf.chainPem);
    const v = opensslVerify(['-CAfile', pki.root.certPath, '-untrusted', chainFile, '-purpose', 'sslserver', chainFile]);
    assert.ok(v.ok, v.out);

    // A real handshake: a client trusting only the root accepts the minted leaf + chain.
    const server = tls.createServer({ SNICallback: (_name, cb) => cb(null, leaf.secureContext) }, (s) => s.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as { port: number }).port;
      const peer = await new Promise<X509Certificate>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.root.certPem }, () => {
          const cert = c.getPeerX509Certificate();
          c.end();
          if (cert) resolve(cert);
          else reject(new Error('no peer certificate'));
        });
        c.on('error', reject);
      });
      assert.equal(peer.subject, 'CN=localhost');
    } finally {
      server.close();
    }
  });
});
