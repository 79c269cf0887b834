/*
 * store_pg_sql.c — PostgreSQL on one connection of the store: a connect bounded by the
 * store's timeout (PQconnectStartParams/PQconnectPoll, TCP keepalives on); every
 * statement sent with libpq's async API and waited for with poll() up to a deadline, so
 * that no store thread blocks forever on a database that stopped answering; the
 * statement cache (prepared lazily, named per connection, cached by SQL pointer; a
 * reconnect prepares them again); sql.h's PostgreSQL half; store_pg.h's helpers.
 *
 * Threads and locks: a connection is used by one thread at a time (store_pg_internal.h),
 * so nothing here locks; `available` is written with atomics.
 */
#include "common/store_pg_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"

/* Type OIDs of the parameters (pg_type.h is a server header). */
enum { YW__INT8OID = 20, YW__TEXTOID = 25, YW__FLOAT8OID = 701 };

/* ---- store_pg.h: the pure helpers ----------------------------------------------------- */

int yw_pg_translate(const char *sql, char *out, size_t outlen, int *nparams)
{
    size_t n = strlen(sql);
    if (outlen < n + 1) {
        return -ENOSPC;
    }
    memcpy(out, sql, n + 1);
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = out[i];
        if (ch == '\'' || ch == '"') {
            /* A doubled quote inside is two quoted runs back to back: same result. */
            size_t j = i + 1;
            while (j < n && out[j] != ch) {
                j++;
            }
            i = j;
        } else if (ch == '-' && out[i + 1] == '-') {
            while (i < n && out[i] != '\n') {
                i++;
            }
        } else if (ch == '/' && out[i + 1] == '*') {
            char *end = strstr(out + i + 2, "*/");
            i = end != NULL ? (size_t)(end - out) + 1 : n;
        } else if (ch == '?' && out[i + 1] >= '0' && out[i + 1] <= '9') {
            long v = 0;
            size_t j = i + 1;
            while (j < n && out[j] >= '0' && out[j] <= '9' && v <= 65535) {
                v = v * 10 + (out[j] - '0');
                j++;
            }
            if (v < 1 || v > 65535) {
                return -EINVAL;
            }
            out[i] = '$';
            if (v > max) {
                max = (int)v;
            }
            i = j - 1;
        }
    }
    *nparams = max;
    return 0;
}

grpc_status_code yw_pg_sqlstate_status(const char *s)
{
    if (s == NULL || strlen(s) != 5) {
        return GRPC_STATUS_UNAVAILABLE; /* libpq's own: the connection is gone */
    }
    if (strncmp(s, "23", 2) == 0) {
        return GRPC_STATUS_ALREADY_EXISTS;
    }
    if (strncmp(s, "53", 2) == 0) {
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0 || strcmp(s, "25006") == 0 || strcmp(s, "40001") == 0 ||
        strcmp(s, "40P01") == 0) {
        return GRPC_STATUS_UNAVAILABLE;
    }
    return GRPC_STATUS_INTERNAL;
}

