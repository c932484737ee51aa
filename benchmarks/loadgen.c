/*
 * loadgen.c - Starling's MQTT 3.1.1 load generator.
 *
 * One process, one thread, one epoll loop driving every client connection
 * with non-blocking sockets.  The MQTT packets it needs (CONNECT, CONNACK,
 * SUBSCRIBE, SUBACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, PINGREQ,
 * PINGRESP, DISCONNECT) are encoded and decoded here by hand so that the
 * generator has no dependency and costs as little CPU per message as
 * possible: the point is to measure the broker, not the client library.
 *
 * Closed loop.  Every message carries (publisher index, sequence number,
 * send timestamp) in its payload.  A publisher may have at most --window
 * messages that were sent but not yet received by every subscriber that
 * should get them, and (QoS 1/2) at most --inflight messages not yet
 * acknowledged.  So a broker that acknowledges or accepts faster than it
 * delivers gains nothing: the measured figure is what subscribers received.
 * QoS 0 messages that a broker drops would stall a window forever, so a
 * gap in a subscriber's sequence (MQTT keeps per-publisher order on a
 * topic) counts the missing ones as lost, and anything outstanding for
 * longer than --loss-timeout is given up on and counted as lost too.
 *
 * Each run: connect everything, subscribe, then --warmup seconds of load
 * that are not counted, then --duration seconds that are, then DISCONNECT
 * and exit.  The result is one JSON object on stdout; diagnostics go to
 * stderr.  An alarm() watchdog guarantees the process ends by itself.
 *
 * Exit codes: 0 success, 1 the run failed (connection refused or closed,
 * protocol error, setup timeout, watchdog), 2 usage error.
 *
 * Build: gcc -O2 -Wall -Wextra -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_RUN_FAILED 1
#define EXIT_USAGE 2

/* MQTT control packet types (high nibble of the first byte). */
enum {
    MQTT_CONNECT = 1, MQTT_CONNACK = 2, MQTT_PUBLISH = 3, MQTT_PUBACK = 4,
    MQTT_PUBREC = 5, MQTT_PUBREL = 6, MQTT_PUBCOMP = 7, MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9, MQTT_PINGREQ = 12, MQTT_PINGRESP = 13, MQTT_DISCONNECT = 14,
};

/* Payload header written by publishers and checked by subscribers. */
#define PAYLOAD_MAGIC 0x4c47454eu /* "LGEN" */
#define PAYLOAD_HDR 24            /* magic u32, pub u32, seq u32, pad u32, ts u64 */

#define READ_CHUNK 65536
#define MAX_PACKET (1u << 20)     /* we never expect anything larger */
#define HOUSEKEEP_NS 50000000ull  /* loss timeouts / keepalive sweep: 50 ms */
#define MAX_EVENTS 1024
#define MAX_ERR_LOG 10            /* protocol errors printed before going quiet */

enum scenario { SC_FANIN, SC_FANOUT, SC_PAIRS, SC_LATENCY, SC_IDLE, SC_FAIRNESS };
enum role { ROLE_PUB, ROLE_SUB, ROLE_IDLE };
enum cstate { CS_CONNECTING, CS_WAIT_CONNACK, CS_WAIT_SUBACK, CS_READY, CS_CLOSED };
enum phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DONE };

static const char *const scenario_names[] = {"fanin", "fanout", "pairs", "latency", "idle",
                                              "fairness"};

/* ------------------------------------------------------------------ config */

/* Brokers made of several processes (a cluster): ports and pids per run. */
#define MAX_PORTS 16
#define MAX_PIDS 16

struct config {
    enum scenario scenario;
    const char *host;
    int port;
    int publishers;
    int subscribers;
    int qos;
    int payload;
    int window;
    int inflight;
    double duration;
    double warmup;
    double rate;
    int connections;
    int concurrency;
    double settle;
    long broker_pid;      /* the first of broker_pids (0: none) */
    long broker_pids[MAX_PIDS];
    int nbroker_pids;
    int sub_ports[MAX_PORTS], nsub_ports; /* subscriber i connects to sub_ports[i % n] */
    int pub_ports[MAX_PORTS], npub_ports; /* publisher i to pub_ports[i % n] */
    char topic_prefix[128];
    double connect_timeout;
    double loss_timeout;
    int keepalive;
    bool persistent;      /* subscribers connect with clean session 0 */
    int min_batch;        /* a publisher refills only when this many messages fit */
    int per_write;        /* at most this many messages per send() (0: no limit) */
    int sub_batch;        /* QoS 0/1 subscribers wake once this many PUBLISHes are there */
    int stuck;            /* fairness: subscribers that stop reading once subscribed */
    bool storm;           /* idle: after settling, drop every connection and reconnect all */
    int storm_concurrency;
    bool wildcard;        /* fanout subscribers use <prefix>/+ instead of the topic */
};

static struct config cfg = {
    .scenario = SC_FANIN, .host = "127.0.0.1", .port = 0,
    .publishers = -1, .subscribers = -1, .qos = -1, .payload = 64,
    .window = 100, .inflight = 10, .duration = 5.0, .warmup = 1.0,
    .rate = 1000.0, .connections = 10000, .concurrency = 50, .settle = 1.0,
    .broker_pid = 0, .topic_prefix = "", .connect_timeout = 30.0,
    .loss_timeout = 2.0, .keepalive = 60, .min_batch = 1, .per_write = 0,
    .sub_batch = 1, .stuck = 1, .storm_concurrency = 0,
};

/* ------------------------------------------------------------------ state */

/* A byte buffer: [off, len) is the live part. */
struct buf {
    uint8_t *data;
    size_t off, len, cap;
};

struct conn {
    int fd;
    enum role role;
    int idx;              /* index into pubs[] / subs[] / the idle set */
    enum cstate state;
    bool epollout;        /* EPOLLOUT currently registered */
    bool lowat;           /* SO_RCVLOWAT set: read by the housekeeping sweep too */
    struct buf in, out;
    uint64_t last_tx_ns;  /* for keepalive */
    uint64_t start_ns;    /* connect() time, for CONNECT->CONNACK latency */
};

struct pub {
    struct conn *c;
    int qos, payload;
    bool heavy;           /* fairness: sends as fast as its socket takes, open loop */
    char topic[160];
    uint16_t topic_len;
    uint32_t seq_next;    /* next sequence number to send */
    uint32_t base;        /* oldest sequence not yet fully received */
    uint16_t *remaining;  /* ring[window]: receptions still expected per seq */
    uint64_t *sent_ns;    /* ring[window]: when each seq was sent */
    uint8_t *id_state;    /* QoS>0: [65536] 0 free, 1 wait PUBACK/PUBREC, 2 wait PUBCOMP */
    uint16_t next_id;
    int unacked;
    bool kicked;          /* already on the kick list */
};

struct sub {
    struct conn *c;
    int qos;
    bool record_latency;  /* deliveries go into the latency samples */
    bool stuck;           /* stops reading once subscribed */
    uint64_t rx;          /* deliveries received */
    char filter[160];
    uint32_t *expect;     /* [publishers]: next sequence expected from each */
    uint8_t *id_state;    /* QoS 2: [65536] 1 = PUBREC sent, waiting for PUBREL */
};

static struct {
    int ep;
    int timer_fd;
    enum phase phase;
    struct conn *conns;
    int nconns;
    struct pub *pubs;
    int npubs;
    struct sub *subs;
    int nsubs;
    int fan;              /* receptions each published message should produce */
    bool use_window;
    int ready;            /* connections that reached CS_READY */
    int pending;          /* idle: connections started but not yet CONNACKed */
    int started;          /* idle: connections started */
    int connected;        /* idle: connections open when the RSS was read */
    bool failed;
    char error[256];
    /* counters */
    uint64_t tx, rx, lost, timed_out, reordered, protocol_errors;
    uint64_t tx_m0, rx_m0, tx_m1, rx_m1;
    uint64_t t_setup0, t_warm0, t_meas0, t_meas1;
    uint64_t cpu_self0, cpu_self1, cpu_user0, cpu_user1, cpu_broker0, cpu_broker1;
    /* system calls on the data path: send(), recv() (incl. the timerfd), epoll_wait() */
    uint64_t n_send, n_recv, n_wait;
    uint64_t n_send_m0, n_recv_m0, n_wait_m0, n_send_m1, n_recv_m1, n_wait_m1;
    uint64_t bsys_r0, bsys_w0, bsys_r1, bsys_w1; /* the broker's, from /proc/<pid>/io */
    /* latency samples (ns) */
    uint64_t *lat;
    size_t nlat, lat_cap;
    uint64_t late_ticks;
    /* kick list: publishers whose window opened during this loop turn */
    int *kick;
    int nkick;
    /* idle scenario */
    uint64_t t_idle_first_connack, t_idle_last_connack;
    long rss_before_kib, rss_after_kib, rss_storm_kib;
    uint64_t pings, pongs;
    uint64_t t_hold0, t_hold1, cpu_hold0, cpu_hold1;
    uint64_t t_storm0, t_storm1, t_connect_end, t_drain0, t_drain1;
    bool draining;        /* storm: DISCONNECT sent to all, the broker's close is expected */
    int storm_connected;
    int timed_pub;        /* the publisher the timer paces (latency, fairness) */
    uint64_t heavy_rx_m0, heavy_rx_m1;
    uint8_t filler[65536];
} G;

