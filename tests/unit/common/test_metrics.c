/*
 * Unit tests of common/metrics.c: registration, the text format (exact output),
 * labels, histograms, process metrics, updates from several threads during scrapes,
 * and the libmicrohttpd endpoint over a real loopback socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/metrics.h"
#include "tests/unit/test.h"

static char *render(yw_metrics_t *m)
{
    char *text = NULL;
    size_t len = 0;
    YW_CHECK_INT(yw_metrics_render(m, &text, &len), ==, 0);
    YW_CHECK_INT(strlen(text), ==, len);
    return text;
}

static yw_metrics_t *make(unsigned flags)
{
    yw_metrics_t *m = NULL;
    YW_CHECK_INT(yw_metrics_create(flags, &m), ==, 0);
    return m;
}

YW_TEST(empty_registry_renders_nothing)
{
    yw_metrics_t *m = make(0);
    char *t = render(m);
    YW_CHECK_STR(t, "");
    free(t);
    yw_metrics_destroy(m);
}

YW_TEST(counter_and_gauge_render_exactly)
{
    yw_metrics_t *m = make(0);
    yw_metric_t *c = NULL, *g = NULL;
    YW_CHECK_INT(yw_metrics_counter(m, "yw_test_total", "Things counted.", NULL, &c), ==, 0);
    YW_CHECK_INT(yw_metrics_gauge(m, "yw_test_level", NULL, "", &g), ==, 0);
    yw_metric_inc(c);
    yw_metric_add(c, 41);
    yw_metric_gauge_add(g, 5);
    yw_metric_gauge_add(g, -8);
    char *t = render(m);
    YW_CHECK_STR(t, "# HELP yw_test_total Things counted.\n"
                    "# TYPE yw_test_total counter\n"
                    "yw_test_total 42\n"
                    "# TYPE yw_test_level gauge\n"
                    "yw_test_level -3\n");
    free(t);
    YW_CHECK_INT(yw_metric_value(c), ==, 42);
    YW_CHECK_INT(yw_metric_value(g), ==, -3);
    yw_metric_gauge_set(g, 7);
    YW_CHECK_INT(yw_metric_value(g), ==, 7);
    yw_metrics_destroy(m);
}

YW_TEST(labels_are_sorted_escaped_and_found_in_any_order)
{
    yw_metrics_t *m = make(0);
    yw_metric_t *a = NULL, *b = NULL, *c = NULL;
    YW_CHECK_INT(yw_metrics_counter(m, "yw_events_total", "Help with \\ and\nnewline.",
                                    "result=ingested,kind=exposure", &a),
                 ==, 0);
    YW_CHECK_INT(yw_metrics_counter(m, "yw_events_total", "ignored: first help wins",
                                    "kind=exposure,result=ingested", &b),
                 ==, 0);
    YW_CHECK(a == b);
    YW_CHECK_INT(
        yw_metrics_counter(m, "yw_events_total", NULL, "kind=say \"hi\"\\now,result=x", &c), ==, 0);
    YW_CHECK(c != a);
    yw_metric_add(a, 3);
    yw_metric_inc(c);
    char *t = render(m);
    YW_CHECK_STR(t, "# HELP yw_events_total Help with \\\\ and\\nnewline.\n"
                    "# TYPE yw_events_total counter\n"
                    "yw_events_total{kind=\"exposure\",result=\"ingested\"} 3\n"
                    "yw_events_total{kind=\"say \\\"hi\\\"\\\\now\",result=\"x\"} 1\n");
    free(t);
    yw_metrics_destroy(m);
}

YW_TEST(bad_names_labels_and_types_are_einval)
{
    yw_metrics_t *m = make(0);
    yw_metric_t *h = NULL;
    YW_CHECK_INT(yw_metrics_counter(m, "", NULL, NULL, &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "9lives", NULL, NULL, &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "has space", NULL, NULL, &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "novalue", &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "=v", &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "1k=v", &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "a-b=v", &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "k=1,k=2", &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9", &h),
                 ==, -EINVAL);
    YW_CHECK(h == NULL);
    YW_CHECK_INT(yw_metrics_counter(m, "ok_total", NULL, "k=", &h), ==, 0); /* empty value */
    YW_CHECK(h != NULL);
    YW_CHECK_INT(yw_metrics_gauge(m, "ok_total", NULL, NULL, &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_gauge_set(m, "ok_total", NULL, 1), ==, -EINVAL);
    static const uint64_t bad_bounds[] = {5, 5};
    YW_CHECK_INT(yw_metrics_histogram(m, "h", NULL, NULL, bad_bounds, 2, 1.0, &h), ==, -EINVAL);
    static const uint64_t bounds[] = {1, 2};
    YW_CHECK_INT(yw_metrics_histogram(m, "h", NULL, NULL, bounds, 2, 1.0, &h), ==, 0);
    static const uint64_t other[] = {1, 3};
    YW_CHECK_INT(yw_metrics_histogram(m, "h", NULL, "a=b", other, 2, 1.0, &h), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_histogram(m, "h", NULL, "a=b", bounds, 2, 0.5, &h), ==, -EINVAL);
    yw_metrics_destroy(m);
}