void yw_pg_redact_uri(const char *uri, char *out, size_t outlen)
{
    if (outlen == 0) {
        return;
    }
    size_t o = 0;
#define YW__PUT(ch)                                                                                \
    do {                                                                                           \
        if (o + 1 < outlen) {                                                                      \
            out[o++] = (ch);                                                                       \
        }                                                                                          \
    } while (0)
    const char *p = uri != NULL ? uri : "";
    const char *scheme = strstr(p, "://");
    const char *userinfo_end = NULL;
    const char *pw = NULL;
    if (scheme != NULL) {
        const char *auth = scheme + 3;
        size_t alen = strcspn(auth, "/?");
        for (const char *q = auth + alen; q > auth; q--) {
            if (q[-1] == '@') {
                userinfo_end = q - 1;
                break;
            }
        }
        if (userinfo_end != NULL) {
            pw = memchr(auth, ':', (size_t)(userinfo_end - auth));
        }
    }
    while (*p != '\0') {
        if (pw != NULL && p == pw) {
            YW__PUT(':');
            for (const char *s = "***"; *s; s++) {
                YW__PUT(*s);
            }
            p = userinfo_end;
            continue;
        }
        /* password=... in a URI's query or a conninfo string */
        if (strncmp(p, "password", 8) == 0 &&
            (p == uri || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ' || p[-1] == '\t')) {
            const char *eq = p + 8;
            while (*eq == ' ') {
                eq++;
            }
            if (*eq == '=') {
                for (const char *s = "password=***"; *s; s++) {
                    YW__PUT(*s);
                }
                const char *v = eq + 1;
                while (*v == ' ') {
                    v++;
                }
                if (*v == '\'') {
                    v++;
                    while (*v != '\0' && *v != '\'') {
                        v += (*v == '\\' && v[1] != '\0') ? 2 : 1;
                    }
                    if (*v == '\'') {
                        v++;
                    }
                } else {
                    while (*v != '\0' && *v != '&' && *v != ' ' && *v != '\t') {
                        v++;
                    }
                }
                p = v;
                continue;
            }
        }
        YW__PUT(*p);
        p++;
    }
#undef YW__PUT
    out[o] = '\0';
}

/* ---- one connection --------------------------------------------------------------- */

void yw__pg_set_available(yw__pg_t *pg, int available)
{
    if (pg != NULL) {
        __atomic_store_n(&pg->available, available, __ATOMIC_RELEASE);
    }
}

void yw__pg_conn_init(yw__pg_conn_t *c, yw__pg_t *pg, const char *uri, int timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->base.backend = YW_SQL_POSTGRES;
    c->pg = pg;
    c->uri = uri;
    c->timeout_ms = timeout_ms;
}

static uint64_t yw__deadline(int timeout_ms)
{
    return uv_hrtime() + (uint64_t)timeout_ms * 1000000u;
}

/**
 * Waits for `events` on `fd` until `deadline` (uv_hrtime). Returns the events seen, 0 on
 * timeout, or a negative errno.
 */
static int yw__poll(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = uv_hrtime();
        if (now >= deadline) {
            return 0;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int ms = (int)((deadline - now + 999999) / 1000000);
        int r = poll(&pfd, 1, ms);
        if (r > 0) {
            return pfd.revents != 0 ? pfd.revents : events;
        }
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
    }
}

/** libpq's message on one line: its newlines and tabs made spaces, none at the end. */
static void yw__copy_msg(char *dst, size_t len, const char *msg)
{
    yw_errmsg_printf(dst, len, "%s", msg != NULL && msg[0] != '\0' ? msg : "unknown error");
    size_t n = strlen(dst);
    while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == ' ')) {
        dst[--n] = '\0';
    }
    char *w = dst;
    for (const char *r = dst; *r != '\0'; r++) {
        if (*r == '\n' || *r == '\t') {
            if (w > dst && w[-1] != ' ') {
                *w++ = ' ';
            }
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static void yw__pg_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int yw__pg_connect(yw__pg_conn_t *c)
{
    yw__pg_disconnect(c);
    /* Ours first: the URI, expanded in place of dbname, overrides them. */
    static const char *const keys[] = {"keepalives",
                                       "keepalives_idle",
                                       "keepalives_interval",
                                       "keepalives_count",
                                       "options",
                                       "dbname",
                                       NULL};
    const char *vals[] = {"1", "10", "5", "3", c->options != NULL ? c->options : "", c->uri, NULL};
    PGconn *pg = PQconnectStartParams(keys, vals, 1);
    if (pg == NULL) {
        yw_errmsg_printf(c->fail_msg, sizeof c->fail_msg, "out of memory");
        c->fail_ns = uv_hrtime();
        return -1;
    }
    uint64_t deadline = yw__deadline(c->timeout_ms);
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (PQstatus(pg) != CONNECTION_BAD && ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED) {
        short ev = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        int r = yw__poll(PQsocket(pg), ev, deadline);
        if (r == 0) {
            yw_errmsg_printf(c->fail_msg, sizeof c->fail_msg,
                             "PostgreSQL did not answer within %d ms", c->timeout_ms);
            PQfinish(pg);
            c->fail_ns = uv_hrtime();
            return -1;
        }
        ps = PQconnectPoll(pg);
    }
    if (PQstatus(pg) != CONNECTION_OK || PQsetnonblocking(pg, 1) != 0) {
        yw__copy_msg(c->fail_msg, sizeof c->fail_msg, PQerrorMessage(pg));
        PQfinish(pg);
        c->fail_ns = uv_hrtime();
        return -1;
    }
    /* NOTICEs ("already exists, skipping") are not errors: keep them off stderr. */
    (void)PQsetNoticeProcessor(pg, yw__pg_notice, NULL);
    c->conn = pg;
    c->gen++;
    c->broken = false;
    c->fail_ns = 0;
    return 0;
}

void yw__pg_disconnect(yw__pg_conn_t *c)
{
    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
}

static void yw__pg_sql_free(yw__pg_sql_t *st)
{
    PQclear(st->res);
    free(st->text);
    free(st->values);
    free(st->types);
    free(st->bufs);
    free(st);
}

void yw__pg_conn_close(yw__pg_conn_t *c)
{
    yw__pg_disconnect(c);
    for (size_t i = 0; i < c->base.cap; i++) {
        if (c->base.slots[i].sql_st != NULL) {
            yw__pg_sql_free((yw__pg_sql_t *)c->base.slots[i].sql_st);
        }
    }
    free(c->base.slots);
    c->base.slots = NULL;
    c->base.cap = 0;
    c->base.count = 0;
}

/** The connection failed under us (lost, or no answer in time): close it, say so. */
static void yw__pg_lost(yw__pg_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void yw__pg_lost(yw__pg_conn_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    yw_errmsg_vprintf(c->base.sql_msg, sizeof c->base.sql_msg, fmt, ap);
    va_end(ap);
    c->base.sql_rc = GRPC_STATUS_UNAVAILABLE;
    yw__pg_disconnect(c);
    c->broken = true;
    c->timed_out = false;
    yw__pg_set_available(c->pg, 0);
}

/** The error of a failed result onto the connection. */
static void yw__pg_result_error(yw__pg_conn_t *c, const PGresult *res)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (primary != NULL) {
        yw__copy_msg(c->base.sql_msg, sizeof c->base.sql_msg, primary);
    } else {
        yw__copy_msg(c->base.sql_msg, sizeof c->base.sql_msg, PQresultErrorMessage(res));
    }
    c->base.sql_rc = yw_pg_sqlstate_status(state);
}

/**
 * After a send: flushes, then waits for every result up to `deadline`. Returns 0 with the
 * first failed result if any, else the last one, in *out; -1 when the connection was
 * lost or did not answer in time (the error on the connection).
 */
static int yw__pg_collect(yw__pg_conn_t *c, int timeout_ms, PGresult **out)
{
    uint64_t deadline = yw__deadline(timeout_ms);
    PGresult *keep = NULL;
    int f;
    while ((f = PQflush(c->conn)) > 0) {
        int r = yw__poll(PQsocket(c->conn), POLLOUT | POLLIN, deadline);
        if (r == 0) {
            goto timeout;
        }
        if ((r & POLLIN) && !PQconsumeInput(c->conn)) {
            goto lost;
        }
    }
    if (f < 0) {
        goto lost;
    }
    for (;;) {
        while (PQisBusy(c->conn)) {
            int r = yw__poll(PQsocket(c->conn), POLLIN, deadline);
            if (r == 0) {
                goto timeout;
            }
            if (!PQconsumeInput(c->conn)) {
                goto lost;
            }
        }
        PGresult *res = PQgetResult(c->conn);
        if (res == NULL) {
            break;
        }
        ExecStatusType s = PQresultStatus(res);
        bool failed = s == PGRES_FATAL_ERROR || s == PGRES_BAD_RESPONSE;
        if (keep != NULL && !failed) {
            PQclear(res); /* keep the first failure */
            continue;
        }
        if (keep != NULL && (PQresultStatus(keep) == PGRES_FATAL_ERROR ||
                             PQresultStatus(keep) == PGRES_BAD_RESPONSE)) {
            PQclear(res);
            continue;
        }
        PQclear(keep);
        keep = res;
    }
    *out = keep;
    return 0;
timeout:
    PQclear(keep);
    yw__pg_lost(c, "store: PostgreSQL did not answer within %d ms", timeout_ms);
    c->timed_out = true;
    return -1;
lost:
    PQclear(keep);
    {
        char msg[200];
        yw__copy_msg(msg, sizeof msg, PQerrorMessage(c->conn));
        yw__pg_lost(c, "store: PostgreSQL connection lost: %s", msg);
    }
    return -1;
}

/**
 * Checks a collected result: 0 when it succeeded, else -1 with its error on the
 * connection (and the connection closed when it is gone: a FATAL error ends it).
 */
static int yw__pg_check(yw__pg_conn_t *c, PGresult *res)
{
    ExecStatusType s = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY) {
        return 0;
    }
    if (res != NULL) {
        yw__pg_result_error(c, res);
    } else {
        yw__copy_msg(c->base.sql_msg, sizeof c->base.sql_msg, PQerrorMessage(c->conn));
        c->base.sql_rc = GRPC_STATUS_INTERNAL;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        char msg[sizeof c->base.sql_msg];
        memcpy(msg, c->base.sql_msg, sizeof msg);
        yw__pg_lost(c, "store: PostgreSQL connection lost: %s", msg);
    }
    return -1;
}

/** Fails when the connection cannot take a statement (gone during this transaction). */
static int yw__pg_usable(yw__pg_conn_t *c)
{
    if (c->conn != NULL && !c->broken) {
        return 0;
    }
    if (c->base.sql_rc == 0) {
        c->base.sql_rc = GRPC_STATUS_UNAVAILABLE;
        yw_errmsg_printf(c->base.sql_msg, sizeof c->base.sql_msg,
                         "store: the connection to PostgreSQL was lost in this transaction");
    }
    return -1;
}

/** The send failed: the connection is gone, or libpq refused (a bug of ours). */
static int yw__pg_send_failed(yw__pg_conn_t *c)
{
    char msg[200];
    yw__copy_msg(msg, sizeof msg, PQerrorMessage(c->conn));
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        yw__pg_lost(c, "store: PostgreSQL connection lost: %s", msg);
    } else {
        c->base.sql_rc = GRPC_STATUS_INTERNAL;
        yw_errmsg_printf(c->base.sql_msg, sizeof c->base.sql_msg, "%s", msg);
    }
    return -1;
}