static int timer_tag; /* its address marks the timerfd in epoll data */

/* ------------------------------------------------------------------ utils */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Our own CPU time (user+system) in ns; the user part alone in *user_ns.  The
 * split matters: user time is this program's work, system time is mostly the
 * kernel's TCP loopback path, which any client would pay as well. */
static uint64_t self_cpu_ns(uint64_t *user_ns)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t u = (uint64_t)ru.ru_utime.tv_sec * 1000000000ull + (uint64_t)ru.ru_utime.tv_usec * 1000ull;
    uint64_t s = (uint64_t)ru.ru_stime.tv_sec * 1000000000ull + (uint64_t)ru.ru_stime.tv_usec * 1000ull;
    *user_ns = u;
    return u + s;
}

static uint64_t sec_to_ns(double s) { return (uint64_t)(s * 1e9); }

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(EXIT_RUN_FAILED);
    }
    return p;
}

/* Record the first fatal error; the main loop stops at its next turn. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    if (G.failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(G.error, sizeof G.error, fmt, ap);
    va_end(ap);
    G.failed = true;
    fprintf(stderr, "loadgen: %s\n", G.error);
}

/* CPU time (user+system, all threads) of one process from /proc/<pid>/stat, in ns. */
static uint64_t pid_cpu_ns(long pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* comm (field 2) may contain spaces: fields are counted after the last ')'. */
    char *p = strrchr(line, ')');
    if (!p)
        return 0;
    unsigned long long utime = 0, stime = 0;
    /* after ')' come fields 3..; utime and stime are fields 14 and 15 */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &utime, &stime) != 2)
        return 0;
    long tck = sysconf(_SC_CLK_TCK);
    return (utime + stime) * (1000000000ull / (uint64_t)(tck > 0 ? tck : 100));
}

/* The broker's read-like and write-like system calls (syscr, syscw of /proc/<pid>/io:
 * read/write/readv/writev/sendfile..., not send/recv) or false if unreadable. */
static bool broker_syscalls(uint64_t *reads, uint64_t *writes)
{
    *reads = *writes = 0;
    if (cfg.nbroker_pids <= 0)
        return false;
    int found = 0;
    for (int i = 0; i < cfg.nbroker_pids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%ld/io", cfg.broker_pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            return false;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "syscr:", 6) == 0) {
                *reads += strtoull(line + 6, NULL, 10);
                found++;
            } else if (strncmp(line, "syscw:", 6) == 0) {
                *writes += strtoull(line + 6, NULL, 10);
                found++;
            }
        }
        fclose(f);
    }
    return found == 2 * cfg.nbroker_pids;
}

/* Broker CPU time in ns: summed over every --broker-pid (a cluster's processes). */
static uint64_t broker_cpu_ns(void)
{
    uint64_t total = 0;
    for (int i = 0; i < cfg.nbroker_pids; i++)
        total += pid_cpu_ns(cfg.broker_pids[i]);
    return total;
}

/* Broker resident set size (VmRSS) in KiB, or -1. */
static long pid_rss_kib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

/* Summed over every --broker-pid; -1 if none could be read. */
static long broker_rss_kib(void)
{
    long total = -1;
    for (int i = 0; i < cfg.nbroker_pids; i++) {
        long kib = pid_rss_kib(cfg.broker_pids[i]);
        if (kib >= 0)
            total = (total < 0 ? 0 : total) + kib;
    }
    return total;
}

/* ------------------------------------------------------------------ buffers */

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    /* Reclaim the consumed prefix before growing. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(EXIT_RUN_FAILED);
    }
    b->data = d;
    b->cap = cap;
}

static inline uint8_t *put_u8(uint8_t *p, uint8_t v) { *p = v; return p + 1; }
static inline uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}
static inline uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}
static inline uint8_t *put_str(uint8_t *p, const char *s, size_t n)
{
    return put_bytes(put_u16(p, (uint16_t)n), s, n);
}
/* MQTT "remaining length": 7 bits per byte, high bit = more. */
static inline uint8_t *put_varint(uint8_t *p, uint32_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        *p++ = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    return p;
}
static inline uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

/* Space in the output buffer for one packet of at most `n` bytes. */
static uint8_t *out_begin(struct conn *c, size_t n)
{
    buf_reserve(&c->out, n);
    return c->out.data + c->out.len;
}
static void out_commit(struct conn *c, const uint8_t *end)
{
    c->out.len = (size_t)(end - c->out.data);
}

/* ------------------------------------------------------------------ epoll */

