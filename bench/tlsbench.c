/*
 * tlsbench: the load generator and the fast upstream server of `make bench` (bench/compare.ts).
 * Compiled at bench time against the system's OpenSSL (libssl-dev):
 *   cc -O2 -o tlsbench bench/tlsbench.c -lssl -lcrypto -lpthread
 *
 * client modes (every connection is a new TCP connection and a full handshake: the client keeps
 * no session cache, sends no ticket extension and never offers a session to resume):
 *   tlsbench client OPTS hs N [--concurrency C] [--rate R]
 *       N connections; each: connect, handshake (chain and host name verified), `ping\n`, read
 *       one line back, close_notify, close. With --rate R, connection i starts at i/R s (open
 *       schedule; a late connection starts at once). Latency: from connect() to the answer.
 *   tlsbench client OPTS bulk BYTES [--parallel P]
 *       P connections handshake, then all send `bulk BYTES\n` at once; each reads BYTES.
 *       Time: from the first request to the last byte of the last connection.
 *   tlsbench client OPTS hold N
 *       opens N connections one after the other (each answers a ping), prints one JSON line,
 *       holds them until standard input ends, then closes them.
 *   OPTS: --port P [--host 127.0.0.1] --sni NAME --ca FILE [--cert FILE --key FILE] [--tls 1.2|1.3]
 *   Result: one JSON object on standard output (latencies in ms, times in s).
 *
 * server mode (the upstream where `openssl s_server` would be the bottleneck: it serves one
 * connection at a time; this one runs a thread per connection):
 *   tlsbench server --port P --cert CHAIN.pem --key KEY.pem --client-ca FILE [--tls 1.2|1.3] [--tickets]
 *       requires a client certificate issued by --client-ca (as `s_server -Verify 1
 *       -verify_return_error`). Per request line: `ping` -> `pong\n`; `bulk N` -> N bytes.
 *       The server never closes first. Without --tickets it keeps no session cache and sends
 *       no tickets (TLS 1.3 num_tickets 0), so nothing can be resumed.
 *       Prints `listening PORT` once it accepts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)
#define IO_TIMEOUT_S 60

struct opts {
  const char *host, *sni, *ca, *cert, *key, *client_ca;
  int port, tls13, concurrency, parallel, tickets;
  double rate;
};
static struct opts o = {.host = "127.0.0.1", .tls13 = 1, .concurrency = 1, .parallel = 1};
static SSL_CTX *ctx;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "tlsbench: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(2);
}

/* The first error of a run, kept for the report. */
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[256];
static atomic_int errors;

static void record_error(const char *what, SSL *ssl) {
  char buf[256];
  unsigned long e = ERR_get_error();
  if (e) {
    char es[200];
    ERR_error_string_n(e, es, sizeof es);
    snprintf(buf, sizeof buf, "%s: %s", what, es);
  } else if (ssl && SSL_get_verify_result(ssl) != X509_V_OK) {
    snprintf(buf, sizeof buf, "%s: verify: %s", what, X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
  } else {
    snprintf(buf, sizeof buf, "%s: %s", what, errno ? strerror(errno) : "connection closed");
  }
  ERR_clear_error();
  atomic_fetch_add(&errors, 1);
  pthread_mutex_lock(&err_lock);
  if (!first_error[0]) snprintf(first_error, sizeof first_error, "%s", buf);
  pthread_mutex_unlock(&err_lock);
}

static void set_timeouts(int fd) {
  struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
    else fputc(*s, f);
  }
  fputc('"', f);
}

/* ---- client -------------------------------------------------------------------------------- */

struct conn {
  int fd;
  SSL *ssl;
};

/* TCP connect + full handshake; 0 on success (errors recorded). */
static int open_conn(struct conn *c) {
  c->ssl = NULL;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return record_error("socket", NULL), -1;
  set_timeouts(c->fd);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o.port)};
  inet_pton(AF_INET, o.host, &a.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) {
    record_error("connect", NULL);
    close(c->fd);
    return -1;
  }
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_tlsext_host_name(c->ssl, o.sni);
  SSL_set1_host(c->ssl, o.sni);
  if (SSL_connect(c->ssl) != 1) {
    record_error("handshake", c->ssl);
    SSL_free(c->ssl);
    close(c->fd);
    return -1;
  }
  return 0;
}

static void close_conn(struct conn *c) {
  SSL_shutdown(c->ssl); /* close_notify; the client does not wait for the peer's */
  SSL_free(c->ssl);
  close(c->fd);
}

/* `ping\n` and one line back; 0 on success. */
static int ping(struct conn *c) {
  if (SSL_write(c->ssl, "ping\n", 5) != 5) return record_error("write", c->ssl), -1;
  char buf[64];
  int got = 0;
  while (got < (int)sizeof buf) {
    int n = SSL_read(c->ssl, buf + got, sizeof buf - got);
    if (n <= 0) return record_error("read", c->ssl), -1;
    got += n;
    if (memchr(buf, '\n', got)) return 0;
  }
  return record_error("answer longer than 64 bytes", NULL), -1;
}

