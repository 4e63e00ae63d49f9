/**
 * A minimal capture reader for replay tests: classic libpcap files (not pcapng), link type
 * Ethernet (with optional 802.1Q tags), IPv4 or IPv6 (no extension headers, no IP
 * fragments), TCP. Each TCP connection's two directions are reassembled by sequence number,
 * so retransmissions, overlaps and out-of-order segments yield the bytes the receiver saw.
 *
 * Malformed input throws Error (this is test support, fed with known captures).
 */

export interface PcapPacket {
  /** Capture time in seconds. */
  ts: number;
  /** Captured bytes of the link-layer frame. */
  data: Buffer;
}

/** libpcap LINKTYPE_ETHERNET. */
export const LINKTYPE_ETHERNET = 1;

/** Read a classic pcap file (either byte order, micro- or nanosecond timestamps). */
export function readPcap(file: Buffer): { linkType: number; packets: PcapPacket[] } {
  if (file.length < 24) throw new Error('pcap: file shorter than its global header');
  const magic = file.readUInt32LE(0);
  let le: boolean;
  let nano: boolean;
  if (magic === 0xa1b2c3d4 || magic === 0xa1b23c4d) {
    le = true;
    nano = magic === 0xa1b23c4d;
  } else if (magic === 0xd4c3b2a1 || magic === 0x4d3cb2a1) {
    le = false;
    nano = magic === 0x4d3cb2a1;
  } else {
    throw new Error(`pcap: bad magic 0x${magic.toString(16)} (pcapng is not supported)`);
  }
  const u32 = (off: number): number => (le ? file.readUInt32LE(off) : file.readUInt32BE(off));
  const linkType = u32(20) & 0x0fffffff;
  const packets: PcapPacket[] = [];
  let off = 24;
  while (off < file.length) {
    if (off + 16 > file.length) throw new Error(`pcap: truncated record header at ${off}`);
    const sec = u32(off);
    const frac = u32(off + 4);
    const inclLen = u32(off + 8);
    off += 16;
    if (off + inclLen > file.length) throw new Error(`pcap: truncated packet at ${off}`);
    packets.push({ ts: sec + frac / (nano ? 1e9 : 1e6), data: file.subarray(off, off + inclLen) });
    off += inclLen;
  }
  return { linkType, packets };
}

export interface TcpSegment {
  /** "addr:port" of the sender (IPv6 addresses in their uncompressed hex form). */
  src: string;
  dst: string;
  seq: number;
  syn: boolean;
  ack: boolean;
  fin: boolean;
  rst: boolean;
  payload: Buffer;
}

function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** The TCP segment in an Ethernet frame, or null for anything else (ARP, UDP, ...). */
export function decodeTcp(frame: Buffer): TcpSegment | null {
  if (frame.length < 14) return null;
  let off = 12;
  let etherType = frame.readUInt16BE(off);
  off += 2;
  while (etherType === 0x8100 || etherType === 0x88a8) {
    if (frame.length < off + 4) return null;
    etherType = frame.readUInt16BE(off + 2);
    off += 4;
  }
  let srcIp: string;
  let dstIp: string;
  let tcpStart: number;
  let tcpEnd: number;
  if (etherType === 0x0800) {
    if (frame.length < off + 20) return null;
    const ihl = (frame[off]! & 0x0f) * 4;
    const total = frame.readUInt16BE(off + 2);
    if (frame[off + 9] !== 6) return null;
    const fragOff = frame.readUInt16BE(off + 6) & 0x3fff;
    if (fragOff !== 0) throw new Error('pcap: fragmented IPv4 is not supported');
    srcIp = Array.from(frame.subarray(off + 12, off + 16)).join('.');
    dstIp = Array.from(frame.subarray(off + 16, off + 20)).join('.');
    tcpStart = off + ihl;
    // The IP total length excludes Ethernet padding; fall back to the frame end when a
    // capture with TSO/offload reports 0.
    tcpEnd = total === 0 ? frame.length : Math.min(frame.length, off + total);
  } else if (etherType === 0x86dd) {
    if (frame.length < off + 40) return null;
    if (frame[off + 6] !== 6) return null;
    const payloadLen = frame.readUInt16BE(off + 4);
    srcIp = ipv6Text(frame.subarray(off + 8, off + 24));
    dstIp = ipv6Text(frame.subarray(off + 24, off + 40));
    tcpStart = off + 40;
    tcpEnd = Math.min(frame.length, tcpStart + payloadLen);
  } else {
    return null;
  }
  if (tcpEnd < tcpStart + 20) throw new Error('pcap: truncated TCP header');
  const srcPort = frame.readUInt16BE(tcpStart);
  const dstPort = frame.readUInt16BE(tcpStart + 2);
  const seq = frame.readUInt32BE(tcpStart + 4);
  const dataOff = (frame[tcpStart + 12]! >> 4) * 4;
  const flags = frame[tcpStart + 13]!;
  if (tcpStart + dataOff > tcpEnd) throw new Error('pcap: TCP data offset past the segment');
  return {
    src: `${srcIp}:${srcPort}`,
    dst: `${dstIp}:${dstPort}`,
    seq,
    syn: (flags & 0x02) !== 0,
    ack: (flags & 0x10) !== 0,
    fin: (flags & 0x01) !== 0,
    rst: (flags & 0x04) !== 0,
    payload: frame.subarray(tcpStart + dataOff, tcpEnd),
  };
}

