/*
 * progress: rate, time left and the one-line text of a batch's figures (see progress.h).
 */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mv_rate_add(mv_rate_t *r, uint64_t t_ms, uint64_t ended)
{
    unsigned last = (r->head + MV_RATE_SAMPLES - 1) % MV_RATE_SAMPLES;

    if (r->count && t_ms < r->t_ms[last])
        return;
    r->t_ms[r->head] = t_ms;
    r->n[r->head] = ended;
    r->head = (r->head + 1) % MV_RATE_SAMPLES;
    if (r->count < MV_RATE_SAMPLES)
        r->count++;
}

double mv_rate_per_s(const mv_rate_t *r)
{
    unsigned newest, oldest = 0;
    uint64_t span;

    if (r->count < 2)
        return -1;
    newest = (r->head + MV_RATE_SAMPLES - 1) % MV_RATE_SAMPLES;
    /* The oldest sample still inside the window (the ring may hold older ones); the newest
     * always is. */
    for (unsigned k = 0; k < r->count; k++) {
        oldest = (r->head + MV_RATE_SAMPLES - r->count + k) % MV_RATE_SAMPLES;
        if (r->t_ms[newest] - r->t_ms[oldest] <= MV_RATE_WINDOW_MS)
            break;
    }
    span = r->t_ms[newest] - r->t_ms[oldest];
    if (span < 100 || r->n[newest] < r->n[oldest])
        return -1;
    return (double)(r->n[newest] - r->n[oldest]) * 1000.0 / (double)span;
}

double mv_progress_eta(uint64_t done, int64_t total, double rate)
{
    if (total >= 0 && done >= (uint64_t)total)
        return 0;
    if (total < 0 || rate <= 0)
        return -1;
    return (double)((uint64_t)total - done) / rate;
}

int64_t mv_progress_queue(uint64_t done, int64_t total, uint64_t in_flight)
{
    if (total < 0)
        return -1;
    if (done + in_flight >= (uint64_t)total)
        return 0;
    return (int64_t)((uint64_t)total - done - in_flight);
}

void mv_progress_size(int64_t bytes, int zero_off, char out[16])
{
    static const char unit[] = "BKMGTP";
    double v = (double)bytes;
    size_t u = 0;

    if (bytes == 0 && zero_off) {
        snprintf(out, 16, "off");
        return;
    }
    if (bytes < 0) {
        snprintf(out, 16, "?");
        return;
    }
    while (v >= 1024.0 && u + 1 < sizeof unit - 1) {
        v /= 1024.0;
        u++;
    }
    /* One decimal under 10, none above: "9.5M", "301M"; 1023.9K rounds up, so it says 1.0M. */
    if (u > 0 && v < 9.95)
        snprintf(out, 16, "%.1f%c", v, unit[u]);
    else if (u + 1 < sizeof unit - 1 && v >= 1023.5)
        snprintf(out, 16, "1.0%c", unit[u + 1]);
    else
        snprintf(out, 16, "%.0f%c", v, unit[u]);
}

void mv_progress_duration(double s, char out[16])
{
    int t;

    if (s < 0 || isnan(s)) {
        snprintf(out, 16, "?");
        return;
    }
    if (s >= 100.0 * 3600.0) {
        snprintf(out, 16, ">99h");
        return;
    }
    t = (int)ceil(s); /* "0s" only when done; under 100 h here */
    if (t < 60)
        snprintf(out, 16, "%ds", t);
    else if (t < 3600)
        snprintf(out, 16, "%dm%02ds", t / 60, t % 60);
    else
        snprintf(out, 16, "%dh%02dm", t / 3600, t % 3600 / 60);
}

/* Appends to out[*len..n) and keeps it NUL-terminated; what does not fit is cut. */
__attribute__((format(printf, 4, 5))) static void put(char *out, size_t n, size_t *len,
                                                      const char *fmt, ...)
{
    va_list ap;
    int k;

    if (*len + 1 >= n)
        return;
    va_start(ap, fmt);
    k = vsnprintf(out + *len, n - *len, fmt, ap);
    va_end(ap);
    if (k > 0)
        *len += (size_t)k < n - *len ? (size_t)k : n - *len - 1;
}

size_t mv_progress_format(const mv_progress_t *p, char *out, size_t n)
{
    char eta[16], mem[16], soft[16], hard[16];
    size_t len = 0;

    if (n == 0)
        return 0;
    out[0] = '\0';
    if (p->total >= 0)
        put(out, n, &len, "%llu/%lld %d%%", (unsigned long long)p->done, (long long)p->total,
            p->total ? (int)(p->done * 100 / (uint64_t)p->total) : 100);
    else
        put(out, n, &len, "%llu/?", (unsigned long long)p->done);
    mv_progress_duration(p->eta_s, eta);
    if (p->rate < 0)
        put(out, n, &len, " ?/s eta %s", eta);
    else
        put(out, n, &len, " %.*f/s eta %s", p->rate < 10 ? 1 : 0, p->rate, eta);
    put(out, n, &len, " | ok %llu failed %llu quarantined %llu | busy %d/%d recycles %llu | ",
        (unsigned long long)p->ok, (unsigned long long)p->failed,
        (unsigned long long)p->quarantined, p->busy, p->workers, (unsigned long long)p->recycles);
    if (p->top_slot <= 0) {
        put(out, n, &len, "mem ?");
        return len;
    }
    mv_progress_size(p->top_mem, 0, mem);
    mv_progress_size(p->top_soft, 1, soft);
    mv_progress_size(p->top_hard, 1, hard);
    put(out, n, &len, "mem %s #%d (soft %s, hard %s)", mem, p->top_slot, soft, hard);
    return len;
}