static void ep_update(struct conn *c, bool want_out)
{
    if (c->epollout == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        fail("epoll_ctl: %s", strerror(errno));
    c->epollout = want_out;
}

static void conn_close(struct conn *c)
{
    if (c->state == CS_CLOSED)
        return;
    if (c->state == CS_READY)
        G.ready--;
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = CS_CLOSED;
}

/* The peer went away or the socket failed: fatal unless we are finishing. */
static void conn_lost(struct conn *c, const char *why)
{
    if (G.phase != PH_DONE && !G.draining)
        fail("connection %s#%d: %s", c->role == ROLE_PUB ? "pub" : c->role == ROLE_SUB ? "sub" : "idle",
             c->idx, why);
    conn_close(c);
}

static void protocol_error(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void protocol_error(struct conn *c, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (G.protocol_errors++ < MAX_ERR_LOG)
        fprintf(stderr, "loadgen: protocol error on conn %d: %s\n", c->idx, msg);
    /* The stream cannot be trusted past a protocol error: drop it and stop. */
    fail("protocol error: %s", msg);
    conn_close(c);
}

/* Write as much pending output as the socket takes; arm EPOLLOUT for the rest. */
static void conn_flush(struct conn *c)
{
    if (c->state == CS_CLOSED || c->state == CS_CONNECTING)
        return;
    struct buf *b = &c->out;
    while (b->off < b->len) {
        ssize_t n = send(c->fd, b->data + b->off, b->len - b->off, MSG_NOSIGNAL);
        G.n_send++;
        if (n > 0) {
            b->off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ep_update(c, true);
            return;
        }
        conn_lost(c, n < 0 ? strerror(errno) : "send returned 0");
        return;
    }
    b->off = b->len = 0;
    ep_update(c, false);
}

/* ------------------------------------------------------------------ MQTT encode */

static void send_connect(struct conn *c)
{
    char cid[64];
    int n = snprintf(cid, sizeof cid, "lg%d-%c%d", (int)getpid(),
                     c->role == ROLE_PUB ? 'p' : c->role == ROLE_SUB ? 's' : 'i', c->idx);
    uint32_t rem = 10 + 2 + (uint32_t)n; /* variable header + client id */
    uint8_t *p = out_begin(c, 5 + rem);
    p = put_u8(p, MQTT_CONNECT << 4);
    p = put_varint(p, rem);
    p = put_str(p, "MQTT", 4);
    p = put_u8(p, 4);            /* protocol level: 3.1.1 */
    /* Clean session, unless --persistent asks for persistent subscriber sessions
     * (the broker then keeps their messages durably).  No will, no credentials. */
    p = put_u8(p, cfg.persistent && c->role == ROLE_SUB ? 0x00 : 0x02);
    p = put_u16(p, (uint16_t)cfg.keepalive);
    p = put_str(p, cid, (size_t)n);
    out_commit(c, p);
}

static void send_subscribe(struct conn *c, const char *filter, int qos)
{
    size_t fl = strlen(filter);
    uint32_t rem = (uint32_t)(2 + 2 + fl + 1);
    uint8_t *p = out_begin(c, 5 + rem);
    p = put_u8(p, MQTT_SUBSCRIBE << 4 | 0x02); /* flags 0010 are mandatory */
    p = put_varint(p, rem);
    p = put_u16(p, 1);           /* packet id */
    p = put_str(p, filter, fl);
    p = put_u8(p, (uint8_t)qos);
    out_commit(c, p);
}

/* PUBACK / PUBREC / PUBREL / PUBCOMP: two-byte body holding the packet id. */
static void send_ack(struct conn *c, int type, uint16_t id)
{
    uint8_t *p = out_begin(c, 4);
    p = put_u8(p, (uint8_t)(type << 4 | (type == MQTT_PUBREL ? 0x02 : 0)));
    p = put_u8(p, 2);
    p = put_u16(p, id);
    out_commit(c, p);
}

static void send_simple(struct conn *c, int type)
{
    uint8_t *p = out_begin(c, 2);
    p = put_u8(p, (uint8_t)(type << 4));
    p = put_u8(p, 0);
    out_commit(c, p);
}

/* Queue one PUBLISH from publisher `pp`, stamped with `ts`. */
static void send_publish(struct pub *pp, uint64_t ts)
{
    struct conn *c = pp->c;
    uint32_t seq = pp->seq_next++;
    uint16_t id = 0;
    if (pp->qos > 0) {
        /* With at most --inflight ids in use a free one is always close by. */
        do {
            id = ++pp->next_id;
            if (id == 0)
                id = pp->next_id = 1;
        } while (pp->id_state[id] != 0);
        pp->id_state[id] = 1;
        pp->unacked++;
    }
    if (G.use_window) {
        uint32_t slot = seq % (uint32_t)cfg.window;
        pp->remaining[slot] = (uint16_t)G.fan;
        pp->sent_ns[slot] = ts;
    }
    uint32_t rem = 2u + pp->topic_len + (pp->qos > 0 ? 2u : 0u) + (uint32_t)pp->payload;
    uint8_t *p = out_begin(c, 5 + rem);
    p = put_u8(p, (uint8_t)(MQTT_PUBLISH << 4 | pp->qos << 1));
    p = put_varint(p, rem);
    p = put_str(p, pp->topic, pp->topic_len);
    if (pp->qos > 0)
        p = put_u16(p, id);
    uint32_t hdr[4] = {PAYLOAD_MAGIC, (uint32_t)(pp - G.pubs), seq, 0};
    p = put_bytes(p, hdr, sizeof hdr);
    p = put_bytes(p, &ts, sizeof ts);
    p = put_bytes(p, G.filler, (size_t)pp->payload - PAYLOAD_HDR);
    out_commit(c, p);
    c->last_tx_ns = ts;
    G.tx++;
}

/* ------------------------------------------------------------------ windows */

static void kick(struct pub *pp)
{
    if (!pp->kicked) {
        pp->kicked = true;
        G.kick[G.nkick++] = (int)(pp - G.pubs);
    }
}

/* Fill the publisher's windows (closed-loop throughput scenarios only).
 *
 * Only once --min-batch messages fit (or the whole window, if smaller): a
 * generator that answered every single acknowledgement with a single PUBLISH
 * would spend a system call (and, on loopback, the broker's TCP receive path)
 * per message, as much as a fast broker spends on it, and become the
 * bottleneck it is meant to measure.  --per-write N flushes every N messages
 * (1: each PUBLISH is its own send(), as a small device writes). */
static void pump(struct pub *pp, uint64_t now)
{
    if ((G.phase != PH_WARMUP && G.phase != PH_MEASURE) || pp->c->state != CS_READY)
        return;
    int room = cfg.window - (int)(pp->seq_next - pp->base);
    int cap = cfg.window;
    if (pp->qos > 0) {
        if (cfg.inflight - pp->unacked < room)
            room = cfg.inflight - pp->unacked;
        if (cfg.inflight < cap)
            cap = cfg.inflight;
    }
    if (room <= 0 || room < (cfg.min_batch < cap ? cfg.min_batch : cap))
        return;
    for (int n = 1; n <= room; n++) {
        send_publish(pp, now);
        if (cfg.per_write > 0 && n % cfg.per_write == 0) {
            conn_flush(pp->c);
            if (pp->c->state != CS_READY)
                return;
        }
    }
    conn_flush(pp->c);
}

/* One of the receptions that message `seq` of publisher `pp` should produce happened
 * (or was found lost).  Retire fully received messages at the head of the window. */
static void account(struct pub *pp, uint32_t seq)
{
    if (!G.use_window || seq < pp->base || seq >= pp->seq_next)
        return; /* retired earlier by the loss timeout */
    uint32_t w = (uint32_t)cfg.window;
    uint16_t *r = &pp->remaining[seq % w];
    if (*r == 0 || --*r != 0 || seq != pp->base)
        return;
    while (pp->base < pp->seq_next && pp->remaining[pp->base % w] == 0)
        pp->base++;
    kick(pp);
}

/* Give up on messages outstanding longer than --loss-timeout. */
static void expire_lost(uint64_t now)
{
    uint64_t limit = sec_to_ns(cfg.loss_timeout);
    uint32_t w = (uint32_t)cfg.window;
    for (int i = 0; i < G.npubs; i++) {
        struct pub *pp = &G.pubs[i];
        bool moved = false;
        while (pp->base < pp->seq_next && now - pp->sent_ns[pp->base % w] > limit) {
            G.timed_out += pp->remaining[pp->base % w];
            pp->remaining[pp->base % w] = 0;
            pp->base++;
            moved = true;
        }
        if (moved)
            kick(pp);
    }
}

/* ------------------------------------------------------------------ MQTT decode */

static void on_delivery(struct conn *c, const uint8_t *topic, size_t topic_len,
                        const uint8_t *pl, size_t len, uint64_t now)
{
    uint32_t hdr[4];
    uint64_t ts;
    if (len < PAYLOAD_HDR) {
        protocol_error(c, "payload of %zu bytes is not ours", len);
        return;
    }
    memcpy(hdr, pl, sizeof hdr);
    memcpy(&ts, pl + 16, sizeof ts);
    if (hdr[0] != PAYLOAD_MAGIC || hdr[1] >= (uint32_t)G.npubs) {
        protocol_error(c, "payload header not ours");
        return;
    }
    uint32_t p = hdr[1], seq = hdr[2];
    struct pub *pp = &G.pubs[p];
    struct sub *s = &G.subs[c->idx];
    if (cfg.scenario == SC_PAIRS && (int)p != c->idx) {
        protocol_error(c, "subscriber %d got a message from publisher %u's topic", c->idx, p);
        return;
    }
    if (seq >= pp->seq_next) {
        protocol_error(c, "message %u from publisher %u was never sent", seq, p);
        return;
    }
    if (topic_len != pp->topic_len || memcmp(topic, pp->topic, topic_len) != 0) {
        protocol_error(c, "message from publisher %u arrived with topic '%.*s'", p,
                       (int)(topic_len > 100 ? 100 : topic_len), (const char *)topic);
        return;
    }
    G.rx++;
    s->rx++;
    if (G.phase == PH_MEASURE && G.lat && s->record_latency) {
        if (G.nlat < G.lat_cap)
            G.lat[G.nlat++] = now - ts;
    }
    uint32_t exp = s->expect[p];
    if (seq < exp) { /* MQTT keeps per-publisher order: this is a dup or reorder */
        G.reordered++;
        return;
    }
    if (seq > exp) { /* the gap was dropped by the broker (legal at QoS 0) */
        G.lost += seq - exp;
        for (uint32_t k = exp; k < seq; k++)
            account(pp, k);
    }
    account(pp, seq);
    s->expect[p] = seq + 1;
}

static void set_lowat(struct conn *c);

static void on_connack(struct conn *c, const uint8_t *body, uint32_t len, uint64_t now)
{
    if (c->state != CS_WAIT_CONNACK || len != 2) {
        protocol_error(c, "unexpected CONNACK");
        return;
    }
    if (body[1] != 0) {
        protocol_error(c, "CONNACK refused, return code %u", body[1]);
        return;
    }
    if (c->role == ROLE_SUB) {
        send_subscribe(c, G.subs[c->idx].filter, G.subs[c->idx].qos);
        c->state = CS_WAIT_SUBACK;
        return;
    }
    c->state = CS_READY;
    G.ready++;
    if (c->role == ROLE_PUB)
        set_lowat(c);
    if (c->role == ROLE_IDLE) {
        G.pending--;
        if (G.lat && G.nlat < G.lat_cap)
            G.lat[G.nlat++] = now - c->start_ns;
        if (!G.t_idle_first_connack)
            G.t_idle_first_connack = now;
        G.t_idle_last_connack = now;
    }
}

/* Bytes of the smallest PUBLISH a subscriber of this run receives. */
static int smallest_publish(void)
{
    int tl = 1 << 16;
    for (int i = 0; i < G.npubs; i++)
        if (G.pubs[i].topic_len < tl)
            tl = G.pubs[i].topic_len;
    int rem = 2 + tl + (cfg.scenario == SC_PAIRS && cfg.qos > 0 ? 2 : 0) + cfg.payload;
    return 1 + (rem < 128 ? 1 : rem < 16384 ? 2 : 3) + rem;
}

/* A connection that can do little with fewer than N packets asks the kernel to wake it
 * only once N packets' bytes are there (SO_RCVLOWAT), instead of once per packet of a
 * broker that writes each packet on its own: a publisher that refills only once
 * --min-batch messages fit (their acknowledgements are 4 bytes each), a subscriber with
 * --sub-batch (N of the smallest packet it gets: a PUBLISH, or at QoS 2 a PUBREL).
 * Those bytes come without the connection doing anything first: the broker acknowledges
 * every PUBLISH and keeps delivering while its in-flight window to the subscriber is not
 * full (20 for Mosquitto, 32 for Starling), whatever the earlier PUBRELs wait for.  The
 * 50 ms housekeeping sweep reads these sockets anyway (the tail of a run). */
static void set_lowat(struct conn *c)
{
    if (!G.use_window)
        return;
    int bytes = 0;
    if (c->role == ROLE_PUB && cfg.qos > 0) {
        int cap = cfg.inflight < cfg.window ? cfg.inflight : cfg.window;
        int batch = cfg.min_batch < cap ? cfg.min_batch : cap;
        bytes = batch > 1 ? 4 * batch : 0;
    } else if (c->role == ROLE_SUB && cfg.sub_batch > 1) {
        bytes = cfg.sub_batch * (cfg.scenario == SC_PAIRS && cfg.qos == 2 ? 4 : smallest_publish());
    }
    if (bytes > 0 && setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes) == 0)
        c->lowat = true;
}

static void handle_packet(struct conn *c, uint8_t b0, const uint8_t *body, uint32_t len, uint64_t now)
{
    int type = b0 >> 4, flags = b0 & 0x0f;
    struct pub *pp = c->role == ROLE_PUB ? &G.pubs[c->idx] : NULL;
    switch (type) {
    case MQTT_CONNACK:
        on_connack(c, body, len, now);
        return;
    case MQTT_SUBACK:
        if (c->state != CS_WAIT_SUBACK || len != 3 || get_u16(body) != 1) {
            protocol_error(c, "unexpected SUBACK");
            return;
        }
        if (body[2] == 0x80) {
            protocol_error(c, "subscription refused");
            return;
        }
        c->state = CS_READY;
        G.ready++;
        set_lowat(c);
        if (G.subs[c->idx].stuck && epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL) < 0)
            fail("epoll_ctl: %s", strerror(errno)); /* it never reads again */
        return;
    case MQTT_PUBLISH: {
        int qos = (flags >> 1) & 3;
        /* A server may start delivering before its SUBACK, hence WAIT_SUBACK. */
        if (c->role != ROLE_SUB || (c->state != CS_READY && c->state != CS_WAIT_SUBACK) ||
            qos == 3 || len < 2) {
            protocol_error(c, "unexpected PUBLISH");
            return;
        }
        uint32_t tl = get_u16(body), hl = 2 + tl + (qos ? 2 : 0);
        if (hl > len) {
            protocol_error(c, "truncated PUBLISH");
            return;
        }
        if (qos > 0) {
            uint16_t id = get_u16(body + 2 + tl);
            if (qos == 1) {
                send_ack(c, MQTT_PUBACK, id);
            } else {
                uint8_t *st = &G.subs[c->idx].id_state[id];
                if (*st && !(flags & 0x08)) {
                    protocol_error(c, "QoS 2 PUBLISH reused packet id %u", id);
                    return;
                }
                send_ack(c, MQTT_PUBREC, id);
                if (*st) /* a DUP retransmission: acknowledged, not delivered twice */
                    return;
                *st = 1;
            }
        }
        on_delivery(c, body + 2, tl, body + hl, len - hl, now);
        return;
    }
    case MQTT_PUBREL: {
        if (c->role != ROLE_SUB || G.subs[c->idx].qos != 2 || len != 2 || flags != 2) {
            protocol_error(c, "unexpected PUBREL");
            return;
        }
        uint16_t id = get_u16(body);
        G.subs[c->idx].id_state[id] = 0;
        send_ack(c, MQTT_PUBCOMP, id); /* also the answer to a PUBREL we never saw */
        return;
    }
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP: {
        int want_qos = type == MQTT_PUBACK ? 1 : 2;
        if (!pp || pp->qos != want_qos || len != 2) {
            protocol_error(c, "unexpected ack type %d", type);
            return;
        }
        uint16_t id = get_u16(body);
        uint8_t expected_state = type == MQTT_PUBCOMP ? 2 : 1;
        if (pp->id_state[id] != expected_state) {
            protocol_error(c, "ack type %d for packet id %u not in flight", type, id);
            return;
        }
        if (type == MQTT_PUBREC) {
            pp->id_state[id] = 2;
            send_ack(c, MQTT_PUBREL, id);
        } else {
            pp->id_state[id] = 0;
            pp->unacked--;
            kick(pp);
        }
        return;
    }
    case MQTT_PINGRESP:
        if (len != 0)
            protocol_error(c, "malformed PINGRESP");
        G.pongs++;
        return;
    default:
        protocol_error(c, "unexpected packet type %d", type);
        return;
    }
}