/** One TCP connection, both directions reassembled. */
export interface TcpStream {
  client: string;
  server: string;
  /** Bytes client → server, in order, up to the first gap. */
  clientBytes: Buffer;
  /** Bytes server → client, in order, up to the first gap. */
  serverBytes: Buffer;
  /** True if a direction had a gap (a missing segment) and was cut there. */
  gap: boolean;
}

interface Direction {
  isn: number | null; // sequence number of the first payload byte
  segments: { seq: number; payload: Buffer }[];
}

/** Reassemble a 32-bit sequence space into bytes; earliest-captured bytes win on overlap. */
function reassemble(d: Direction): { bytes: Buffer; gap: boolean } {
  if (d.segments.length === 0) return { bytes: Buffer.alloc(0), gap: false };
  const base = d.isn ?? d.segments.reduce((m, s) => Math.min(m, s.seq), Infinity);
  const rel = d.segments
    .map((s, i) => ({ off: (s.seq - base) >>> 0, payload: s.payload, i }))
    // A segment "before" the ISN wraps to a huge offset: a retransmission of the handshake; drop it.
    .filter((s) => s.off < 0x80000000)
    .sort((a, b) => a.off - b.off || a.i - b.i);
  const out: Buffer[] = [];
  let next = 0;
  let gap = false;
  for (const s of rel) {
    if (s.off > next) {
      gap = true;
      break;
    }
    const end = s.off + s.payload.length;
    if (end <= next) continue; // pure retransmission
    out.push(s.payload.subarray(next - s.off));
    next = end;
  }
  return { bytes: Buffer.concat(out), gap };
}

/**
 * Group TCP segments into connections (by address/port pair) and reassemble each direction.
 * The client is the side that sent the SYN without ACK, or else the first sender seen.
 */
export function tcpStreams(segments: TcpSegment[]): TcpStream[] {
  const conns = new Map<string, { first: string; client: string | null; dirs: Map<string, Direction> }>();
  for (const s of segments) {
    const key = [s.src, s.dst].sort().join(' ');
    let c = conns.get(key);
    if (!c) {
      c = { first: s.src, client: null, dirs: new Map() };
      conns.set(key, c);
    }
    if (s.syn && !s.ack) c.client = s.src;
    let d = c.dirs.get(s.src);
    if (!d) {
      d = { isn: null, segments: [] };
      c.dirs.set(s.src, d);
    }
    if (s.syn) d.isn = (s.seq + 1) >>> 0;
    if (s.payload.length > 0) d.segments.push({ seq: s.syn ? (s.seq + 1) >>> 0 : s.seq, payload: s.payload });
  }
  const out: TcpStream[] = [];
  for (const [key, c] of conns) {
    const client = c.client ?? c.first;
    const server = key.split(' ').find((a) => a !== client) ?? client;
    const empty: Direction = { isn: null, segments: [] };
    const cb = reassemble(c.dirs.get(client) ?? empty);
    const sb = reassemble(c.dirs.get(server) ?? empty);
    out.push({ client, server, clientBytes: cb.bytes, serverBytes: sb.bytes, gap: cb.gap || sb.gap });
  }
  return out;
}

/** Read a pcap and return its TCP connections, reassembled. */
export function pcapTcpStreams(file: Buffer): TcpStream[] {
  const { linkType, packets } = readPcap(file);
  if (linkType !== LINKTYPE_ETHERNET) throw new Error(`pcap: link type ${linkType} is not supported`);
  const segs: TcpSegment[] = [];
  for (const p of packets) {
    const s = decodeTcp(p.data);
    if (s) segs.push(s);
  }
  return tcpStreams(segs);
}
