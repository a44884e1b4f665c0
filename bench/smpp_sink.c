/*
 * smpp_sink.c - a fast SMPP 3.4 SMSC that accepts everything, for benchmarks.
 *
 * bench/smpp_bench.py puts smsd and Kannel in front of this sink, one after
 * the other, and counts what it acknowledges. No SMSC we can install is fast
 * enough (Kannel's drive_smpp stalls near 520 msg/s) and a sink in Python
 * would eat the CPU we are measuring, so this is one small single-threaded
 * epoll loop in C11 with nothing beyond libc (and Linux):
 *
 *     gcc -O2 -o smpp_sink bench/smpp_sink.c
 *     smpp_sink --port N [--receipts] [--report-delay-ms M] [--stats-file PATH]
 *               [--delayed-ack]
 *
 * It listens on 127.0.0.1:N (0: any free port; the port is printed on
 * stdout as "smpp_sink listening on 127.0.0.1:PORT" once it listens) and,
 * on any number of connections:
 *   bind_transmitter/receiver/transceiver -> the _resp, status 0, system_id "sink"
 *     (any system_id and password are accepted);
 *   submit_sm, data_sm -> the _resp with a new message id (a decimal counter),
 *     or ESME_RINVBNDSTS on a connection without a transmitter-capable bind;
 *   enquire_link -> enquire_link_resp; unbind -> unbind_resp, then close;
 *   deliver_sm_resp -> counted (ok / error status); other responses ignored;
 *   anything else -> generic_nack ESME_RINVCMDID.
 * With --receipts, every submit_sm or data_sm whose registered_delivery asks
 * for an SMSC receipt (bit 0) gets, --report-delay-ms later (default 50), a
 * deliver_sm with esm_class 0x04, the Appendix B text
 *   id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:
 * and the receipted_message_id (0x001E) and message_state (0x0427) = 2 TLVs.
 * It goes to the submitting connection if that is bound as receiver or
 * transceiver, else to a receiver bind with the same system_id; if there is
 * none yet the receipt waits (the queue is FIFO, delays are all equal).
 *
 * Counts (totals and per second since start) are written as JSON to the
 * stats file, atomically (write + rename), on SIGUSR1 and at exit (SIGTERM,
 * SIGINT); a summary line goes to stdout at exit. Times in the JSON are
 * CLOCK_REALTIME seconds, comparable with Python's time.time().
 *
 * Framing: reads are buffered per connection (partial PDUs, many PDUs per
 * read); a command_length outside 16..65536 closes the connection. Writes
 * are buffered and flushed once per loop turn; a peer that stops reading
 * is not read from until its output drains.
 *
 * TCP: the sink acknowledges every segment at once (TCP_QUICKACK, set again
 * after each read) unless --delayed-ack. A deliver_sm_resp gets no answer,
 * so with Linux's delayed ACK a client that does not set TCP_NODELAY
 * (Kannel) holds its next submit_sm back under Nagle's rule until the ACK
 * timer fires: Kannel then sends about 400 msg/s instead of thousands. That
 * measures two TCP timers, not the gateway, so the sink does not wait.
 */

#define _GNU_SOURCE
#define RESP 0x80000000u         /* bit 31: a response */
#define GENERIC_NACK 0x80000000u
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    BIND_RECEIVER = 0x01, BIND_TRANSMITTER = 0x02, SUBMIT_SM = 0x04, DELIVER_SM = 0x05,
    UNBIND = 0x06, BIND_TRANSCEIVER = 0x09, ENQUIRE_LINK = 0x15, DATA_SM = 0x103,
    ESME_RINVCMDID = 0x03, ESME_RINVBNDSTS = 0x04,
    MAX_PDU = 65536, MAX_OUT = 1 << 20, MAX_SECONDS = 86400,
};

typedef struct { char *p; size_t len, cap; } Buf;

typedef struct {
    int fd, open, closing, bind; /* bind: 0 or the bind command id */
    unsigned gen;                /* tells apart connections that reuse an fd */
    uint32_t seq;                /* our own requests' sequence numbers */
    char system_id[17];
    Buf in, out;
    int dirty;
} Conn;