YW_TEST(histogram_buckets_are_cumulative)
{
    yw_metrics_t *m = make(0);
    static const uint64_t bounds[] = {10, 100, 1000};
    yw_metric_t *h = NULL;
    YW_CHECK_INT(
        yw_metrics_histogram(m, "yw_batch_size", "Rows per batch.", "kind=a", bounds, 3, 1.0, &h),
        ==, 0);
    yw_metric_observe(h, 0);
    yw_metric_observe(h, 10); /* on the bound: counted in it (le = less or equal) */
    yw_metric_observe(h, 11);
    yw_metric_observe(h, 5000);
    YW_CHECK_INT(yw_metric_value(h), ==, 4);
    char *t = render(m);
    YW_CHECK_STR(t, "# HELP yw_batch_size Rows per batch.\n"
                    "# TYPE yw_batch_size histogram\n"
                    "yw_batch_size_bucket{kind=\"a\",le=\"10\"} 2\n"
                    "yw_batch_size_bucket{kind=\"a\",le=\"100\"} 3\n"
                    "yw_batch_size_bucket{kind=\"a\",le=\"1000\"} 3\n"
                    "yw_batch_size_bucket{kind=\"a\",le=\"+Inf\"} 4\n"
                    "yw_batch_size_sum{kind=\"a\"} 5021\n"
                    "yw_batch_size_count{kind=\"a\"} 4\n");
    free(t);
    yw_metrics_destroy(m);
}

YW_TEST(latency_histogram_in_seconds)
{
    yw_metrics_t *m = make(0);
    yw_metric_t *h = NULL;
    YW_CHECK_INT(yw_metrics_histogram(m, "yw_call_seconds", NULL, NULL,
                                      yw_metrics_latency_bounds_ns, YW_METRICS_N_LATENCY_BOUNDS,
                                      1e-9, &h),
                 ==, 0);
    yw_metric_observe(h, 20000);          /* 20 µs */
    yw_metric_observe(h, 3000000);        /* 3 ms */
    yw_metric_observe(h, 20000000000ull); /* 20 s: +Inf only */
    char *t = render(m);
    YW_CHECK(strstr(t, "yw_call_seconds_bucket{le=\"0.0001\"} 1\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_bucket{le=\"0.0025\"} 1\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_bucket{le=\"0.005\"} 2\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_bucket{le=\"10\"} 2\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_sum 20.00302\n") != NULL);
    YW_CHECK(strstr(t, "yw_call_seconds_count 3\n") != NULL);
    free(t);
    yw_metrics_destroy(m);
}