static const char *protocol = "", *cipher = "";
static void note_session(SSL *ssl) {
  protocol = SSL_get_version(ssl);
  cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
}

static int hs_total;
static atomic_int hs_next;
static double hs_t0, *hs_lat;

static void *hs_worker(void *arg) {
  (void)arg;
  for (;;) {
    int i = atomic_fetch_add(&hs_next, 1);
    if (i >= hs_total) return NULL;
    if (o.rate > 0) {
      double at = hs_t0 + i / o.rate, wait = at - now_s();
      if (wait > 0) {
        struct timespec ts = {.tv_sec = (time_t)wait, .tv_nsec = (long)((wait - (time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
      }
    }
    double t = now_s();
    struct conn c;
    hs_lat[i] = -1;
    if (open_conn(&c) != 0) continue;
    if (ping(&c) == 0) {
      hs_lat[i] = (now_s() - t) * 1000;
      if (!protocol[0]) note_session(c.ssl);
    }
    close_conn(&c);
  }
}

static void run_hs(int n) {
  hs_total = n;
  hs_lat = calloc(n, sizeof *hs_lat);
  pthread_t th[256];
  int k = o.concurrency < 1 ? 1 : o.concurrency > 256 ? 256 : o.concurrency;
  hs_t0 = now_s();
  for (int i = 0; i < k; i++) pthread_create(&th[i], NULL, hs_worker, NULL);
  for (int i = 0; i < k; i++) pthread_join(th[i], NULL);
  double elapsed = now_s() - hs_t0;
  int ok = 0;
  for (int i = 0; i < n; i++) ok += hs_lat[i] >= 0;
  printf("{\"mode\":\"hs\",\"ok\":%d,\"errors\":%d,\"elapsed_s\":%.6f,\"protocol\":", ok, atomic_load(&errors), elapsed);
  json_string(stdout, protocol);
  printf(",\"cipher\":");
  json_string(stdout, cipher);
  printf(",\"first_error\":");
  json_string(stdout, first_error);
  printf(",\"lat_ms\":[");
  for (int i = 0, first = 1; i < n; i++) {
    if (hs_lat[i] < 0) continue;
    printf("%s%.4f", first ? "" : ",", hs_lat[i]);
    first = 0;
  }
  printf("]}\n");
}

static long long bulk_bytes;
static pthread_barrier_t bulk_barrier;
struct bulk_result {
  double t_req, t_end;
  int ok;
};

static void *bulk_worker(void *arg) {
  struct bulk_result *r = arg;
  struct conn c;
  int opened = open_conn(&c) == 0;
  pthread_barrier_wait(&bulk_barrier);
  if (!opened) return NULL;
  char req[64];
  int len = snprintf(req, sizeof req, "bulk %lld\n", bulk_bytes);
  r->t_req = now_s();
  if (SSL_write(c.ssl, req, len) != len) {
    record_error("write", c.ssl);
    close_conn(&c);
    return NULL;
  }
  static __thread char buf[256 * 1024];
  long long got = 0;
  while (got < bulk_bytes) {
    int n = SSL_read(c.ssl, buf, sizeof buf);
    if (n <= 0) break;
    got += n;
  }
  r->t_end = now_s();
  if (got == bulk_bytes) {
    r->ok = 1;
    note_session(c.ssl);
  } else {
    char what[96];
    snprintf(what, sizeof what, "bulk: %lld of %lld bytes", got, bulk_bytes);
    record_error(what, c.ssl);
  }
  close_conn(&c);
  return NULL;
}

static void run_bulk(long long bytes) {
  bulk_bytes = bytes;
  int p = o.parallel < 1 ? 1 : o.parallel > 1024 ? 1024 : o.parallel;
  pthread_t *th = calloc(p, sizeof *th);
  struct bulk_result *r = calloc(p, sizeof *r);
  pthread_barrier_init(&bulk_barrier, NULL, p);
  for (int i = 0; i < p; i++) pthread_create(&th[i], NULL, bulk_worker, &r[i]);
  for (int i = 0; i < p; i++) pthread_join(th[i], NULL);
  double t0 = 0, t1 = 0;
  int ok = 0;
  for (int i = 0; i < p; i++) {
    if (!r[i].ok) continue;
    if (!ok || r[i].t_req < t0) t0 = r[i].t_req;
    if (!ok || r[i].t_end > t1) t1 = r[i].t_end;
    ok++;
  }
  printf("{\"mode\":\"bulk\",\"ok\":%d,\"errors\":%d,\"bytes_per_connection\":%lld,\"elapsed_s\":%.6f,\"protocol\":", ok, atomic_load(&errors), bytes, t1 - t0);
  json_string(stdout, protocol);
  printf(",\"cipher\":");
  json_string(stdout, cipher);
  printf(",\"first_error\":");
  json_string(stdout, first_error);
  printf("}\n");
}

static void run_hold(int n) {
  struct conn *c = calloc(n, sizeof *c);
  int ok = 0;
  for (int i = 0; i < n; i++) {
    if (open_conn(&c[i]) != 0) continue;
    if (ping(&c[i]) != 0) {
      close_conn(&c[i]);
      c[i].ssl = NULL;
      continue;
    }
    note_session(c[i].ssl);
    ok++;
  }
  printf("{\"mode\":\"hold\",\"ok\":%d,\"errors\":%d,\"protocol\":", ok, atomic_load(&errors));
  json_string(stdout, protocol);
  printf(",\"first_error\":");
  json_string(stdout, first_error);
  printf("}\n");
  fflush(stdout);
  char b[256];
  while (read(0, b, sizeof b) > 0) {
  }
  for (int i = 0; i < n; i++)
    if (c[i].ssl) close_conn(&c[i]);
}

/* ---- server -------------------------------------------------------------------------------- */

static void *serve(void *arg) {
  int fd = (int)(long)arg;
  set_timeouts(fd);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    static __thread char block[CHUNK];
    char line[128];
    int len = 0, clean = 0;
    for (;;) {
      int n = SSL_read(ssl, line + len, sizeof line - 1 - len);
      if (n <= 0) {
        clean = SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
        break;
      }
      len += n;
      char *nl;
      while ((nl = memchr(line, '\n', len))) {
        *nl = 0;
        long long left;
        if (!strcmp(line, "ping")) {
          SSL_write(ssl, "pong\n", 5);
        } else if (sscanf(line, "bulk %lld", &left) == 1) {
          memset(block, 'a', sizeof block);
          while (left > 0) {
            int k = left > CHUNK ? CHUNK : (int)left;
            if (SSL_write(ssl, block, k) != k) goto done;
            left -= k;
          }
        } else {
          goto done;
        }
        len -= (int)(nl + 1 - line);
        memmove(line, nl + 1, len);
      }
      if (len >= (int)sizeof line - 1) goto done;
    }
    if (clean) SSL_shutdown(ssl);
  }
done:
  ERR_clear_error();
  SSL_free(ssl);
  close(fd);
  return NULL;
}

static void run_server(void) {
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o.port)};
  inet_pton(AF_INET, o.host, &a.sin_addr);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) die("cannot listen");
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("listening %d\n", ntohs(a.sin_port));
  fflush(stdout);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 512 * 1024);
  for (;;) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
      die("accept");
    }
    pthread_t th;
    if (pthread_create(&th, &attr, serve, (void *)(long)fd) != 0) close(fd);
  }
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: tlsbench client --port P --sni NAME --ca FILE [--cert F --key F] [--tls 1.2|1.3] [--host H]\n"
          "                      (hs N [--concurrency C] [--rate R] | bulk BYTES [--parallel P] | hold N)\n"
          "       tlsbench server --port P --cert CHAIN --key KEY --client-ca FILE [--tls 1.2|1.3] [--tickets]\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2) usage();
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int server = !strcmp(argv[1], "server");
  if (!server && strcmp(argv[1], "client")) usage();
  const char *mode = NULL, *count = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && v && ++i)
    if (OPT("--port")) o.port = atoi(v);
    else if (OPT("--host")) o.host = v;
    else if (OPT("--sni")) o.sni = v;
    else if (OPT("--ca")) o.ca = v;
    else if (OPT("--cert")) o.cert = v;
    else if (OPT("--key")) o.key = v;
    else if (OPT("--client-ca")) o.client_ca = v;
    else if (OPT("--tls")) o.tls13 = !strcmp(v, "1.3");
    else if (OPT("--concurrency")) o.concurrency = atoi(v);
    else if (OPT("--parallel")) o.parallel = atoi(v);
    else if (OPT("--rate")) o.rate = atof(v);
    else if (!strcmp(a, "--tickets")) o.tickets = 1;
    else if (!server && !mode && a[0] != '-') mode = a;
    else if (!server && mode && !count && a[0] != '-') count = a;
    else usage();
  }
  int version = o.tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  if (o.cert && SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1) die("cannot load --cert");
  if (o.key && SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1) die("cannot load --key");
  if (server) {
    if (!o.cert || !o.key || !o.client_ca) usage();
    if (SSL_CTX_load_verify_locations(ctx, o.client_ca, NULL) != 1) die("cannot load --client-ca");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"tlsbench", 8);
    if (!o.tickets) {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    run_server();
    return 0;
  }
  if (!o.port || !o.sni || !o.ca || !mode || !count) usage();
  if (SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1) die("cannot load --ca");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  if (!strcmp(mode, "hs")) run_hs(atoi(count));
  else if (!strcmp(mode, "bulk")) run_bulk(atoll(count));
  else if (!strcmp(mode, "hold")) run_hold(atoi(count));
  else usage();
  return 0;
}
