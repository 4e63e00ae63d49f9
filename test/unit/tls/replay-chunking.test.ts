/**
 * The inspect parser (HandshakeObserver, over RecordReader and HandshakeReader) on real captures
 * (shared/testdata/captures): each capture's two directions are fed in chunks of 1 byte, of
 * random sizes (seeded) and of whole records; every handshake message the manifest lists
 * (`plaintext_handshake_messages`, up to the direction's ChangeCipherSpec) must be found, in the
 * same order with the same lengths, and the events must not depend on the chunking.
 */
import { describe, test } from '@jest/globals';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { HandshakeType, RecordReader } from '../../../internal/tls';
import { HandshakeObserver, type ObservedEvent } from '../../../internal/engine/observer';
import { pcapTcpStreams } from '../../support/pcap';
import { CAPTURES, captureSuite, haveCaptures, MESSAGE_NAMES as NAMES, rng } from '../../support/captures';

type Chunking = 'one byte' | 'random sizes' | 'whole records';

function chunks(bytes: Buffer, how: Chunking, seed: number): Buffer[] {
  const out: Buffer[] = [];
  if (how === 'one byte') {
    for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1));
  } else if (how === 'random sizes') {
    const r = rng(seed);
    for (let off = 0; off < bytes.length; ) {
      const n = 1 + Math.floor(r() * (r() < 0.2 ? 3000 : 40));
      out.push(bytes.subarray(off, off + n));
      off += n;
    }
  } else {
    for (const rec of new RecordReader().push(bytes)) out.push(rec.raw);
  }
  return out;
}

/** Feed a direction; all events, the message list in manifest spelling, and the bytes held at most. */
function observe(side: 'client' | 'server', bytes: Buffer, how: Chunking, seed: number) {
  const obs = new HandshakeObserver(side, 262144);
  const events: ObservedEvent[] = [];
  let maxBuffered = 0;
  for (const c of chunks(bytes, how, seed)) {
    events.push(...obs.push(c));
    maxBuffered = Math.max(maxBuffered, obs.buffered);
    if (obs.done) break;
  }
  const messages = events.flatMap((e) => (e.kind === 'message' ? [`${NAMES[e.type] ?? e.type}(${e.length})`] : []));
  return { events, messages, maxBuffered, done: obs.done };
}

interface ManifestFile {
  file: string;
  record_layer_facts: { streams: { direction: 'client' | 'server'; plaintext_handshake_messages: string[]; sslv2_record_header: unknown; max_record_length: number }[] };
  tshark_summary: { streams: { flags: string[]; client_certificate_list_lengths: number[] }[] };
}

const manifest: { files: ManifestFile[] } = haveCaptures ? JSON.parse(fs.readFileSync(`${CAPTURES}/manifest.json`, 'utf8')) : { files: [] };
const CHUNKINGS: Chunking[] = ['one byte', 'random sizes', 'whole records'];

captureSuite.describe('inspect parser over the captures, in every chunking', () => {
  for (const entry of manifest.files) {
    const facts = entry.record_layer_facts.streams;
    if (facts.some((f) => f.sslv2_record_header)) continue; // native SSLv2: not TLS records (replay.test.ts covers it)
    test(entry.file, () => {
      const [stream] = pcapTcpStreams(fs.readFileSync(`${CAPTURES}/${entry.file}`));
      for (const f of facts) {
        const bytes = f.direction === 'client' ? stream!.clientBytes : stream!.serverBytes;
        const runs = CHUNKINGS.flatMap((how) => (how === 'random sizes' ? [1, 2, 3] : [0]).map((seed) => ({ how, seed, r: observe(f.direction, bytes, how, seed) })));
        for (const { how, seed, r } of runs) {
          assert.deepEqual(r.messages, f.plaintext_handshake_messages, `${f.direction}, ${how} (seed ${seed})`);
          assert.ok(r.maxBuffered <= 5 + f.max_record_length + 262144, `${f.direction}, ${how}: held ${r.maxBuffered} bytes`);
        }
        // Same events, same stream offsets, whatever the chunking.
        const strip = (evs: ObservedEvent[]) => evs.map((e) => JSON.stringify({ ...e, hello: undefined, chain: 'chain' in e ? e.chain.map((c) => c.length) : undefined }));
        for (const { how, seed, r } of runs.slice(1)) assert.deepEqual(strip(r.events), strip(runs[0]!.r.events), `${f.direction}: ${how} (seed ${seed}) vs one byte`);
        const ev = runs[0]!.r.events;
        if (f.direction === 'server') {
          const flags = entry.tshark_summary.streams[0]!.flags;
          assert.equal(ev.some((e) => e.kind === 'certificateRequest'), flags.includes('certificate_request'), 'CertificateRequest reported');
        } else {
          const lens = entry.tshark_summary.streams[0]!.client_certificate_list_lengths;
          const certs = ev.flatMap((e) => (e.kind === 'certificate' ? [e.chain.length] : []));
          assert.deepEqual(certs.map((n) => n > 0), lens.map((n) => n > 0), 'client Certificate empty or not');
        }
      }
    });
  }
});