/* Read what the socket has and handle every complete packet in it. */
static void conn_read(struct conn *c, uint64_t now)
{
    struct buf *b = &c->in;
    buf_reserve(b, c->role == ROLE_IDLE ? 256 : READ_CHUNK);
    ssize_t n = recv(c->fd, b->data + b->len, b->cap - b->len, 0);
    G.n_recv++;
    if (n == 0) {
        conn_lost(c, "closed by the broker");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_lost(c, strerror(errno));
        return;
    }
    b->len += (size_t)n;
    size_t pos = b->off, need = 0;
    while (b->len - pos >= 2) {
        const uint8_t *p = b->data + pos;
        size_t avail = b->len - pos;
        uint32_t rem = 0;
        size_t i = 1;
        int shift = 0;
        bool complete = false;
        while (i < avail && i <= 4) {
            rem |= (uint32_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80)) {
                complete = true;
                break;
            }
        }
        if (!complete) {
            if (i > 4) {
                protocol_error(c, "remaining length longer than 4 bytes");
                return;
            }
            break; /* length bytes not all here yet */
        }
        if (rem > MAX_PACKET) {
            protocol_error(c, "packet of %u bytes", rem);
            return;
        }
        if (avail < i + rem) {
            need = i + rem - avail; /* the rest of this packet is still to come */
            break;
        }
        handle_packet(c, p[0], p + i, rem, now);
        if (c->state == CS_CLOSED)
            return;
        pos += i + rem;
    }
    b->off = pos;
    if (b->off == b->len)
        b->off = b->len = 0;
    else if (need)
        buf_reserve(b, need); /* room for the whole packet, so the next read can finish it */
    if (c->out.len > c->out.off) /* acks produced while parsing go out in one write */
        conn_flush(c);
}

/* ------------------------------------------------------------------ connections */

static int start_conn(struct conn *c, const struct sockaddr_in *addr, uint64_t now)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail("socket: %s%s", strerror(errno),
             errno == EMFILE ? " (raise ulimit -n)" : "");
        return -1;
    }
    int one = 1;
    /* Latency: never let Nagle hold a small PUBLISH back waiting for an ACK. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->start_ns = now;
    c->last_tx_ns = now;
    c->epollout = false;
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) == 0) {
        c->state = CS_WAIT_CONNACK;
    } else if (errno == EINPROGRESS) {
        c->state = CS_CONNECTING;
    } else {
        fail("connect to %s:%d: %s", cfg.host, cfg.port, strerror(errno));
        close(fd);
        c->fd = -1;
        c->state = CS_CLOSED;
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (c->state == CS_CONNECTING) {
        ev.events |= EPOLLOUT;
        c->epollout = true;
    }
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fail("epoll_ctl: %s", strerror(errno));
        return -1;
    }
    send_connect(c);
    conn_flush(c);
    return 0;
}

/* Fairness: the heavy publisher sends whenever its socket has room, open loop;
 * EPOLLOUT stays armed so the loop wakes whenever the socket drains. */
static void heavy_refill(struct pub *pp, uint64_t now)
{
    struct conn *c = pp->c;
    if ((G.phase != PH_WARMUP && G.phase != PH_MEASURE) || c->state != CS_READY)
        return;
    if (c->out.len == c->out.off) {
        for (int i = 0; i < 4; i++)
            send_publish(pp, now);
        conn_flush(c);
    }
    if (c->state == CS_READY)
        ep_update(c, true);
}

static void handle_event(struct epoll_event *ev, uint64_t now)
{
    struct conn *c = ev->data.ptr;
    if (c->state == CS_CLOSED)
        return;
    if (c->state == CS_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fail("connect to %s:%d: %s", cfg.host, cfg.port, strerror(err));
            conn_close(c);
            return;
        }
        if (!(ev->events & (EPOLLOUT | EPOLLIN)))
            return;
        c->state = CS_WAIT_CONNACK;
        conn_flush(c); /* the queued CONNECT */
    }
    if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(c, now);
    if ((ev->events & EPOLLOUT) && c->state != CS_CLOSED) {
        conn_flush(c);
        if (c->role == ROLE_PUB && G.pubs[c->idx].heavy)
            heavy_refill(&G.pubs[c->idx], now);
    }
}

/* Keep-alive: a connection that has sent nothing for half the interval pings. */
static void keepalive_sweep(uint64_t now)
{
    if (cfg.keepalive <= 0)
        return;
    uint64_t half = (uint64_t)cfg.keepalive * UINT64_C(500000000);
    for (int i = 0; i < G.nconns; i++) {
        struct conn *c = &G.conns[i];
        if (c->state == CS_READY && now - c->last_tx_ns > half) {
            send_simple(c, MQTT_PINGREQ);
            G.pings++;
            c->last_tx_ns = now;
            conn_flush(c);
        }
    }
}

/* What SO_RCVLOWAT holds back below its mark is read here, every 50 ms. */
static void lowat_sweep(uint64_t now)
{
    for (int i = 0; i < G.nconns; i++) {
        struct conn *c = &G.conns[i];
        if (c->lowat && c->state == CS_READY)
            conn_read(c, now);
    }
}

static void disconnect_all(void)
{
    G.phase = PH_DONE;
    for (int i = 0; i < G.nconns; i++) {
        struct conn *c = &G.conns[i];
        if (c->state == CS_READY || c->state == CS_WAIT_SUBACK) {
            /* Best effort: whatever is still queued is dropped, then DISCONNECT. */
            c->out.off = c->out.len = 0;
            send_simple(c, MQTT_DISCONNECT);
            conn_flush(c);
        }
        conn_close(c);
    }
}

/* One turn of the event loop: wait at most `timeout_ms`, handle, then pump. */
static void loop_turn(int timeout_ms)
{
    static struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(G.ep, evs, MAX_EVENTS, timeout_ms);
    G.n_wait++;
    if (n < 0) {
        if (errno != EINTR)
            fail("epoll_wait: %s", strerror(errno));
        return;
    }
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == &timer_tag) {
            /* Latency pacing: send every message that is due, stamped now. */
            uint64_t ticks = 0;
            G.n_recv++;
            if (read(G.timer_fd, &ticks, sizeof ticks) != (ssize_t)sizeof ticks)
                continue;
            if (ticks > 1)
                G.late_ticks += ticks - 1;
            if (G.phase == PH_WARMUP || G.phase == PH_MEASURE) {
                struct pub *tp = &G.pubs[G.timed_pub];
                for (uint64_t t = 0; t < ticks; t++)
                    send_publish(tp, now);
                conn_flush(tp->c);
            }
            continue;
        }
        handle_event(&evs[i], now);
    }
    if (G.nkick) {
        now = now_ns();
        for (int i = 0; i < G.nkick; i++) {
            struct pub *pp = &G.pubs[G.kick[i]];
            pp->kicked = false;
            if (G.use_window)
                pump(pp, now);
        }
        G.nkick = 0;
    }
}

