#!/usr/bin/env python3
"""Python's ssl as a second TLS stack for the stream-integrity tests (DESIGN.md "Stream integrity").

With suppress_ragged_eofs=False, Python tells a TLS close_notify (recv returns b'') from a TCP
end without one (ssl.SSLEOFError) and from a reset (ConnectionResetError), which is exactly
what the tests must observe on each side of ca-proxy.

  tls-ends.py server CERTCHAIN KEY
      Serves TLS on 127.0.0.1 (prints "PORT n"). Each connection's first line says what to do:
        "MODE clean"    send BODY bytes, then close_notify (and wait for the peer's)
        "MODE truncate" send BODY bytes, then a TCP FIN without close_notify
        "MODE reset"    send BODY bytes, then a TCP RST
        "MODE read"     read until the peer's stream ends; print "END <how> <bytes>"
  tls-ends.py client (--proxy HOST:PORT --target HOST:PORT | --direct HOST:PORT)
                     --servername NAME --cafile FILE --mode MODE [--end clean|truncate]
      Drives TLS over a MemoryBIO so that a FIN, a RST and a close_notify are told apart.
      Prints one JSON line: what the client saw ({"bytes": n, "end": "CLEAN"|"RAGGED"|"RESET"|...}).
"""
import argparse
import json
import socket
import ssl
import struct
import sys
import threading

BODY = 5000


def how_ended(sock):
    """Reads until the stream ends; returns (how, bytes read)."""
    n = 0
    try:
        while True:
            d = sock.recv(65536)
            if not d:
                return 'CLEAN', n
            n += len(d)
    except ssl.SSLEOFError:
        return 'RAGGED', n
    except ConnectionResetError:
        return 'RESET', n
    except ssl.SSLError as e:
        return 'TLS_ERROR:' + (e.reason or str(e)), n
    except socket.timeout:
        return 'TIMEOUT', n
    except OSError as e:
        return 'OS_ERROR:' + str(e), n


def read_line(sock):
    buf = b''
    while not buf.endswith(b'\n'):
        d = sock.recv(1)
        if not d:
            break
        buf += d
    return buf.decode('latin1').strip()


def end_with(sock, how):
    if how == 'clean':
        try:
            sock.unwrap()  # close_notify, then the peer's
        except (OSError, ssl.SSLError):
            pass
        sock.close()
    elif how == 'truncate':
        # SSLSocket.shutdown drops the TLS layer first: a FIN without close_notify.
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
    elif how == 'reset':
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        sock.close()


def serve_one(ctx, raw):
    raw.settimeout(10)
    try:
        sock = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
    except (OSError, ssl.SSLError) as e:
        print('HANDSHAKE_FAILED', e, flush=True)
        raw.close()
        return
    mode = read_line(sock).replace('MODE ', '')
    if mode == 'read':
        how, n = how_ended(sock)
        print('END', how, n, flush=True)
        if how == 'CLEAN':
            end_with(sock, 'clean')
        else:
            sock.close()
        return
    sock.sendall(b'x' * (BODY - 1) + b'\n')
    end_with(sock, mode)


def server(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ls = socket.socket()
    ls.bind(('127.0.0.1', 0))
    ls.listen(16)
    print('PORT', ls.getsockname()[1], flush=True)
    while True:
        raw, _ = ls.accept()
        threading.Thread(target=serve_one, args=(ctx, raw), daemon=True).start()


class BioClient:
    """TLS over a MemoryBIO, the TCP socket driven here: a TCP FIN, a TCP RST and a close_notify
    are three different events (through an SSLSocket, OpenSSL reports a reset as an EOF)."""

    def __init__(self, raw, ctx, servername):
        self.raw = raw
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=servername)
        self.tcp = None

    def flush(self):
        data = self.out.read()
        if data:
            self.raw.sendall(data)

    def pump(self):
        """One read from TCP into OpenSSL; records 'FIN' or 'RST' when the stream ended."""
        try:
            d = self.raw.recv(65536)
        except ConnectionResetError:
            self.tcp = 'RST'
            return
        if not d:
            self.tcp = 'FIN'
            self.inc.write_eof()
        else:
            self.inc.write(d)

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self.pump()
                if self.tcp == 'RST':
                    raise ConnectionResetError('reset during the handshake')

    def send(self, data):
        self.obj.write(data)
        self.flush()

    def how_ended(self):
        n = 0
        while True:
            try:
                d = self.obj.read(65536)
                if not d:
                    return 'CLEAN', n  # SSLObject.read returns b'' once close_notify arrived
                n += len(d)
            except ssl.SSLWantReadError:
                if self.tcp == 'RST':
                    return 'RESET', n
                self.pump()
            except ssl.SSLZeroReturnError:
                return 'CLEAN', n
            except ssl.SSLEOFError:
                return 'RAGGED', n
            except ssl.SSLError as e:
                return 'TLS_ERROR:' + (e.reason or str(e)), n
            except socket.timeout:
                return 'TIMEOUT', n

    def close_notify(self):
        """Sends close_notify and waits (briefly) for the peer's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            pass
        self.flush()


def client(args):
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.direct:
        host, port = args.direct.rsplit(':', 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
    else:
        host, port = args.proxy.rsplit(':', 1)
        raw = socket.create_connection((host, int(port)), timeout=10)
        raw.sendall(('CONNECT %s HTTP/1.1\r\nhost: %s\r\n\r\n' % (args.target, args.target)).encode())
        head = b''
        while b'\r\n\r\n' not in head:
            d = raw.recv(1)
            if not d:
                break
            head += d
        if not head.startswith(b'HTTP/1.1 200'):
            print(json.dumps({'connect': head.decode('latin1')}))
            return
    c = BioClient(raw, ctx, args.servername)
    try:
        c.handshake()
    except (OSError, ssl.SSLError) as e:
        print(json.dumps({'handshake': str(e)}))
        return
    c.send(('MODE %s\n' % args.mode).encode())
    if args.mode == 'read':
        if args.end == 'clean':
            c.close_notify()
            c.how_ended()  # the server's close_notify in answer
        else:
            raw.shutdown(socket.SHUT_RDWR)
        raw.close()
        print(json.dumps({'sent': args.end}))
        return
    how, n = c.how_ended()
    print(json.dumps({'bytes': n, 'end': how}), flush=True)
    if how == 'CLEAN':
        c.close_notify()
    raw.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('server')
    s.add_argument('cert')
    s.add_argument('key')
    s.add_argument('--tls12', action='store_true')
    c = sub.add_parser('client')
    c.add_argument('--proxy')
    c.add_argument('--target')
    c.add_argument('--direct')
    c.add_argument('--servername', required=True)
    c.add_argument('--cafile', required=True)
    c.add_argument('--mode', required=True)
    c.add_argument('--end', default='clean')
    args = p.parse_args()
    server(args) if args.cmd == 'server' else client(args)


if __name__ == '__main__':
    sys.exit(main())