YW_TEST(by_name_helpers_register_then_reuse)
{
    yw_metrics_t *m = make(0);
    YW_CHECK_INT(yw_metrics_counter_add(m, "yw_rows_total", "table=a", 2), ==, 0);
    YW_CHECK_INT(yw_metrics_counter_add(m, "yw_rows_total", "table=a", 3), ==, 0);
    YW_CHECK_INT(yw_metrics_counter_add(m, "yw_rows_total", "table=b", 1), ==, 0);
    YW_CHECK_INT(yw_metrics_gauge_set(m, "yw_depth", NULL, 9), ==, 0);
    YW_CHECK_INT(yw_metrics_counter_add(NULL, "yw_rows_total", NULL, 1), ==, 0);
    char *t = render(m);
    YW_CHECK_STR(t, "# TYPE yw_rows_total counter\n"
                    "yw_rows_total{table=\"a\"} 5\n"
                    "yw_rows_total{table=\"b\"} 1\n"
                    "# TYPE yw_depth gauge\n"
                    "yw_depth 9\n");
    free(t);
    yw_metrics_destroy(m);
}

YW_TEST(null_handles_do_nothing)
{
    yw_metric_inc(NULL);
    yw_metric_add(NULL, 1);
    yw_metric_gauge_add(NULL, 1);
    yw_metric_gauge_set(NULL, 1);
    yw_metric_observe(NULL, 1);
    YW_CHECK_INT(yw_metric_value(NULL), ==, 0);
    yw_metrics_destroy(NULL);
    yw_metrics_http_stop(NULL);
}

YW_TEST(process_metrics_are_rendered)
{
    yw_metrics_t *m = make(YW_METRICS_PROCESS);
    char *t = render(m);
    unsigned long long rss = 0;
    const char *p = strstr(t, "\nprocess_resident_memory_bytes ");
    YW_CHECK(p != NULL);
    YW_CHECK_INT(sscanf(p, "\nprocess_resident_memory_bytes %llu", &rss), ==, 1);
    YW_CHECK(rss > 0);
    YW_CHECK(strstr(t, "# TYPE process_cpu_seconds_total counter\n") != NULL);
    YW_CHECK(strstr(t, "\nprocess_open_fds ") != NULL);
    YW_CHECK(strstr(t, "\nprocess_start_time_seconds ") != NULL);
    free(t);
    yw_metrics_destroy(m);
}

/* Writers add while a reader renders: no lost update, and every render parses. */
typedef struct {
    yw_metric_t *c;
    yw_metric_t *h;
} writer_arg_t;

static void *writer(void *arg)
{
    writer_arg_t *w = arg;
    for (int i = 0; i < 100000; i++) {
        yw_metric_inc(w->c);
        yw_metric_observe(w->h, (uint64_t)i % 200);
    }
    return NULL;
}

YW_TEST(updates_from_threads_during_scrapes)
{
    yw_metrics_t *m = make(0);
    static const uint64_t bounds[] = {50, 100};
    writer_arg_t w = {0};
    YW_CHECK_INT(yw_metrics_counter(m, "yw_hits_total", NULL, NULL, &w.c), ==, 0);
    YW_CHECK_INT(yw_metrics_histogram(m, "yw_sizes", NULL, NULL, bounds, 2, 1.0, &w.h), ==, 0);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(pthread_create(&th[i], NULL, writer, &w), ==, 0);
    }
    for (int i = 0; i < 50; i++) {
        /* Registration beside the writers and the scrape. */
        char labels[32];
        snprintf(labels, sizeof labels, "n=%d", i);
        YW_CHECK_INT(yw_metrics_counter_add(m, "yw_more_total", labels, 1), ==, 0);
        char *t = render(m);
        YW_CHECK(strstr(t, "yw_hits_total ") != NULL);
        free(t);
    }
    for (int i = 0; i < 3; i++) {
        YW_CHECK_INT(pthread_join(th[i], NULL), ==, 0);
    }
    YW_CHECK_INT(yw_metric_value(w.c), ==, 300000);
    YW_CHECK_INT(yw_metric_value(w.h), ==, 300000);
    yw_metrics_destroy(m);
}

/* ---- the HTTP endpoint ---- */