static int ms_until(uint64_t deadline, uint64_t now, int cap)
{
    if (deadline <= now)
        return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms < (uint64_t)cap ? (int)ms : cap;
}

/* ------------------------------------------------------------------ scenarios */

static void setup_topology(void)
{
    const char *pre = cfg.topic_prefix;
    G.npubs = cfg.publishers;
    G.nsubs = cfg.subscribers;
    G.nconns = G.npubs + G.nsubs;
    G.conns = xcalloc((size_t)G.nconns, sizeof *G.conns);
    G.pubs = xcalloc((size_t)G.npubs, sizeof *G.pubs);
    G.subs = xcalloc((size_t)G.nsubs, sizeof *G.subs);
    G.kick = xcalloc((size_t)G.npubs, sizeof *G.kick);
    G.use_window = cfg.scenario != SC_LATENCY && cfg.scenario != SC_FAIRNESS;
    /* how many subscribers each message reaches */
    G.fan = cfg.scenario == SC_FANOUT ? G.nsubs : 1;

    /* Subscribers first in conns[] so they are subscribed before anyone publishes. */
    for (int i = 0; i < G.nsubs; i++) {
        struct sub *s = &G.subs[i];
        struct conn *c = &G.conns[i];
        c->role = ROLE_SUB;
        c->idx = i;
        s->c = c;
        s->expect = xcalloc((size_t)G.npubs, sizeof *s->expect);
        s->qos = cfg.scenario == SC_PAIRS ? cfg.qos : 0;
        s->record_latency = cfg.scenario == SC_LATENCY;
        if (cfg.scenario == SC_FAIRNESS) {
            /* 0: the bystander on the heavy topic, 1: the probe's subscriber (QoS 1),
             * 2..: stuck subscribers on the heavy topic */
            s->qos = i == 1 ? 1 : 0;
            s->record_latency = i == 1;
            s->stuck = i >= 2;
            snprintf(s->filter, sizeof s->filter, "%s/%s", pre, i == 1 ? "probe" : "heavy");
            continue;
        }
        if (s->qos == 2)
            s->id_state = xcalloc(65536, 1);
        switch (cfg.scenario) {
        case SC_FANIN: snprintf(s->filter, sizeof s->filter, "%s/fanin/+", pre); break;
        case SC_FANOUT:
            snprintf(s->filter, sizeof s->filter, cfg.wildcard ? "%s/+" : "%s/fanout", pre);
            break;
        case SC_PAIRS: snprintf(s->filter, sizeof s->filter, "%s/pair/%d", pre, i); break;
        default: snprintf(s->filter, sizeof s->filter, "%s/latency", pre); break;
        }
    }
    for (int i = 0; i < G.npubs; i++) {
        struct pub *pp = &G.pubs[i];
        struct conn *c = &G.conns[G.nsubs + i];
        c->role = ROLE_PUB;
        c->idx = i;
        pp->c = c;
        pp->qos = cfg.qos;
        pp->payload = cfg.payload;
        int n;
        switch (cfg.scenario) {
        case SC_FAIRNESS:
            /* 0: the heavy publisher (QoS 0, --payload), 1: the probe (QoS 1, paced) */
            pp->heavy = i == 0;
            pp->qos = i == 0 ? 0 : 1;
            pp->payload = i == 0 ? cfg.payload : 64;
            n = snprintf(pp->topic, sizeof pp->topic, "%s/%s", pre, i == 0 ? "heavy" : "probe");
            break;
        case SC_FANIN: n = snprintf(pp->topic, sizeof pp->topic, "%s/fanin/%d", pre, i); break;
        case SC_FANOUT: n = snprintf(pp->topic, sizeof pp->topic, "%s/fanout", pre); break;
        case SC_PAIRS: n = snprintf(pp->topic, sizeof pp->topic, "%s/pair/%d", pre, i); break;
        default: n = snprintf(pp->topic, sizeof pp->topic, "%s/latency", pre); break;
        }
        pp->topic_len = (uint16_t)n;
        if (G.use_window) {
            pp->remaining = xcalloc((size_t)cfg.window, sizeof *pp->remaining);
            pp->sent_ns = xcalloc((size_t)cfg.window, sizeof *pp->sent_ns);
        }
        if (pp->qos > 0)
            pp->id_state = xcalloc(65536, 1);
    }
}

/* Where each subscriber / publisher connects (--sub-ports, --pub-ports). */
static struct sockaddr_in sub_addrs[MAX_PORTS], pub_addrs[MAX_PORTS];

static void run_traffic(void)
{
    setup_topology();
    if (cfg.scenario == SC_LATENCY || cfg.scenario == SC_FAIRNESS) {
        G.lat_cap = (size_t)(cfg.rate * cfg.duration * 1.2) + 1024;
        G.lat = xcalloc(G.lat_cap, sizeof *G.lat);
    }
    uint64_t now = now_ns();
    G.t_setup0 = now;
    uint64_t setup_deadline = now + sec_to_ns(cfg.connect_timeout);
    /* Subscribers, then (once all are subscribed) publishers. */
    for (int i = 0; i < G.nsubs && !G.failed; i++)
        start_conn(&G.conns[i], &sub_addrs[i % cfg.nsub_ports], now);
    while (!G.failed && G.ready < G.nsubs) {
        now = now_ns();
        if (now >= setup_deadline) {
            fail("setup timeout: %d of %d subscribers ready", G.ready, G.nsubs);
            break;
        }
        loop_turn(ms_until(setup_deadline, now, 100));
    }
    for (int i = G.nsubs; i < G.nconns && !G.failed; i++)
        start_conn(&G.conns[i], &pub_addrs[(i - G.nsubs) % cfg.npub_ports], now_ns());
    while (!G.failed && G.ready < G.nconns) {
        now = now_ns();
        if (now >= setup_deadline) {
            fail("setup timeout: %d of %d connections ready", G.ready, G.nconns);
            break;
        }
        loop_turn(ms_until(setup_deadline, now, 100));
    }
    if (G.failed)
        return;

    /* Load starts. */
    now = now_ns();
    G.phase = PH_WARMUP;
    G.t_warm0 = now;
    G.rss_before_kib = broker_rss_kib();
    if (cfg.scenario == SC_LATENCY || cfg.scenario == SC_FAIRNESS) {
        G.timed_pub = cfg.scenario == SC_FAIRNESS ? 1 : 0;
        if (cfg.scenario == SC_FAIRNESS)
            heavy_refill(&G.pubs[0], now);
        uint64_t iv = (uint64_t)(1e9 / cfg.rate);
        struct itimerspec its = {
            .it_interval = {.tv_sec = (time_t)(iv / 1000000000ull), .tv_nsec = (long)(iv % 1000000000ull)},
            .it_value = {.tv_sec = (time_t)(iv / 1000000000ull), .tv_nsec = (long)(iv % 1000000000ull)},
        };
        G.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &timer_tag};
        if (G.timer_fd < 0 || epoll_ctl(G.ep, EPOLL_CTL_ADD, G.timer_fd, &ev) < 0 ||
            timerfd_settime(G.timer_fd, 0, &its, NULL) < 0) {
            fail("timerfd: %s", strerror(errno));
            return;
        }
    } else {
        for (int i = 0; i < G.npubs; i++)
            pump(&G.pubs[i], now);
    }
    uint64_t t_meas = G.t_warm0 + sec_to_ns(cfg.warmup);
    uint64_t t_end = t_meas + sec_to_ns(cfg.duration);
    uint64_t next_housekeep = now + HOUSEKEEP_NS;
    while (!G.failed) {
        now = now_ns();
        if (G.phase == PH_WARMUP && now >= t_meas) {
            G.phase = PH_MEASURE;
            G.t_meas0 = now;
            G.tx_m0 = G.tx;
            G.rx_m0 = G.rx;
            G.n_send_m0 = G.n_send;
            G.n_recv_m0 = G.n_recv;
            G.n_wait_m0 = G.n_wait;
            broker_syscalls(&G.bsys_r0, &G.bsys_w0);
            G.heavy_rx_m0 = G.nsubs ? G.subs[0].rx : 0;
            G.cpu_self0 = self_cpu_ns(&G.cpu_user0);
            G.cpu_broker0 = broker_cpu_ns();
        }
        if (G.phase == PH_MEASURE && now >= t_end)
            break;
        if (now >= next_housekeep) {
            if (G.use_window)
                expire_lost(now);
            keepalive_sweep(now);
            lowat_sweep(now);
            next_housekeep = now + HOUSEKEEP_NS;
        }
        uint64_t next = G.phase == PH_WARMUP ? t_meas : t_end;
        if (next_housekeep < next)
            next = next_housekeep;
        loop_turn(ms_until(next, now, 1000));
    }
    /* Close the measured window, also when a failure cut it short, so the
     * report covers exactly what was counted inside it. */
    if (G.phase == PH_MEASURE) {
        G.t_meas1 = now_ns();
        G.tx_m1 = G.tx;
        G.rx_m1 = G.rx;
        G.n_send_m1 = G.n_send;
        G.n_recv_m1 = G.n_recv;
        G.n_wait_m1 = G.n_wait;
        broker_syscalls(&G.bsys_r1, &G.bsys_w1);
        G.heavy_rx_m1 = G.nsubs ? G.subs[0].rx : 0;
        G.cpu_self1 = self_cpu_ns(&G.cpu_user1);
        G.cpu_broker1 = broker_cpu_ns();
    }
    G.rss_after_kib = broker_rss_kib();
}