int yw__pg_query(yw__pg_conn_t *c, const char *sql, int n, const char *const *values,
                 int timeout_ms, PGresult **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (yw__pg_usable(c) != 0) {
        return -1;
    }
    int ok = n == 0 ? PQsendQuery(c->conn, sql)
                    : PQsendQueryParams(c->conn, sql, n, NULL, values, NULL, NULL, 0);
    if (!ok) {
        return yw__pg_send_failed(c);
    }
    PGresult *res = NULL;
    if (yw__pg_collect(c, timeout_ms, &res) != 0) {
        return -1;
    }
    if (yw__pg_check(c, res) != 0) {
        PQclear(res);
        return -1;
    }
    if (out != NULL) {
        *out = res;
    } else {
        PQclear(res);
    }
    return 0;
}

/* ---- sql.h on PostgreSQL ------------------------------------------------------------ */

static void yw__pg_sql_reset(yw__pg_sql_t *st)
{
    PQclear(st->res);
    st->res = NULL;
    st->executed = false;
    st->row = -1;
    st->nrows = 0;
    st->changes = 0;
    st->bind_error = 0;
    for (int i = 0; i < st->nparams; i++) {
        st->values[i] = NULL;
        st->types[i] = 0;
    }
}

yw_sql_t *yw__pg_sql_prepare(yw_store_conn_t *conn, const char *sql, char *msg, size_t len)
{
    yw__pg_conn_t *c = (yw__pg_conn_t *)conn;
    yw__stmt_slot_t *slot = yw__stmt_find(conn, sql);
    if (slot != NULL) {
        yw__pg_sql_t *st = (yw__pg_sql_t *)slot->sql_st;
        yw__pg_sql_reset(st);
        return &st->base;
    }
    size_t n = strlen(sql);
    yw__pg_sql_t *st = calloc(1, sizeof *st);
    char *text = malloc(n + 1);
    int nparams = 0;
    int e = text != NULL ? yw_pg_translate(sql, text, n + 1, &nparams) : -ENOMEM;
    if (st == NULL || e != 0) {
        free(st);
        free(text);
        yw__sql_set_error(conn, GRPC_STATUS_INTERNAL, "%s",
                          e == -EINVAL ? "parameters are numbered ?1 to ?65535" : "out of memory");
        yw_errmsg_printf(msg, len, "prepare: %s", conn->sql_msg);
        return NULL;
    }
    st->base.backend = YW_SQL_POSTGRES;
    st->base.conn = conn;
    st->text = text;
    st->nparams = nparams;
    size_t np = nparams > 0 ? (size_t)nparams : 1;
    st->values = calloc(np, sizeof *st->values);
    st->types = calloc(np, sizeof *st->types);
    st->bufs = calloc(np, sizeof *st->bufs);
    slot = st->values && st->types && st->bufs ? yw__stmt_insert(conn, sql) : NULL;
    if (slot == NULL) {
        yw__pg_sql_free(st);
        yw__sql_set_error(conn, GRPC_STATUS_INTERNAL, "out of memory");
        yw_errmsg_printf(msg, len, "prepare: %s", conn->sql_msg);
        return NULL;
    }
    snprintf(st->name, sizeof st->name, "s%u", ++c->n_names);
    slot->sql_st = &st->base;
    yw__pg_sql_reset(st);
    return &st->base;
}