typedef struct {
    double due, submitted;
    int fd; unsigned gen;
    char system_id[17], id[24], src[22], dst[22];
    uint8_t src_ton, src_npi, dst_ton, dst_npi;
} Receipt;

typedef struct { uint32_t submits, sent, acked; } Second;

static Conn *conns;            /* indexed by fd */
static int nconns_cap, epfd;
static unsigned next_gen = 1;
static Receipt *rq;            /* receipt ring buffer */
static size_t rq_head, rq_len, rq_cap;
static int *dirty_list, ndirty;
static int receipts_on, report_delay_ms = 50, quickack = 1;
static const char *stats_path;
static double started, first_submit, last_submit, last_sent, last_ack;
static uint64_t msg_id, submits, data_sms, refused, receipts_sent, receipts_acked,
    receipts_nacked, connections, binds, bad_frames;
static Second *seconds; /* per second since start */
static int max_second = -1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static Second *this_second(double t)
{
    int s = (int)(t - started);
    if (s < 0) s = 0;
    if (s >= MAX_SECONDS) s = MAX_SECONDS - 1;
    if (s > max_second) max_second = s;
    return &seconds[s];
}

static void buf_reserve(Buf *b, size_t more)
{
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + more) cap *= 2;
    if (!(b->p = realloc(b->p, cap))) { perror("realloc"); exit(1); }
    b->cap = cap;
}