static void run_storm(const struct sockaddr_in *addr);

static void run_idle(const struct sockaddr_in *addr)
{
    G.nconns = cfg.connections;
    G.conns = xcalloc((size_t)G.nconns, sizeof *G.conns);
    G.lat_cap = (size_t)G.nconns;
    G.lat = xcalloc(G.lat_cap, sizeof *G.lat);
    for (int i = 0; i < G.nconns; i++) {
        G.conns[i].role = ROLE_IDLE;
        G.conns[i].idx = i;
        G.conns[i].fd = -1;
    }
    G.rss_before_kib = broker_rss_kib();
    uint64_t now = now_ns();
    G.t_setup0 = now;
    G.cpu_self0 = self_cpu_ns(&G.cpu_user0);
    G.cpu_broker0 = broker_cpu_ns();
    uint64_t deadline = now + sec_to_ns(cfg.connect_timeout);
    uint64_t next_housekeep = now + HOUSEKEEP_NS;
    /* Keep --concurrency handshakes in flight until all are connected. */
    while (!G.failed && G.ready < G.nconns) {
        now = now_ns();
        while (!G.failed && G.started < G.nconns && G.pending < cfg.concurrency) {
            G.pending++;
            start_conn(&G.conns[G.started++], addr, now);
        }
        if (now >= deadline) {
            fail("connect timeout: %d of %d connections made", G.ready, G.nconns);
            break;
        }
        if (now >= next_housekeep) {
            keepalive_sweep(now);
            next_housekeep = now + HOUSEKEEP_NS;
        }
        loop_turn(ms_until(deadline, now, 50));
    }
    G.t_meas1 = now_ns();
    G.cpu_self1 = self_cpu_ns(&G.cpu_user1);
    G.cpu_broker1 = broker_cpu_ns();
    G.connected = G.ready;
    if (G.failed)
        return;
    /* Let the broker settle with every connection open, then read its RSS. */
    G.phase = PH_MEASURE;
    G.t_hold0 = now_ns();
    G.cpu_hold0 = broker_cpu_ns();
    uint64_t settle_end = G.t_hold0 + sec_to_ns(cfg.settle);
    while (!G.failed && (now = now_ns()) < settle_end) {
        if (now >= next_housekeep) {
            keepalive_sweep(now);
            next_housekeep = now + HOUSEKEEP_NS;
        }
        loop_turn(ms_until(settle_end, now, 50));
    }
    G.t_hold1 = now_ns();
    G.cpu_hold1 = broker_cpu_ns();
    G.rss_after_kib = broker_rss_kib();
    G.connected = G.ready;
    if (!G.failed && G.ready != G.nconns)
        fail("only %d of %d connections still open after settling", G.ready, G.nconns);
    if (!G.failed && cfg.storm)
        run_storm(addr);
}

/* Every connection sends DISCONNECT at once, and is closed once the broker has closed
 * it (so the broker's descriptors are free again: with 19,000 connections under a
 * 20,000 open-file limit, old and new connections cannot all be open together);
 * then all reconnect at once with the same client ids. */
static void run_storm(const struct sockaddr_in *addr)
{
    G.t_connect_end = G.t_idle_last_connack;
    G.draining = true;
    G.t_drain0 = now_ns();
    for (int i = 0; i < G.nconns; i++) {
        struct conn *c = &G.conns[i];
        c->out.off = c->out.len = 0;
        send_simple(c, MQTT_DISCONNECT);
        conn_flush(c);
    }
    uint64_t drain_deadline = now_ns() + sec_to_ns(cfg.connect_timeout);
    uint64_t t;
    while (!G.failed && G.ready > 0 && (t = now_ns()) < drain_deadline)
        loop_turn(ms_until(drain_deadline, t, 50));
    G.t_drain1 = now_ns();
    G.draining = false;
    if (G.ready > 0) {
        fail("disconnect storm: the broker had not closed %d of %d connections", G.ready,
             G.nconns);
        return;
    }
    for (int i = 0; i < G.nconns; i++) {
        struct conn *c = &G.conns[i];
        conn_close(c);
        c->in.off = c->in.len = c->out.off = c->out.len = 0;
    }
    int concurrency = cfg.storm_concurrency > 0 ? cfg.storm_concurrency : G.nconns;
    uint64_t now = now_ns();
    G.t_storm0 = now;
    G.started = G.pending = 0;
    uint64_t deadline = now + sec_to_ns(cfg.connect_timeout);
    uint64_t next_housekeep = now + HOUSEKEEP_NS;
    while (!G.failed && G.ready < G.nconns) {
        now = now_ns();
        /* All at once, but a few hundred connect() calls per loop turn: a client sends
         * its CONNECT as soon as its connection is up, not after 19,000 others were
         * started (the broker's idle timeout, 15 s, would close it first). */
        for (int n = 0; !G.failed && G.started < G.nconns && G.pending < concurrency && n < 256;
             n++) {
            G.pending++;
            start_conn(&G.conns[G.started++], addr, now);
        }
        if (now >= deadline) {
            fail("reconnect storm timeout: %d of %d connections made", G.ready, G.nconns);
            break;
        }
        if (now >= next_housekeep) {
            keepalive_sweep(now);
            next_housekeep = now + HOUSEKEEP_NS;
        }
        loop_turn(G.started < G.nconns ? 0 : ms_until(deadline, now, 50));
    }
    G.t_storm1 = G.t_idle_last_connack;
    G.storm_connected = G.ready;
    /* A second's grace: a connection the broker closes after its CONNACK fails the run. */
    uint64_t grace_end = now_ns() + sec_to_ns(1.0);
    while (!G.failed && (now = now_ns()) < grace_end)
        loop_turn(ms_until(grace_end, now, 50));
    G.rss_storm_kib = broker_rss_kib();
    if (!G.failed && G.ready != G.nconns)
        fail("only %d of %d connections open after the reconnect storm", G.ready, G.nconns);
}

/* ------------------------------------------------------------------ report */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)sorted[i];
}