/** The parameter `i` (1-based), or NULL (the first such bind is kept for the step). */
static int yw__pg_param(yw__pg_sql_t *st, int i)
{
    if (i < 1 || i > st->nparams) {
        if (st->bind_error == 0) {
            st->bind_error = i;
        }
        return -1;
    }
    return i - 1;
}

void yw__pg_sql_bind_i64(yw_sql_t *base, int i, int64_t v)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    int k = yw__pg_param(st, i);
    if (k >= 0) {
        snprintf(st->bufs[k].buf, sizeof st->bufs[k].buf, "%" PRId64, v);
        st->values[k] = st->bufs[k].buf;
        st->types[k] = YW__INT8OID;
    }
}

void yw__pg_sql_bind_f64(yw_sql_t *base, int i, double v)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    int k = yw__pg_param(st, i);
    if (k >= 0) {
        /* 17 significant digits: the same double comes back. */
        snprintf(st->bufs[k].buf, sizeof st->bufs[k].buf, "%.17g", v);
        st->values[k] = st->bufs[k].buf;
        st->types[k] = YW__FLOAT8OID;
    }
}

void yw__pg_sql_bind_text(yw_sql_t *base, int i, const char *s)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    int k = yw__pg_param(st, i);
    if (k >= 0) {
        st->values[k] = s != NULL ? s : "";
        st->types[k] = YW__TEXTOID;
    }
}