static void put(Buf *b, const void *p, size_t n) { buf_reserve(b, n); memcpy(b->p + b->len, p, n); b->len += n; }
static void put8(Buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(Buf *b, uint16_t v) { v = htons(v); put(b, &v, 2); }
static void put32(Buf *b, uint32_t v) { v = htonl(v); put(b, &v, 4); }
static void putstr(Buf *b, const char *s) { put(b, s, strlen(s) + 1); }
static uint32_t get32(const char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

/* Appends a PDU header with a length to patch in end_pdu(). */
static size_t begin_pdu(Buf *b, uint32_t id, uint32_t status, uint32_t seq)
{
    size_t at = b->len;
    put32(b, 0); put32(b, id); put32(b, status); put32(b, seq);
    return at;
}

static void end_pdu(Conn *c, size_t at)
{
    uint32_t len = htonl((uint32_t)(c->out.len - at));
    memcpy(c->out.p + at, &len, 4);
    if (!c->dirty) { c->dirty = 1; dirty_list[ndirty++] = c->fd; }
}

static void respond(Conn *c, uint32_t id, uint32_t status, uint32_t seq, const char *body)
{
    size_t at = begin_pdu(&c->out, id, status, seq);
    if (body) putstr(&c->out, body);
    end_pdu(c, at);
}

/* A C-string field of at most max bytes (with its NUL) at *p; NULL if malformed. */
static const char *cstr(const char **p, const char *end, size_t max)
{
    const char *s = *p, *nul = memchr(s, 0, (size_t)(end - s));
    if (!nul || (size_t)(nul - s) >= max) return NULL;
    *p = nul + 1;
    return s;
}

static void copy_field(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

static void update_events(Conn *c)
{
    struct epoll_event ev = {.data.fd = c->fd};
    if (c->out.len < MAX_OUT && !c->closing) ev.events |= EPOLLIN;
    if (c->out.len) ev.events |= EPOLLOUT;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void close_conn(Conn *c)
{
    if (!c->open) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->open = 0;
    c->in.len = c->out.len = 0;
}

/* submit_sm or data_sm: answer with a new id, queue a receipt if asked for one. */
static void submit(Conn *c, uint32_t cmd, uint32_t seq, const char *body, const char *end)
{
    if (c->bind != BIND_TRANSMITTER && c->bind != BIND_TRANSCEIVER) {
        refused++;
        respond(c, cmd | RESP, ESME_RINVBNDSTS, seq, "");
        return;
    }
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)++msg_id);
    respond(c, cmd | RESP, 0, seq, id);
    double t = now();
    if (!first_submit) first_submit = t;
    last_submit = t;
    this_second(t)->submits++;
    if (cmd == SUBMIT_SM) submits++; else data_sms++;
    if (!receipts_on) return;
    /* Both layouts start: service_type, src ton/npi/addr, dst ton/npi/addr, esm_class. */
    const char *p = body, *src, *dst;
    uint8_t st, sn, dt, dn, registered;
    if (!cstr(&p, end, 6) || end - p < 2) return;
    st = (uint8_t)p[0]; sn = (uint8_t)p[1]; p += 2;
    if (!(src = cstr(&p, end, 21)) || end - p < 2) return;
    dt = (uint8_t)p[0]; dn = (uint8_t)p[1]; p += 2;
    if (!(dst = cstr(&p, end, 21))) return;
    if (cmd == SUBMIT_SM) { /* esm_class, protocol_id, priority_flag, two times, registered_delivery */
        if (end - p < 3) return;
        p += 3;
        if (!cstr(&p, end, 17) || !cstr(&p, end, 17) || end - p < 1) return;
        registered = (uint8_t)p[0];
    } else { /* data_sm: esm_class, registered_delivery */
        if (end - p < 2) return;
        registered = (uint8_t)p[1];
    }
    if (!(registered & 1)) return;
    if (rq_len == rq_cap) { /* grow the ring, unrolled into the new space */
        size_t cap = rq_cap ? rq_cap * 2 : 4096;
        Receipt *n = malloc(cap * sizeof *n);
        if (!n) { perror("malloc"); exit(1); }
        for (size_t i = 0; i < rq_len; i++) n[i] = rq[(rq_head + i) % rq_cap];
        free(rq);
        rq = n; rq_cap = cap; rq_head = 0;
    }
    Receipt *r = &rq[(rq_head + rq_len++) % rq_cap];
    r->due = t + report_delay_ms / 1000.0;
    r->submitted = t;
    r->fd = c->fd; r->gen = c->gen;
    copy_field(r->system_id, sizeof r->system_id, c->system_id);
    copy_field(r->id, sizeof r->id, id);
    /* The receipt comes from the handset: addresses swapped. */
    copy_field(r->src, sizeof r->src, dst); r->src_ton = dt; r->src_npi = dn;
    copy_field(r->dst, sizeof r->dst, src); r->dst_ton = st; r->dst_npi = sn;
}

static void handle_pdu(Conn *c, const char *pdu, uint32_t len)
{
    uint32_t cmd = get32(pdu + 4), status = get32(pdu + 8), seq = get32(pdu + 12);
    const char *body = pdu + 16, *end = pdu + len;
    switch (cmd) {
    case BIND_RECEIVER: case BIND_TRANSMITTER: case BIND_TRANSCEIVER: {
        const char *p = body, *sid = cstr(&p, end, 17);
        copy_field(c->system_id, sizeof c->system_id, sid);
        c->bind = (int)cmd;
        binds++;
        respond(c, cmd | RESP, 0, seq, "sink");
        break;
    }
    case SUBMIT_SM: case DATA_SM:
        submit(c, cmd, seq, body, end);
        break;
    case ENQUIRE_LINK:
        respond(c, cmd | RESP, 0, seq, NULL);
        break;
    case UNBIND:
        respond(c, cmd | RESP, 0, seq, NULL);
        c->bind = 0;
        c->closing = 1;
        break;
    case DELIVER_SM | RESP: {
        double t = now();
        if (status == 0) receipts_acked++; else receipts_nacked++;
        this_second(t)->acked++;
        last_ack = t;
        break;
    }
    default:
        if (!(cmd & RESP)) respond(c, GENERIC_NACK, ESME_RINVCMDID, seq, NULL);
        break; /* generic_nack and other responses: ignored */
    }
}

static void on_readable(Conn *c)
{
    for (;;) {
        buf_reserve(&c->in, 65536);
        ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
        if (n == 0) { close_conn(c); return; }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) close_conn(c);
            break;
        }
        c->in.len += (size_t)n;
        if (quickack) /* Linux clears it: set it again after every read */
            setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
        if (c->in.len < c->in.cap) break; /* drained the socket */
    }
    size_t off = 0;
    while (c->in.len - off >= 4 && !c->closing) {
        uint32_t len = get32(c->in.p + off);
        if (len < 16 || len > MAX_PDU) {
            bad_frames++;
            fprintf(stderr, "smpp_sink: command_length %u on fd %d: closing\n", len, c->fd);
            close_conn(c);
            return;
        }
        if (c->in.len - off < len) break;
        handle_pdu(c, c->in.p + off, len);
        off += len;
    }
    memmove(c->in.p, c->in.p + off, c->in.len - off);
    c->in.len -= off;
}