static void print_latency(const char *key)
{
    qsort(G.lat, G.nlat, sizeof *G.lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < G.nlat; i++)
        sum += (double)G.lat[i];
    printf(", \"%s\": {\"samples\": %zu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
           "\"max\": %.1f, \"mean\": %.1f}",
           key, G.nlat, pct(G.lat, G.nlat, 0.50) / 1e3, pct(G.lat, G.nlat, 0.90) / 1e3,
           pct(G.lat, G.nlat, 0.99) / 1e3, G.nlat ? (double)G.lat[G.nlat - 1] / 1e3 : 0.0,
           G.nlat ? sum / (double)G.nlat / 1e3 : 0.0);
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void report(void)
{
    bool ok = !G.failed && G.protocol_errors == 0;
    printf("{\"scenario\": \"%s\", \"ok\": %s", scenario_names[cfg.scenario], ok ? "true" : "false");
    if (G.failed) {
        printf(", \"error\": ");
        json_str(G.error);
    }
    printf(", \"protocol_errors\": %" PRIu64, G.protocol_errors);
    double t0 = (double)G.t_meas0, t1 = (double)G.t_meas1;
    if (cfg.scenario == SC_IDLE) {
        uint64_t last = G.t_connect_end ? G.t_connect_end : G.t_idle_last_connack;
        double secs = last > G.t_setup0 ? (double)(last - G.t_setup0) / 1e9 : 0.0;
        printf(", \"connections\": %d, \"connected\": %d, \"concurrency\": %d", cfg.connections,
               G.connected, cfg.concurrency);
        printf(", \"connect_seconds\": %.3f, \"connect_rate\": %.1f", secs,
               secs > 0 ? G.connected / secs : 0.0);
        t0 = (double)G.t_setup0;
        print_latency("connect_latency_us");
        printf(", \"rss_before_kib\": %ld, \"rss_after_kib\": %ld", G.rss_before_kib, G.rss_after_kib);
        if (G.rss_before_kib >= 0 && G.rss_after_kib >= 0 && G.connected > 0)
            printf(", \"rss_per_conn_kib\": %.3f",
                   (double)(G.rss_after_kib - G.rss_before_kib) / G.connected);
        double hold = (double)(G.t_hold1 - G.t_hold0);
        printf(", \"hold_s\": %.1f, \"pings\": %" PRIu64 ", \"pongs\": %" PRIu64,
               hold / 1e9, G.pings, G.pongs);
        if (cfg.broker_pid > 0 && hold > 0)
            printf(", \"hold_broker_cpu_pct\": %.2f",
                   100.0 * (double)(G.cpu_hold1 - G.cpu_hold0) / hold);
        if (cfg.storm) {
            double storm = G.t_storm1 > G.t_storm0 ? (double)(G.t_storm1 - G.t_storm0) / 1e9 : 0;
            printf(", \"disconnect_seconds\": %.3f, \"storm_connected\": %d"
                   ", \"storm_seconds\": %.3f, \"storm_rate\": %.1f, \"rss_after_storm_kib\": %ld",
                   (double)(G.t_drain1 - G.t_drain0) / 1e9, G.storm_connected, storm,
                   storm > 0 ? G.storm_connected / storm : 0.0, G.rss_storm_kib);
        }
    } else {
        double secs = t1 > t0 ? (t1 - t0) / 1e9 : 0;
        uint64_t tx = G.tx_m1 - G.tx_m0, rx = G.rx_m1 - G.rx_m0;
        printf(", \"qos\": %d, \"publishers\": %d, \"subscribers\": %d, \"payload\": %d",
               cfg.qos, G.npubs, G.nsubs, cfg.payload);
        if (cfg.scenario == SC_LATENCY || cfg.scenario == SC_FAIRNESS)
            printf(", \"rate\": %.1f, \"late_ticks\": %" PRIu64, cfg.rate, G.late_ticks);
        if (cfg.scenario == SC_FAIRNESS) {
            uint64_t heavy = G.heavy_rx_m1 - G.heavy_rx_m0;
            printf(", \"stuck\": %d, \"heavy_received\": %" PRIu64 ", \"heavy_receive_rate\": %.1f"
                   ", \"heavy_mib_s\": %.1f, \"rss_before_kib\": %ld, \"rss_after_kib\": %ld",
                   cfg.stuck, heavy, secs > 0 ? (double)heavy / secs : 0.0,
                   secs > 0 ? (double)heavy * cfg.payload / secs / 1048576.0 : 0.0,
                   G.rss_before_kib, G.rss_after_kib);
            if (G.rss_before_kib >= 0 && G.rss_after_kib >= 0)
                printf(", \"rss_growth_mib\": %.1f",
                       (double)(G.rss_after_kib - G.rss_before_kib) / 1024.0);
        }
        else
            printf(", \"window\": %d, \"inflight\": %d", cfg.window, cfg.qos ? cfg.inflight : 0);
        printf(", \"warmup_s\": %.3f, \"measured_s\": %.3f", cfg.warmup, secs);
        printf(", \"published\": %" PRIu64 ", \"received\": %" PRIu64, tx, rx);
        printf(", \"publish_rate\": %.1f, \"receive_rate\": %.1f",
               secs > 0 ? (double)tx / secs : 0.0, secs > 0 ? (double)rx / secs : 0.0);
        printf(", \"lost\": %" PRIu64 ", \"timed_out\": %" PRIu64 ", \"reordered\": %" PRIu64,
               G.lost, G.timed_out, G.reordered);
        printf(", \"min_batch\": %d, \"per_write\": %d, \"sub_batch\": %d", cfg.min_batch,
               cfg.per_write, cfg.sub_batch);
        if (rx > 0) {
            /* The self-check: system calls per message received, ours and the broker's. */
            double r = (double)rx;
            printf(", \"loadgen_syscalls_per_msg\": {\"send\": %.3f, \"recv\": %.3f, "
                   "\"epoll_wait\": %.3f}",
                   (double)(G.n_send_m1 - G.n_send_m0) / r, (double)(G.n_recv_m1 - G.n_recv_m0) / r,
                   (double)(G.n_wait_m1 - G.n_wait_m0) / r);
            if (G.bsys_r1 >= G.bsys_r0 && G.bsys_r1 > 0)
                printf(", \"broker_syscalls_per_msg\": {\"read\": %.3f, \"write\": %.3f}",
                       (double)(G.bsys_r1 - G.bsys_r0) / r, (double)(G.bsys_w1 - G.bsys_w0) / r);
        }
        if (G.lat)
            print_latency("latency_us");
    }
    double wall = t1 > t0 ? (t1 - t0) : 0;
    if (wall > 0) {
        printf(", \"loadgen_cpu_pct\": %.1f, \"loadgen_user_cpu_pct\": %.1f",
               100.0 * (double)(G.cpu_self1 - G.cpu_self0) / wall,
               100.0 * (double)(G.cpu_user1 - G.cpu_user0) / wall);
        if (cfg.broker_pid > 0 && G.cpu_broker1 >= G.cpu_broker0)
            printf(", \"broker_cpu_pct\": %.1f",
                   100.0 * (double)(G.cpu_broker1 - G.cpu_broker0) / wall);
    }
    printf("}\n");
    fflush(stdout);
}

/* ------------------------------------------------------------------ main */

/* "a,b,c" -> out[], each within [lo, hi]; the count, or -1 if malformed. */
static int parse_list(const char *text, long lo, long hi, long *out, int max)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < lo || v > hi || n == max)
            return -1;
        out[n++] = v;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loadgen --port PORT [--scenario NAME] [options]\n"
        "\n"
        "MQTT 3.1.1 closed-loop load generator.  Prints one JSON object on stdout.\n"
        "\n"
        "scenarios:\n"
        "  fanin     N publishers -> 1 subscriber on a wildcard filter (QoS 0)\n"
        "  fanout    1 publisher -> N subscribers on one topic (QoS 0)\n"
        "  pairs     N publisher->subscriber pairs, one topic each (--qos 0|1|2)\n"
        "  latency   1 publisher -> 1 subscriber at a fixed --rate, QoS 0\n"
        "  idle      open --connections idle connections, report connect rate and broker RSS\n"
        "  fairness  a heavy QoS 0 publisher (--payload, open loop) to a reading subscriber and\n"
        "            --stuck subscribers that stop reading, beside a QoS 1 probe pair at --rate:\n"
        "            the probe's latency p50/p99 and what the reading subscriber got\n"
        "\n"
        "options:\n"
        "  -s, --scenario NAME      fanin|fanout|pairs|latency|idle|fairness (default fanin)\n"
        "  -H, --host ADDR          broker IPv4 address (default 127.0.0.1)\n"
        "  -p, --port PORT          broker port (required)\n"
        "  -P, --publishers N       default: fanin 10, fanout 1, pairs 10, latency 1\n"
        "  -S, --subscribers N      fanout only (default 100)\n"
        "  -q, --qos Q              pairs only (default 1)\n"
        "      --payload BYTES      payload size, >= %d (default 64)\n"
        "      --window N           max messages sent but not yet received, per publisher (100)\n"
        "      --inflight N         max unacknowledged QoS 1/2 messages, per publisher (10)\n"
        "  -d, --duration SECS      measured time (default 5)\n"
        "  -w, --warmup SECS        unmeasured load before it (default 1)\n"
        "      --rate MSGS          latency, fairness: probe messages per second (default 1000)\n"
        "      --connections N      idle: connections to open (default 10000)\n"
        "      --concurrency N      idle: handshakes in flight at once (default 50)\n"
        "      --settle SECS        idle: wait with all open before reading RSS (default 1);\n"
        "                           the broker's CPU over this hold is reported\n"
        "      --storm              idle: then every connection sends DISCONNECT at once, and\n"
        "                           once the broker has closed them all, all reconnect at once\n"
        "      --storm-concurrency N  idle: handshakes in flight in the storm (default: all)\n"
        "      --stuck N            fairness: subscribers that stop reading (default 1)\n"
        "      --broker-pid PID     read the broker's CPU time and RSS from /proc\n"
        "                           (PID,PID,...: a broker of several processes, summed)\n"
        "      --sub-ports P,P,...  subscriber i connects to the (i mod n)th port (a cluster)\n"
        "      --pub-ports P,P,...  publisher i likewise (both default to --port)\n"
        "      --topic-prefix STR   topic prefix (default lg/<pid>)\n"
        "      --connect-timeout S  limit for connecting/subscribing everything (default 30)\n"
        "      --loss-timeout S     give up on an undelivered message after S (default 2)\n"
        "      --keepalive S        MQTT keep-alive (default 60; PINGREQ at half)\n"
        "      --persistent         subscribers use persistent sessions (clean session 0)\n"
        "      --min-batch N        a publisher refills its window only once N messages fit\n"
        "                           (or the whole window, if smaller; default 1)\n"
        "      --per-write N        at most N messages per send() (default: no limit;\n"
        "                           1 = one message per system call)\n"
        "      --sub-batch N        QoS 0/1 subscribers are woken once N PUBLISHes are\n"
        "                           there (SO_RCVLOWAT; default 1)\n"
        "      --wildcard           fanout: subscribers use the filter <prefix>/+\n"
        "  -h, --help               this text\n"
        "\n"
        "exit status: 0 ok, 1 run failed (see \"error\" in the JSON), 2 usage error\n",
        PAYLOAD_HDR);
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "loadgen: watchdog: run exceeded its time budget\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    _exit(EXIT_RUN_FAILED);
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    enum {
        O_PAYLOAD = 256, O_WINDOW, O_INFLIGHT, O_RATE, O_CONNECTIONS, O_CONCURRENCY, O_SETTLE,
        O_PID, O_PREFIX, O_CTIMEOUT, O_LTIMEOUT, O_KEEPALIVE, O_PERSISTENT, O_MIN_BATCH,
        O_PER_WRITE, O_SUB_BATCH, O_STUCK, O_STORM, O_STORM_CONC, O_WILDCARD, O_SUB_PORTS,
        O_PUB_PORTS,
    };
    static const struct option opts[] = {
        {"scenario", required_argument, 0, 's'}, {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'}, {"publishers", required_argument, 0, 'P'},
        {"subscribers", required_argument, 0, 'S'}, {"qos", required_argument, 0, 'q'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'w'},
        {"payload", required_argument, 0, O_PAYLOAD}, {"window", required_argument, 0, O_WINDOW},
        {"inflight", required_argument, 0, O_INFLIGHT}, {"rate", required_argument, 0, O_RATE},
        {"connections", required_argument, 0, O_CONNECTIONS},
        {"concurrency", required_argument, 0, O_CONCURRENCY},
        {"settle", required_argument, 0, O_SETTLE}, {"broker-pid", required_argument, 0, O_PID},
        {"topic-prefix", required_argument, 0, O_PREFIX},
        {"connect-timeout", required_argument, 0, O_CTIMEOUT},
        {"loss-timeout", required_argument, 0, O_LTIMEOUT},
        {"keepalive", required_argument, 0, O_KEEPALIVE},
        {"persistent", no_argument, 0, O_PERSISTENT},
        {"min-batch", required_argument, 0, O_MIN_BATCH},
        {"per-write", required_argument, 0, O_PER_WRITE},
        {"sub-batch", required_argument, 0, O_SUB_BATCH},
        {"stuck", required_argument, 0, O_STUCK}, {"storm", no_argument, 0, O_STORM},
        {"storm-concurrency", required_argument, 0, O_STORM_CONC},
        {"sub-ports", required_argument, 0, O_SUB_PORTS},
        {"pub-ports", required_argument, 0, O_PUB_PORTS},
        {"wildcard", no_argument, 0, O_WILDCARD},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    int opt;
    long v;
    bool bad = false;
    while ((opt = getopt_long(argc, argv, "s:H:p:P:S:q:d:w:h", opts, NULL)) != -1) {
        const char *a = optarg;
        switch (opt) {
        case 's': {
            bool found = false;
            for (int i = 0; i < (int)(sizeof scenario_names / sizeof *scenario_names); i++)
                if (strcmp(a, scenario_names[i]) == 0) {
                    cfg.scenario = (enum scenario)i;
                    found = true;
                }
            bad |= !found;
            break;
        }
        case 'H': cfg.host = a; break;
        case 'p': bad |= !parse_int(a, 1, 65535, &v); cfg.port = (int)v; break;
        case 'P': bad |= !parse_int(a, 1, 10000, &v); cfg.publishers = (int)v; break;
        case 'S': bad |= !parse_int(a, 1, 10000, &v); cfg.subscribers = (int)v; break;
        case 'q': bad |= !parse_int(a, 0, 2, &v); cfg.qos = (int)v; break;
        case 'd': bad |= !parse_double(a, 0.01, 86400, &cfg.duration); break;
        case 'w': bad |= !parse_double(a, 0, 86400, &cfg.warmup); break;
        case O_PAYLOAD: bad |= !parse_int(a, PAYLOAD_HDR, 65536 + PAYLOAD_HDR - 1, &v); cfg.payload = (int)v; break;
        case O_WINDOW: bad |= !parse_int(a, 1, 60000, &v); cfg.window = (int)v; break;
        case O_INFLIGHT: bad |= !parse_int(a, 1, 60000, &v); cfg.inflight = (int)v; break;
        case O_RATE: bad |= !parse_double(a, 1, 1e6, &cfg.rate); break;
        case O_CONNECTIONS: bad |= !parse_int(a, 1, 1000000, &v); cfg.connections = (int)v; break;
        case O_CONCURRENCY: bad |= !parse_int(a, 1, 100000, &v); cfg.concurrency = (int)v; break;
        case O_SETTLE: bad |= !parse_double(a, 0, 3600, &cfg.settle); break;
        case O_PID: {
            long pids[MAX_PIDS];
            cfg.nbroker_pids = parse_list(a, 1, 1L << 30, pids, MAX_PIDS);
            bad |= cfg.nbroker_pids <= 0;
            for (int i = 0; i < cfg.nbroker_pids; i++)
                cfg.broker_pids[i] = pids[i];
            cfg.broker_pid = cfg.nbroker_pids > 0 ? pids[0] : 0;
            break;
        }
        case O_SUB_PORTS:
        case O_PUB_PORTS: {
            long ports[MAX_PORTS];
            int n = parse_list(a, 1, 65535, ports, MAX_PORTS);
            bad |= n <= 0;
            int *out = opt == O_SUB_PORTS ? cfg.sub_ports : cfg.pub_ports;
            for (int i = 0; i < n; i++)
                out[i] = (int)ports[i];
            *(opt == O_SUB_PORTS ? &cfg.nsub_ports : &cfg.npub_ports) = n > 0 ? n : 0;
            break;
        }
        case O_PREFIX:
            bad |= strlen(a) >= sizeof cfg.topic_prefix || !*a;
            snprintf(cfg.topic_prefix, sizeof cfg.topic_prefix, "%s", a);
            break;
        case O_CTIMEOUT: bad |= !parse_double(a, 0.1, 3600, &cfg.connect_timeout); break;
        case O_LTIMEOUT: bad |= !parse_double(a, 0.01, 3600, &cfg.loss_timeout); break;
        case O_KEEPALIVE: bad |= !parse_int(a, 0, 65535, &v); cfg.keepalive = (int)v; break;
        case O_PERSISTENT: cfg.persistent = true; break;
        case O_MIN_BATCH: bad |= !parse_int(a, 1, 60000, &v); cfg.min_batch = (int)v; break;
        case O_PER_WRITE: bad |= !parse_int(a, 0, 60000, &v); cfg.per_write = (int)v; break;
        case O_SUB_BATCH: bad |= !parse_int(a, 1, 1000, &v); cfg.sub_batch = (int)v; break;
        case O_STUCK: bad |= !parse_int(a, 0, 1000, &v); cfg.stuck = (int)v; break;
        case O_STORM: cfg.storm = true; break;
        case O_STORM_CONC: bad |= !parse_int(a, 1, 1000000, &v); cfg.storm_concurrency = (int)v; break;
        case O_WILDCARD: cfg.wildcard = true; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: bad = true; break;
        }
        if (bad) {
            if (opt != '?')
                fprintf(stderr, "loadgen: bad value for option: %s\n", a ? a : "");
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc || cfg.port == 0) {
        fprintf(stderr, "loadgen: %s\n", optind != argc ? "unexpected argument" : "--port is required");
        usage(stderr);
        return EXIT_USAGE;
    }
    /* Scenario defaults and shapes. */
    switch (cfg.scenario) {
    case SC_FANIN:
        if (cfg.publishers < 0) cfg.publishers = 10;
        cfg.subscribers = 1;
        cfg.qos = 0;
        break;
    case SC_FANOUT:
        cfg.publishers = 1;
        if (cfg.subscribers < 0) cfg.subscribers = 100;
        cfg.qos = 0;
        break;
    case SC_PAIRS:
        if (cfg.publishers < 0) cfg.publishers = 10;
        cfg.subscribers = cfg.publishers;
        if (cfg.qos < 0) cfg.qos = 1;
        break;
    case SC_LATENCY:
        cfg.publishers = cfg.subscribers = 1;
        cfg.qos = 0;
        break;
    case SC_IDLE:
        cfg.publishers = cfg.subscribers = 0;
        cfg.qos = 0;
        break;
    case SC_FAIRNESS:
        cfg.publishers = 2;
        cfg.subscribers = 2 + cfg.stuck;
        cfg.qos = 0;
        break;
    }
    if (!cfg.topic_prefix[0])
        snprintf(cfg.topic_prefix, sizeof cfg.topic_prefix, "lg/%d", (int)getpid());

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
    if (inet_pton(AF_INET, cfg.host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address: %s\n", cfg.host);
        return EXIT_USAGE;
    }
    if (cfg.nsub_ports == 0) {
        cfg.sub_ports[0] = cfg.port;
        cfg.nsub_ports = 1;
    }
    if (cfg.npub_ports == 0) {
        cfg.pub_ports[0] = cfg.port;
        cfg.npub_ports = 1;
    }
    for (int i = 0; i < cfg.nsub_ports; i++) {
        sub_addrs[i] = addr;
        sub_addrs[i].sin_port = htons((uint16_t)cfg.sub_ports[i]);
    }
    for (int i = 0; i < cfg.npub_ports; i++) {
        pub_addrs[i] = addr;
        pub_addrs[i].sin_port = htons((uint16_t)cfg.pub_ports[i]);
    }

    /* Thousands of sockets: take the whole hard limit of open files. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    /* Whatever happens (a broker that stops answering), end by ourselves. */
    signal(SIGALRM, watchdog);
    double budget = cfg.connect_timeout * (cfg.storm ? 2 : 1) + cfg.warmup + cfg.duration +
                    cfg.settle + 15;
    alarm((unsigned)budget);

    memset(G.filler, 'x', sizeof G.filler);
    G.timer_fd = -1;
    G.rss_before_kib = G.rss_after_kib = -1;
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0) {
        fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
        return EXIT_RUN_FAILED;
    }
    if (cfg.scenario == SC_IDLE)
        run_idle(&addr);
    else
        run_traffic();
    disconnect_all();
    report();
    return G.failed || G.protocol_errors ? EXIT_RUN_FAILED : EXIT_OK;
}