void yw__pg_sql_bind_null(yw_sql_t *base, int i)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    int k = yw__pg_param(st, i);
    if (k >= 0) {
        st->values[k] = NULL;
        st->types[k] = 0;
    }
}

/** Prepares (once per connection) and runs the statement; its rows in st->res. */
static int yw__pg_sql_execute(yw__pg_sql_t *st)
{
    yw__pg_conn_t *c = (yw__pg_conn_t *)st->base.conn;
    if (st->bind_error != 0) {
        yw__sql_set_error(&c->base, GRPC_STATUS_INTERNAL,
                          "bind ?%d: the statement has %d parameters", st->bind_error, st->nparams);
        return -1;
    }
    if (yw__pg_usable(c) != 0) {
        return -1;
    }
    PGresult *res = NULL;
    if (st->prepared_gen != c->gen) {
        if (!PQsendPrepare(c->conn, st->name, st->text, st->nparams, st->types)) {
            return yw__pg_send_failed(c);
        }
        if (yw__pg_collect(c, c->timeout_ms, &res) != 0) {
            return -1;
        }
        if (yw__pg_check(c, res) != 0) {
            PQclear(res);
            return -1;
        }
        PQclear(res);
        st->prepared_gen = c->gen;
    }
    if (!PQsendQueryPrepared(c->conn, st->name, st->nparams, st->values, NULL, NULL, 0)) {
        return yw__pg_send_failed(c);
    }
    if (yw__pg_collect(c, c->timeout_ms, &res) != 0) {
        return -1;
    }
    if (yw__pg_check(c, res) != 0) {
        PQclear(res);
        return -1;
    }
    st->res = res;
    st->nrows = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
    const char *tuples = PQcmdTuples(res);
    st->changes = tuples != NULL && tuples[0] != '\0' ? strtoll(tuples, NULL, 10) : 0;
    return 0;
}