static void flush(Conn *c)
{
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = write(c->fd, c->out.p + off, c->out.len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) { close_conn(c); return; }
            break;
        }
        off += (size_t)n;
    }
    memmove(c->out.p, c->out.p + off, c->out.len - off);
    c->out.len -= off;
    if (c->closing && !c->out.len) close_conn(c);
    else update_events(c);
}

static Conn *receiver_for(const Receipt *r)
{
    if (r->fd < nconns_cap) {
        Conn *c = &conns[r->fd];
        if (c->open && !c->closing && c->gen == r->gen &&
            (c->bind == BIND_RECEIVER || c->bind == BIND_TRANSCEIVER))
            return c;
    }
    static int next; /* round robin over the other receivers */
    for (int i = 0; i < nconns_cap; i++) {
        Conn *c = &conns[(next + i) % nconns_cap];
        if (c->open && !c->closing && (c->bind == BIND_RECEIVER || c->bind == BIND_TRANSCEIVER) &&
            strcmp(c->system_id, r->system_id) == 0) {
            next = (next + i + 1) % nconns_cap;
            return c;
        }
    }
    return NULL;
}

static void send_receipt(Conn *c, const Receipt *r)
{
    char sub[16], done[16], text[160];
    time_t ts = (time_t)r->submitted, td = time(NULL);
    struct tm tm;
    strftime(sub, sizeof sub, "%y%m%d%H%M", gmtime_r(&ts, &tm));
    strftime(done, sizeof done, "%y%m%d%H%M", gmtime_r(&td, &tm));
    int n = snprintf(text, sizeof text,
                     "id:%s sub:001 dlvrd:001 submit date:%s done date:%s stat:DELIVRD err:000 text:",
                     r->id, sub, done);
    Buf *b = &c->out;
    c->seq = c->seq >= 0x7fffffff ? 1 : c->seq + 1;
    size_t at = begin_pdu(b, DELIVER_SM, 0, c->seq);
    putstr(b, "");                                      /* service_type */
    put8(b, r->src_ton); put8(b, r->src_npi); putstr(b, r->src);
    put8(b, r->dst_ton); put8(b, r->dst_npi); putstr(b, r->dst);
    put8(b, 0x04);                                      /* esm_class: SMSC delivery receipt */
    put8(b, 0); put8(b, 0);                             /* protocol_id, priority_flag */
    putstr(b, ""); putstr(b, "");                       /* schedule_delivery_time, validity_period */
    put8(b, 0); put8(b, 0); put8(b, 0); put8(b, 0);     /* registered_delivery .. sm_default_msg_id */
    put8(b, (uint8_t)n); put(b, text, (size_t)n);       /* sm_length, short_message */
    put16(b, 0x001E); put16(b, (uint16_t)(strlen(r->id) + 1)); putstr(b, r->id);
    put16(b, 0x0427); put16(b, 1); put8(b, 2);          /* message_state DELIVERED */
    end_pdu(c, at);
    double t = now();
    receipts_sent++;
    this_second(t)->sent++;
    last_sent = t;
}

/* Sends the receipts that are due; the time until the next one in ms, or -1. */
static int send_due_receipts(void)
{
    double t = now();
    while (rq_len) {
        Receipt *r = &rq[rq_head];
        if (r->due > t) return (int)((r->due - t) * 1000) + 1;
        Conn *c = receiver_for(r);
        if (!c) return 100; /* nobody to take it yet: try again later */
        send_receipt(c, r);
        rq_head = (rq_head + 1) % rq_cap;
        rq_len--;
    }
    return -1;
}