/* One request over a fresh connection; returns the whole response (malloc'd). */
static char *http(int port, const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    YW_CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    YW_CHECK_INT(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
    size_t n = strlen(request);
    YW_CHECK_INT(write(fd, request, n), ==, (long long)n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    YW_CHECK(buf != NULL);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        YW_CHECK(len < cap - 1);
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

YW_TEST(http_endpoint_serves_metrics)
{
    yw_metrics_t *m = make(YW_METRICS_PROCESS);
    yw_metric_t *c = NULL;
    YW_CHECK_INT(yw_metrics_counter(m, "yw_served_total", "Served.", "code=OK", &c), ==, 0);
    yw_metric_add(c, 12);
    yw_metrics_http_t *h = NULL;
    char err[256] = "";
    YW_CHECK_INT(yw_metrics_http_start(m, "127.0.0.1:0", &h, err, sizeof err), ==, 0);
    int port = yw_metrics_http_port(h);
    YW_CHECK(port > 0);

    char *r = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    YW_CHECK(strncmp(r, "HTTP/1.1 200", 12) == 0);
    YW_CHECK(strstr(r, "text/plain; version=0.0.4") != NULL);
    YW_CHECK(strstr(r, "\r\n\r\n# HELP yw_served_total Served.\n") != NULL);
    YW_CHECK(strstr(r, "yw_served_total{code=\"OK\"} 12\n") != NULL);
    YW_CHECK(strstr(r, "\nprocess_resident_memory_bytes ") != NULL);
    free(r);

    r = http(port, "GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    YW_CHECK(strncmp(r, "HTTP/1.1 404", 12) == 0);
    free(r);
    r = http(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n");
    YW_CHECK(strncmp(r, "HTTP/1.1 405", 12) == 0);
    YW_CHECK(strstr(r, "Allow: GET, HEAD") != NULL);
    free(r);

    /* The port is taken while the endpoint runs. */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    yw_metrics_http_t *h2 = NULL;
    YW_CHECK(yw_metrics_http_start(m, listen, &h2, err, sizeof err) < 0);
    YW_CHECK(strstr(err, listen) != NULL);
    yw_metrics_http_stop(h);
    yw_metrics_destroy(m);
}

YW_TEST(http_bad_listen_is_einval)
{
    yw_metrics_t *m = make(0);
    yw_metrics_http_t *h = NULL;
    char err[256] = "";
    YW_CHECK_INT(yw_metrics_http_start(m, "nocolon", &h, err, sizeof err), ==, -EINVAL);
    YW_CHECK(strstr(err, "nocolon") != NULL);
    YW_CHECK_INT(yw_metrics_http_start(m, "127.0.0.1:", &h, err, sizeof err), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_http_start(m, "127.0.0.1:99999", &h, err, sizeof err), ==, -EINVAL);
    YW_CHECK_INT(yw_metrics_http_start(m, "[::1:80", &h, err, sizeof err), ==, -EINVAL);
    YW_CHECK(h == NULL);
    yw_metrics_destroy(m);
}

int main(int argc, char **argv)
{
    static const yw_test_t tests[] = {
        YW_TEST_ENTRY(empty_registry_renders_nothing),
        YW_TEST_ENTRY(counter_and_gauge_render_exactly),
        YW_TEST_ENTRY(labels_are_sorted_escaped_and_found_in_any_order),
        YW_TEST_ENTRY(bad_names_labels_and_types_are_einval),
        YW_TEST_ENTRY(histogram_buckets_are_cumulative),
        YW_TEST_ENTRY(latency_histogram_in_seconds),
        YW_TEST_ENTRY(by_name_helpers_register_then_reuse),
        YW_TEST_ENTRY(null_handles_do_nothing),
        YW_TEST_ENTRY(process_metrics_are_rendered),
        YW_TEST_ENTRY(updates_from_threads_during_scrapes),
        YW_TEST_ENTRY(http_endpoint_serves_metrics),
        YW_TEST_ENTRY(http_bad_listen_is_einval),
    };
    return yw_test_main(tests, sizeof tests / sizeof tests[0], argc, argv);
}