int yw__pg_sql_step(yw_sql_t *base)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    if (!st->executed) {
        st->executed = true;
        st->row = -1;
        if (yw__pg_sql_execute(st) != 0) {
            st->nrows = 0;
            return YW_SQL_ERROR;
        }
    }
    if (st->row < st->nrows) {
        st->row++;
    }
    return st->row < st->nrows ? YW_SQL_ROW : YW_SQL_DONE;
}

/** The text of column i of the current row, or NULL (SQL NULL, or no such cell). */
static const char *yw__pg_cell(yw__pg_sql_t *st, int i, size_t *len)
{
    if (st->res == NULL || st->row < 0 || st->row >= st->nrows || i < 0 ||
        i >= PQnfields(st->res) || PQgetisnull(st->res, st->row, i)) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = (size_t)PQgetlength(st->res, st->row, i);
    }
    return PQgetvalue(st->res, st->row, i);
}

int64_t yw__pg_sql_column_i64(yw_sql_t *base, int i)
{
    const char *v = yw__pg_cell((yw__pg_sql_t *)base, i, NULL);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

double yw__pg_sql_column_f64(yw_sql_t *base, int i)
{
    const char *v = yw__pg_cell((yw__pg_sql_t *)base, i, NULL);
    return v != NULL ? strtod(v, NULL) : 0.0;
}

const char *yw__pg_sql_column_text(yw_sql_t *base, int i, size_t *len)
{
    const char *v = yw__pg_cell((yw__pg_sql_t *)base, i, len);
    return v != NULL ? v : "";
}

int yw__pg_sql_column_is_null(yw_sql_t *base, int i)
{
    yw__pg_sql_t *st = (yw__pg_sql_t *)base;
    if (st->res == NULL || st->row < 0 || st->row >= st->nrows || i < 0 ||
        i >= PQnfields(st->res)) {
        return 1;
    }
    return PQgetisnull(st->res, st->row, i);
}

int64_t yw__pg_sql_changes(yw_sql_t *base)
{
    return ((yw__pg_sql_t *)base)->changes;
}

void yw__pg_sql_done(yw_sql_t *base)
{
    yw__pg_sql_reset((yw__pg_sql_t *)base);
}