static void write_stats(void)
{
    if (!stats_path) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f) { perror(tmp); return; }
    fprintf(f, "{\"started\": %.6f, \"written\": %.6f, \"connections\": %llu, \"binds\": %llu,"
               " \"submit_sm\": %llu, \"data_sm\": %llu, \"answered\": %llu, \"refused\": %llu,"
               " \"receipts_sent\": %llu, \"receipts_acked\": %llu, \"receipts_nacked\": %llu,"
               " \"receipts_waiting\": %zu, \"bad_frames\": %llu,"
               " \"first_submit\": %.6f, \"last_submit\": %.6f, \"last_receipt_sent\": %.6f,"
               " \"last_receipt_ack\": %.6f,\n \"per_second\": [",
            started, now(), (unsigned long long)connections, (unsigned long long)binds,
            (unsigned long long)submits, (unsigned long long)data_sms,
            (unsigned long long)(submits + data_sms), (unsigned long long)refused,
            (unsigned long long)receipts_sent, (unsigned long long)receipts_acked,
            (unsigned long long)receipts_nacked, rq_len, (unsigned long long)bad_frames,
            first_submit, last_submit, last_sent, last_ack);
    const char *sep = "";
    for (int s = 0; s <= max_second; s++) {
        Second *x = &seconds[s];
        if (!x->submits && !x->sent && !x->acked) continue;
        fprintf(f, "%s[%d, %u, %u, %u]", sep, s, x->submits, x->sent, x->acked);
        sep = ", ";
    }
    fprintf(f, "]}\n");
    if (fclose(f) != 0 || rename(tmp, stats_path) != 0) perror(stats_path);
}

static void usage(void)
{
    fprintf(stderr, "usage: smpp_sink --port N [--receipts] [--report-delay-ms M]"
                    " [--stats-file PATH] [--delayed-ack]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--receipts")) receipts_on = 1;
        else if (!strcmp(argv[i], "--report-delay-ms") && i + 1 < argc) report_delay_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stats-file") && i + 1 < argc) stats_path = argv[++i];
        else if (!strcmp(argv[i], "--delayed-ack")) quickack = 0;
        else usage();
    }
    if (port < 0 || port > 65535 || report_delay_ms < 0) usage();

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1); sigaddset(&mask, SIGTERM); sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (sfd < 0 || lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(lfd, 128) < 0 || getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("smpp_sink");
        return 1;
    }
    nconns_cap = 1024;
    conns = calloc((size_t)nconns_cap, sizeof *conns);
    dirty_list = calloc(2 * (size_t)nconns_cap, sizeof *dirty_list); /* a reused fd: twice */
    seconds = calloc(MAX_SECONDS, sizeof *seconds);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = sfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
    started = now();
    write_stats();
    printf("smpp_sink listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int running = 1, timeout = -1;
    struct epoll_event events[64];
    while (running) {
        int n = epoll_wait(epfd, events, 64, timeout);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); break; }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (cfd >= nconns_cap) { close(cfd); continue; }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    Conn *c = &conns[cfd];
                    free(c->in.p); free(c->out.p);
                    *c = (Conn){.fd = cfd, .open = 1, .gen = next_gen++};
                    connections++;
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
                }
            } else if (fd == sfd) {
                struct signalfd_siginfo si;
                while (read(sfd, &si, sizeof si) == sizeof si) {
                    if (si.ssi_signo == SIGUSR1) write_stats();
                    else running = 0;
                }
            } else {
                Conn *c = &conns[fd];
                if (!c->open) continue;
                if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
                    close_conn(c);
                    continue;
                }
                if (events[i].events & EPOLLIN) on_readable(c);
                if (c->open && events[i].events & EPOLLOUT && !c->dirty) {
                    c->dirty = 1;
                    dirty_list[ndirty++] = fd;
                }
            }
        }
        timeout = receipts_on ? send_due_receipts() : -1;
        for (int i = 0; i < ndirty; i++) {
            Conn *c = &conns[dirty_list[i]];
            c->dirty = 0;
            if (c->open) flush(c);
        }
        ndirty = 0;
    }
    write_stats();
    double span = last_submit - first_submit;
    printf("smpp_sink: %llu answered (%.0f/s between first and last), %llu refused, %llu receipts sent,"
           " %llu acknowledged, %llu refused by the peer, %zu waiting; %llu connections, %llu binds\n",
           (unsigned long long)(submits + data_sms), span > 0 ? (submits + data_sms - 1) / span : 0.0,
           (unsigned long long)refused, (unsigned long long)receipts_sent,
           (unsigned long long)receipts_acked, (unsigned long long)receipts_nacked, rq_len,
           (unsigned long long)connections, (unsigned long long)binds);
    return 0;
}
