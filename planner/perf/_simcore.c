/*
 * planner.perf._simcore: the serving simulator's event loop in C (docs/simulator.md, "Native core").
 *
 * A transcription of planner/perf/simulator.py (_Sim), planner/perf/_engine.py (Engine) and
 * planner/perf/_miss_watch.py (MissWatch) that gives the same SimResult float for float: the same event
 * heap ordered by (time, sequence number), the same integer sums (int64) and the same floating-point
 * operations in the same order as the Python loop, which stays the reference implementation
 * (tests/test_simulator_native.py compares the two). It steps every event through the heap: the Python
 * loop's coasting and vectorised runs are speed-ups whose results equal that.
 *
 * Step times: moeplan's tabulated latency model (planner/perf/cost_table.py, LatencyModelCost.step_time_s)
 * and DistServe's fitted model (planner/perf/cost.py, DistServeCost.step_time_s), with their KV transfer
 * times. The Python side (planner/perf/simulator.py) packs the inputs and decides when this core applies.
 *
 * Build with -ffp-contract=off (setup.py): no fused multiply-adds, so every CPU gives Python's bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NO_LIMIT (((int64_t)1) << 62)
enum { EV_DONE = 0, EV_WAKE = 1, EV_TRANSFER = 2 };
enum { PH_BOTH = 0, PH_PREFILL = 1, PH_DECODE = 2 };
enum { COST_TABLE = 0, COST_DISTSERVE = 1 };
enum { ROUTE_LEAST = 0, ROUTE_RR = 1 };

/* ---- growable containers ------------------------------------------------------------------------- */

typedef struct Sim Sim;
static void *grow(Sim *s, void *p, size_t *cap, size_t need, size_t size);

typedef struct { int64_t rid; int complete; } Chunk;

typedef struct {
    double t;
    int64_t seq;
    int kind;
    int engine;
    int lane;
    int nchunks;
    int64_t bs;
    int64_t rid;      /* TRANSFER */
    Chunk *chunks;    /* DONE of phases both / prefill (NULL: no chunks) */
    int has_chunks;   /* Python's chunks is a list (phases both/prefill), not None (decode) */
} Event;

typedef struct { int64_t *a; size_t cap, head, len; } DequeI;            /* ring of request ids */
typedef struct { int64_t rid, left, done; } Prefilling;
typedef struct { Prefilling *a; size_t cap, head, len; } DequeP;       /* ring of chunked prompts */
typedef struct { int64_t k, rid; } KItem;                               /* (step of the last token, request) */
typedef struct { double due; int64_t rid; } DueItem;                    /* MissWatch.tpot_due */

typedef struct {
    int busy;
    int64_t bs, ctx, k;
    KItem *heap; size_t hlen, hcap;
    DequeP prefilling;
} Lane;

typedef struct {
    int kind;
    /* LatencyModelCost: grids and flat tables (rows over the batch grid, columns over the lengths) */
    double *nx; Py_ssize_t nnx;
    double *bx; Py_ssize_t nbx;
    double *len; Py_ssize_t nlen;
    double *p_other, *p_rate, *d_other, *d_rate;
    double w_one;  /* weight of _segment(decode grid, 1) */
    /* DistServeCost */
    double pa, pb, pc, sa, sb, sc, la, lb, lc, pp_over;
    int64_t thr, pp;
    /* KV transfer */
    int has_link;
    double kv_lat, kv_bpt, kv_link;
} Cost;

typedef struct {
    int pool, index, phase, chunked;
    int64_t budget, max_batch, kv_cap, kv_used, kv_peak;
    DequeI waiting, pending;
    int64_t waiting_tokens, pending_tokens;
    int pp, rr;
    Lane *lanes;
    double *stage_free;
    double wake_at, busy_s;
    int64_t steps;
    Cost *cost;
} Engine;

typedef struct {
    double ttft_limit, tpot_limit, ttft_wait_s, next_check;
    int percentile_rule, check_ttft, check_tpot, missed;
    int64_t ttft_needed, tpot_needed, any_needed, ttft_missed, tpot_missed, any_missed, ttft_next;
    unsigned char *flag;
    DueItem *due; size_t dlen, dcap;
} Watch;

struct Sim {
    jmp_buf oom;
    Py_ssize_t n;
    const int64_t *inp, *out;
    double *arrival, *first, *finish;
    unsigned char *rejected;
    int64_t *prefill_inst, *decode_inst;
    int *prefill_engine_of;  /* global engine index or -1 */
    int64_t tokens, done, seq;
    Event *heap; size_t hlen, hcap;
    int *dirty; unsigned char *is_dirty; int ndirty;
    int npools;
    int pool_first[2], pool_count[2], pool_routing[2], rr[2];
    Cost costs[2];
    Engine *engines; int nengines;
    int decode_pool;  /* -1: none */
    int closed;
    Py_ssize_t next_send;
    double think_s;
    int has_watch;
    Watch w;
    int stopped;
};

static void *grow(Sim *s, void *p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *q = realloc(p, c * size);
    if (!q) longjmp(s->oom, 1);
    *cap = c;
    return q;
}

/* one ring-buffer deque push per element type (queued requests, chunked prompts): double when full */
#define DEFINE_DEQUE_PUSH(NAME, D, T)                                                                           \
    static void NAME(Sim *s, D *d, T v) {                                                                      \
        if (d->len == d->cap) {                                                                                \
            size_t c = d->cap ? d->cap * 2 : 8;                                                                \
            T *a = malloc(c * sizeof(T));                                                                      \
            if (!a) longjmp(s->oom, 1);                                                                        \
            for (size_t i = 0; i < d->len; i++) a[i] = d->a[(d->head + i) % d->cap];                           \
            free(d->a);                                                                                        \
            d->a = a; d->cap = c; d->head = 0;                                                                 \
        }                                                                                                      \
        d->a[(d->head + d->len) % d->cap] = v;                                                                 \
        d->len++;                                                                                              \
    }

DEFINE_DEQUE_PUSH(dq_push, DequeI, int64_t)
static inline int64_t dq_front(DequeI *d) { return d->a[d->head]; }
static inline int64_t dq_pop(DequeI *d) {
    int64_t v = d->a[d->head];
    d->head = (d->head + 1) % d->cap;
    d->len--;
    return v;
}

DEFINE_DEQUE_PUSH(dp_push, DequeP, Prefilling)
static inline Prefilling *dp_at(DequeP *d, size_t i) { return &d->a[(d->head + i) % d->cap]; }
static inline void dp_pop(DequeP *d) { d->head = (d->head + 1) % d->cap; d->len--; }

/* event heap: (t, seq), as Python's heapq on (t, seq, ...) tuples */
static inline int ev_less(const Event *a, const Event *b) { return a->t < b->t || (a->t == b->t && a->seq < b->seq); }

/* one binary min-heap per element type (events, lane finish steps, TPOT deadlines): sift a new last element
   up, or take the root and sift the last element down from it -- heapq's order for a strict LESS */
#define DEFINE_HEAP(NAME, T, LESS)                                                                              \
    static void NAME##_sift_up(T *h, size_t i, T e) {                                                          \
        while (i) {                                                                                            \
            size_t p = (i - 1) / 2;                                                                            \
            if (!LESS(&e, &h[p])) break;                                                                       \
            h[i] = h[p];                                                                                       \
            i = p;                                                                                             \
        }                                                                                                      \
        h[i] = e;                                                                                              \
    }                                                                                                          \
    static T NAME##_take_root(T *h, size_t *len) {                                                             \
        T top = h[0];                                                                                          \
        T last = h[--*len];                                                                                    \
        size_t n = *len, i = 0;                                                                                \
        for (;;) {                                                                                             \
            size_t c = 2 * i + 1;                                                                              \
            if (c >= n) break;                                                                                 \
            if (c + 1 < n && LESS(&h[c + 1], &h[c])) c++;                                                      \
            if (!LESS(&h[c], &last)) break;                                                                    \
            h[i] = h[c];                                                                                       \
            i = c;                                                                                             \
        }                                                                                                      \
        if (n) h[i] = last;                                                                                    \
        return top;                                                                                            \
    }

DEFINE_HEAP(ev, Event, ev_less)

static void ev_push(Sim *s, Event e) {
    s->heap = grow(s, s->heap, &s->hcap, s->hlen + 1, sizeof(Event));
    ev_sift_up(s->heap, s->hlen++, e);
}

static Event ev_pop(Sim *s) { return ev_take_root(s->heap, &s->hlen); }

static inline int k_less(const KItem *a, const KItem *b) { return a->k < b->k || (a->k == b->k && a->rid < b->rid); }

DEFINE_HEAP(kh, KItem, k_less)

static void k_push(Sim *s, Lane *l, int64_t k, int64_t rid) {
    l->heap = grow(s, l->heap, &l->hcap, l->hlen + 1, sizeof(KItem));
    KItem e = {k, rid};
    kh_sift_up(l->heap, l->hlen++, e);
}

static int64_t k_pop(Lane *l) { return kh_take_root(l->heap, &l->hlen).rid; }

static inline int d_less(const DueItem *a, const DueItem *b) {
    return a->due < b->due || (a->due == b->due && a->rid < b->rid);
}

DEFINE_HEAP(dh, DueItem, d_less)

static void d_push(Sim *s, Watch *w, double due, int64_t rid) {
    w->due = grow(s, w->due, &w->dcap, w->dlen + 1, sizeof(DueItem));
    DueItem e = {due, rid};
    dh_sift_up(w->due, w->dlen++, e);
}

static int64_t d_pop(Watch *w) { return dh_take_root(w->due, &w->dlen).rid; }

/* ---- step times (planner/perf/cost_table.py, planner/perf/cost.py) -------------------------------- */

/* bisect_right(grid, x) - 1, clamped to the first / last segment (cost_table._segment) */
static inline Py_ssize_t segment_index(const double *grid, Py_ssize_t n, double x) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (x < grid[mid]) hi = mid; else lo = mid + 1;
    }
    Py_ssize_t i = lo - 1;
    if (i < 0) i = 0;
    if (i > n - 2) i = n - 2;
    return i;
}

/* cost_table._segment for an integer x (batch sizes, prompt counts): (x - lo) / (hi - lo) of integers */
static inline Py_ssize_t int_segment(const double *grid, Py_ssize_t n, int64_t x, double *w) {
    Py_ssize_t i = segment_index(grid, n, (double)x);
    double lo = grid[i];
    *w = ((double)x - lo) / (grid[i + 1] - lo);
    return i;
}

static double table_step_time(const Cost *c, int64_t np_, int64_t tokens, int64_t squares, int64_t bs, int64_t ctxsum) {
    Py_ssize_t nl = c->nlen, last = nl - 2, i, j;
    double attention = 0.0, other = 0.0, wx, wy, lo, a, b;
    const double *r0, *r1;
    if (bs) {
        double ctx = (double)ctxsum / (double)bs;
        i = int_segment(c->bx, c->nbx, bs, &wx);
        j = segment_index(c->len, nl, ctx);
        (void)last;
        lo = c->len[j];
        wy = (ctx - lo) / (c->len[j + 1] - lo);
        r0 = c->d_rate + i * nl; r1 = r0 + nl;
        a = r0[j] + (r0[j + 1] - r0[j]) * wy;
        b = r1[j] + (r1[j + 1] - r1[j]) * wy;
        attention = (a + (b - a) * wx) * (double)ctxsum;
        r0 = c->d_other + i * nl; r1 = r0 + nl;
        a = r0[j] + (r0[j + 1] - r0[j]) * wy;
        b = r1[j] + (r1[j + 1] - r1[j]) * wy;
        other = a + (b - a) * wx;
        if (!np_) return other + attention;
        r0 = c->d_other; r1 = r0 + nl;
        a = r0[j] + (r0[j + 1] - r0[j]) * wy;
        b = r1[j] + (r1[j + 1] - r1[j]) * wy;
        other = other - (a + (b - a) * c->w_one);
    } else if (!np_) {
        return 0.0;
    }
    double length = (double)tokens / (double)np_;
    i = int_segment(c->nx, c->nnx, np_, &wx);
    j = segment_index(c->len, nl, length);
    lo = c->len[j];
    wy = (length - lo) / (c->len[j + 1] - lo);
    r0 = c->p_other + i * nl; r1 = r0 + nl;
    a = r0[j] + (r0[j + 1] - r0[j]) * wy;
    b = r1[j] + (r1[j + 1] - r1[j]) * wy;
    double prefill = a + (b - a) * wx;
    r0 = c->p_rate + i * nl; r1 = r0 + nl;
    a = r0[j] + (r0[j + 1] - r0[j]) * wy;
    b = r1[j] + (r1[j + 1] - r1[j]) * wy;
    prefill = prefill + ((a + (b - a) * wx) * (double)(squares + tokens)) / 2.0;
    if (!bs) return prefill;
    return prefill + attention + (other > 0 ? other : 0.0);
}

static double distserve_step_time(const Cost *c, int64_t np_, int64_t tokens, int64_t squares, int64_t bs, int64_t ctxsum) {
    double fixed = 0.0, var = 0.0;
    if (np_) {
        fixed = c->pa;
        var = c->pb * (double)tokens + c->pc * (double)squares;
    }
    if (bs) {
        double a, b, cc;
        if (bs >= c->thr) { a = c->la; b = c->lb; cc = c->lc; } else { a = c->sa; b = c->sb; cc = c->sc; }
        fixed = a > fixed ? a : fixed;
        var += b * (double)ctxsum + cc * (double)bs;
    }
    if (c->pp == 1) return (fixed + var) * 1e-3;
    double stage_ms = (fixed + var) / (double)c->pp + (np_ ? c->pp_over * (double)c->pp : 0.0);
    return stage_ms * (double)c->pp * 1e-3;
}

static inline double step_time(const Cost *c, int64_t np_, int64_t tokens, int64_t squares, int64_t bs, int64_t ctx) {
    return c->kind == COST_TABLE ? table_step_time(c, np_, tokens, squares, bs, ctx)
                                 : distserve_step_time(c, np_, tokens, squares, bs, ctx);
}

static inline double kv_transfer_time(const Cost *c, int64_t prompt) {
    if (!c->has_link) return 0.0;
    return c->kv_lat + ((double)prompt * c->kv_bpt) / c->kv_link;
}

/* ---- MissWatch (planner/perf/_miss_watch.py) ------------------------------------------------------ */

static void w_count(Watch *w, int64_t rid, int bit) {
    unsigned char f = w->flag[rid];
    if (f & bit) return;
    w->flag[rid] = (unsigned char)(f | bit);
    if (bit == 1) w->ttft_missed++; else w->tpot_missed++;
    if (!f) w->any_missed++;
    if (w->percentile_rule) w->missed = w->ttft_missed >= w->ttft_needed || w->tpot_missed >= w->tpot_needed;
    else w->missed = w->any_missed >= w->any_needed;
}

static void w_first_token(Sim *s, int64_t rid, double t) {
    Watch *w = &s->w;
    int64_t o = s->out[rid];
    if (w->check_tpot && o > 1) {
        double due = t + (w->tpot_limit * (double)(o - 1)) / 1e3;
        d_push(s, w, due, rid);
        if (due < w->next_check) w->next_check = due;
    }
}

static void w_finished(Sim *s, int64_t rid, double first, double t) {
    Watch *w = &s->w;
    int64_t o = s->out[rid];
    if (w->check_tpot && o > 1 && ((t - first) * 1e3) / (double)(o - 1) > w->tpot_limit) w_count(w, rid, 2);
}

static void w_rejected(Sim *s, int64_t rid) {
    Watch *w = &s->w;
    if (w->check_ttft) w_count(w, rid, 1);
    if (w->check_tpot && s->out[rid] > 1) w_count(w, rid, 2);
}

static void w_advance(Sim *s, double now, Py_ssize_t arrived) {
    Watch *w = &s->w;
    const double *arrival = s->arrival;
    if (w->check_ttft) {
        Py_ssize_t i = (Py_ssize_t)w->ttft_next;
        while (i < arrived && arrival[i] + w->ttft_wait_s < now) {
            double f = s->first[i];
            if (f == f) {
                if ((f - arrival[i]) * 1e3 > w->ttft_limit) w_count(w, i, 1);
            } else if ((now - arrival[i]) * 1e3 > w->ttft_limit) {
                w_count(w, i, 1);
            } else {
                break;
            }
            i++;
        }
        w->ttft_next = i;
    }
    while (w->dlen && w->due[0].due < now) {
        int64_t rid = d_pop(w);
        double f = s->first[rid];
        if (s->finish[rid] == s->finish[rid] || f != f) continue;
        if (((now - f) * 1e3) / (double)(s->out[rid] - 1) > w->tpot_limit) {
            w_count(w, rid, 2);
        } else {
            d_push(s, w, nextafter(now, INFINITY), rid);
            break;
        }
    }
    double nxt = (w->check_ttft && w->ttft_next < s->n) ? arrival[w->ttft_next] + w->ttft_wait_s : INFINITY;
    if (w->dlen && w->due[0].due < nxt) nxt = w->due[0].due;
    w->next_check = nxt > now ? nxt : nextafter(now, INFINITY);
}

/* ---- simulator (planner/perf/simulator.py _Sim) and engines (planner/perf/_engine.py Engine) ------- */

static inline void mark_dirty(Sim *s, int g) {
    if (!s->is_dirty[g]) {
        s->is_dirty[g] = 1;
        s->dirty[s->ndirty++] = g;
    }
}

static void push_event(Sim *s, double t, int kind, int engine, int lane, Chunk *chunks, int nchunks, int has_chunks,
                       int64_t bs, int64_t rid) {
    Event e;
    s->seq++;
    e.t = t; e.seq = s->seq; e.kind = kind; e.engine = engine; e.lane = lane;
    e.chunks = chunks; e.nchunks = nchunks; e.has_chunks = has_chunks; e.bs = bs; e.rid = rid;
    ev_push(s, e);
}

static inline int engine_id(Sim *s, Engine *e) { return (int)(e - s->engines); }

static void send_next(Sim *s, double t) {
    Py_ssize_t i = s->next_send;
    if (i < s->n) {
        s->arrival[i] = t + s->think_s;
        s->next_send = i + 1;
    }
}

static void first_token(Sim *s, int64_t rid, double t) {
    s->first[rid] = t;
    s->tokens++;
    if (s->has_watch) w_first_token(s, rid, t);
}

static void finished(Sim *s, int64_t rid, double t) {
    s->finish[rid] = t;
    s->done++;
    if (s->has_watch) w_finished(s, rid, s->first[rid], t);
    if (s->closed) send_next(s, t);
}

static inline int64_t load_tokens(Engine *e) { return e->kv_used + e->waiting_tokens + e->pending_tokens; }

static Engine *route(Sim *s, int pool) {
    Engine *engines = s->engines + s->pool_first[pool];
    int count = s->pool_count[pool];
    if (count == 1) return engines;
    if (s->pool_routing[pool] == ROUTE_RR) {
        int i = s->rr[pool];
        s->rr[pool] = (i + 1) % count;
        return engines + i;
    }
    Engine *best = engines;
    int64_t best_load = load_tokens(best);
    for (int i = 1; i < count; i++) {
        int64_t l = load_tokens(engines + i);
        if (l < best_load) { best = engines + i; best_load = l; }
    }
    return best;
}

static inline int64_t need(Sim *s, Engine *e, int64_t rid) {
    return e->phase == PH_PREFILL ? s->inp[rid] : s->inp[rid] + s->out[rid];
}

static inline void release(Sim *s, Engine *e, int64_t tokens) {
    e->kv_used -= tokens;
    mark_dirty(s, engine_id(s, e));
}

static inline void reserve(Engine *e, int64_t tokens) {
    e->kv_used += tokens;
    if (e->kv_used > e->kv_peak) e->kv_peak = e->kv_used;
}

static void enqueue(Sim *s, Engine *e, int64_t rid) {
    if (e->phase == PH_DECODE) {
        dq_push(s, &e->pending, rid);
        e->pending_tokens += need(s, e, rid);
    } else {
        dq_push(s, &e->waiting, rid);
        e->waiting_tokens += s->inp[rid];
    }
    mark_dirty(s, engine_id(s, e));
}

static void transfer(Sim *s, int64_t rid, Engine *target, double t) {
    int src = s->prefill_engine_of[rid];
    double dt = src < 0 ? 0.0 : kv_transfer_time(s->engines[src].cost, s->inp[rid]);
    push_event(s, t + dt, EV_TRANSFER, engine_id(s, target), -1, NULL, 0, 0, 0, rid);
}

static void start_transfers(Sim *s, Engine *e, double t) {
    while (e->pending.len) {
        int64_t rid = dq_front(&e->pending);
        int64_t nd = s->inp[rid] + s->out[rid];
        if (e->kv_used + nd > e->kv_cap) break;
        dq_pop(&e->pending);
        e->pending_tokens -= nd;
        reserve(e, nd);
        transfer(s, rid, e, t);
    }
}

static void prefilled(Sim *s, int64_t rid, double t, Engine *e) {
    first_token(s, rid, t);
    if (s->decode_pool < 0 || s->out[rid] == 1) {
        release(s, e, s->inp[rid]);
        finished(s, rid, t);
        return;
    }
    Engine *target = route(s, s->decode_pool);
    if (s->inp[rid] + s->out[rid] > target->kv_cap) {
        release(s, e, s->inp[rid]);
        s->rejected[rid] = 1;
        s->first[rid] = NAN;
        s->tokens--;
        s->done++;
        if (s->has_watch) w_rejected(s, rid);
        if (s->closed) send_next(s, t);
        return;
    }
    s->prefill_engine_of[rid] = engine_id(s, e);
    s->decode_inst[rid] = target->index;
    enqueue(s, target, rid);
}

static void wake(Sim *s, Engine *e, double at) {
    if (e->pp > 1 && e->wake_at != at) {
        e->wake_at = at;
        push_event(s, at, EV_WAKE, engine_id(s, e), -1, NULL, 0, 0, 0, 0);
    }
}

static int dispatch(Sim *s, Engine *e, int li, double t) {
    Lane *lane = &e->lanes[li];
    const int64_t *inp = s->inp, *out = s->out;
    int64_t bs = lane->bs, n = 0, tokens = 0, squares = 0;
    Chunk *chunks = NULL;
    int nchunks = 0, has_chunks = 0;
    if (e->phase == PH_DECODE) {
        DequeI *waiting = &e->waiting;
        while (waiting->len && bs < e->max_batch) {
            int64_t rid = dq_pop(waiting);
            bs++;
            lane->ctx += inp[rid] + 1;
            k_push(s, lane, lane->k + out[rid] - 2, rid);
        }
        lane->bs = bs;
        if (!bs) return 0;
    } else {
        int64_t budget = e->budget - bs;
        DequeP *pf = &lane->prefilling;
        size_t ccap = 0;
        has_chunks = 1;
        int64_t active = e->phase == PH_PREFILL ? 0 : bs + (int64_t)pf->len;
        for (size_t q = 0; q < pf->len; q++) {
            if (budget <= 0) break;
            Prefilling *entry = dp_at(pf, q);
            int64_t left = entry->left, dn = entry->done;
            int64_t c = left < budget ? left : budget;
            n++;
            tokens += c;
            squares += (dn + c) * (dn + c) - dn * dn;
            budget -= c;
            entry->left = left - c;
            entry->done = dn + c;
            chunks = grow(s, chunks, &ccap, (size_t)nchunks + 1, sizeof(Chunk));
            chunks[nchunks].rid = entry->rid;
            chunks[nchunks].complete = left == c;
            nchunks++;
        }
        while (pf->len && dp_at(pf, 0)->left == 0) dp_pop(pf);
        if (e->phase == PH_PREFILL) active = n;
        DequeI *waiting = &e->waiting;
        int both = e->phase == PH_BOTH;
        while (waiting->len && budget > 0 && active < e->max_batch) {
            int64_t rid = dq_front(waiting);
            int64_t p = inp[rid];
            int64_t nd = both ? p + out[rid] : p;
            int64_t c;
            if (e->kv_used + nd > e->kv_cap) break;
            if (e->chunked) {
                c = p < budget ? p : budget;
            } else if (p > budget && n) {
                break;
            } else {
                c = p;
            }
            dq_pop(waiting);
            e->waiting_tokens -= p;
            reserve(e, nd);
            n++;
            active++;
            tokens += c;
            squares += c * c;
            budget -= c;
            if (c < p) {
                Prefilling entry = {rid, p - c, c};
                dp_push(s, pf, entry);
            }
            chunks = grow(s, chunks, &ccap, (size_t)nchunks + 1, sizeof(Chunk));
            chunks[nchunks].rid = rid;
            chunks[nchunks].complete = c == p;
            nchunks++;
        }
        if (!n && !bs) {
            free(chunks);
            return 0;
        }
    }
    double tau = step_time(e->cost, n, tokens, squares, bs, lane->ctx);
    int pp = e->pp;
    double *stage_free = e->stage_free;
    double end;
    if (pp == 1) {
        end = t + tau;
        stage_free[0] = end;
        e->busy_s += tau;
    } else {
        double stage = tau / (double)pp;
        end = t;
        for (int st = 0; st < pp; st++) {
            double start = stage_free[st] > end ? stage_free[st] : end;
            end = start + stage;
            stage_free[st] = end;
        }
        e->busy_s += stage;
    }
    e->steps++;
    if (e->phase != PH_PREFILL) lane->busy = 1;
    push_event(s, end, EV_DONE, engine_id(s, e), li, chunks, nchunks, has_chunks, bs, 0);
    return 1;
}

static void poke(Sim *s, Engine *e, double t) {
    if (e->phase == PH_DECODE && e->pending.len) start_transfers(s, e, t);
    if (e->stage_free[0] > t) {
        wake(s, e, e->stage_free[0]);
        return;
    }
    if (e->phase == PH_PREFILL) {
        if (dispatch(s, e, 0, t) && e->pp > 1) wake(s, e, e->stage_free[0]);
        return;
    }
    int pp = e->pp;
    if (pp == 1) {
        if (!e->lanes[0].busy) dispatch(s, e, 0, t);
        return;
    }
    for (int j = 0; j < pp; j++) {
        int i = (e->rr + j) % pp;
        if (!e->lanes[i].busy && dispatch(s, e, i, t)) {
            e->rr = (i + 1) % pp;
            wake(s, e, e->stage_free[0]);
            return;
        }
    }
}

static void step_done(Sim *s, Engine *e, Event *ev, double t) {
    mark_dirty(s, engine_id(s, e));
    if (e->phase == PH_PREFILL) {
        for (int q = 0; q < ev->nchunks; q++)
            if (ev->chunks[q].complete) prefilled(s, ev->chunks[q].rid, t, e);
        return;
    }
    Lane *lane = &e->lanes[ev->lane];
    const int64_t *inp = s->inp, *out = s->out;
    lane->busy = 0;
    int64_t k_done = lane->k;
    lane->k = k_done + 1;
    int64_t bs = ev->bs;
    if (bs) {
        s->tokens += bs;
        lane->ctx += bs;
        while (lane->hlen && lane->heap[0].k <= k_done) {
            int64_t rid = k_pop(lane);
            int64_t total = inp[rid] + out[rid];
            lane->bs--;
            lane->ctx -= total;
            e->kv_used -= total;
            finished(s, rid, t);
        }
    }
    for (int q = 0; q < ev->nchunks; q++) {
        if (!ev->chunks[q].complete) continue;
        int64_t rid = ev->chunks[q].rid;
        first_token(s, rid, t);
        int64_t o = out[rid];
        if (o == 1) {
            e->kv_used -= inp[rid] + 1;
            finished(s, rid, t);
        } else {
            lane->bs++;
            lane->ctx += inp[rid] + 1;
            k_push(s, lane, lane->k + o - 2, rid);
        }
    }
}

static void arrive(Sim *s, int64_t rid, double t) {
    Engine *e = route(s, 0);
    if (need(s, e, rid) > e->kv_cap) {
        s->rejected[rid] = 1;
        s->done++;
        if (s->has_watch) w_rejected(s, rid);
        if (s->closed) send_next(s, t);
        return;
    }
    if (e->phase == PH_DECODE) {
        first_token(s, rid, t);
        if (s->out[rid] == 1) {
            finished(s, rid, t);
            return;
        }
        s->decode_inst[rid] = e->index;
    } else {
        s->prefill_inst[rid] = e->index;
    }
    enqueue(s, e, rid);
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static double run_loop(Sim *s) {
    const Py_ssize_t n = s->n;
    Py_ssize_t i = 0;
    double now = 0.0;
    for (;;) {
        double ta = i < n ? s->arrival[i] : INFINITY;
        double te = s->hlen ? s->heap[0].t : INFINITY;
        double t = ta <= te ? ta : te;
        if (s->ndirty && t > now) {
            if (s->ndirty > 1) qsort(s->dirty, (size_t)s->ndirty, sizeof(int), cmp_int);
            int nd = s->ndirty;
            for (int q = 0; q < nd; q++) {
                s->is_dirty[s->dirty[q]] = 0;
                poke(s, &s->engines[s->dirty[q]], now);
            }
            s->ndirty = 0;  /* pokes never mark an engine dirty (only events do) */
            continue;
        }
        if (t == INFINITY) return now;
        if (s->has_watch) {
            if (t > s->w.next_check) w_advance(s, t, i);
            if (s->w.missed) {
                s->stopped = 1;
                return now;
            }
        }
        now = t;
        if (ta <= te) {
            arrive(s, i, t);
            i++;
            continue;
        }
        Event ev = ev_pop(s);
        Engine *e = &s->engines[ev.engine];
        if (ev.kind == EV_DONE) {
            step_done(s, e, &ev, t);
            free(ev.chunks);
        } else if (ev.kind == EV_TRANSFER) {
            int64_t rid = ev.rid;
            int src = s->prefill_engine_of[rid];
            s->prefill_engine_of[rid] = -1;
            if (src >= 0) release(s, &s->engines[src], s->inp[rid]);
            dq_push(s, &e->waiting, rid);
            mark_dirty(s, ev.engine);
        } else {
            e->wake_at = -1.0;
            mark_dirty(s, ev.engine);
        }
    }
}

/* run_loop with its own landing point for an allocation failure (the caller released the GIL) */
static int run_guarded(Sim *s, double *end) {
    if (setjmp(s->oom)) return -1;
    *end = run_loop(s);
    return 0;
}

/* ---- Python interface ------------------------------------------------------------------------------ */

typedef struct { Py_buffer views[32]; int count; } Views;

static void *get_buffer(Views *v, PyObject *obj, Py_ssize_t itemsize, Py_ssize_t n, int writable, const char *what) {
    if (v->count >= 32) {
        PyErr_SetString(PyExc_RuntimeError, "too many buffers");
        return NULL;
    }
    Py_buffer *b = &v->views[v->count];
    if (PyObject_GetBuffer(obj, b, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    v->count++;
    if (b->itemsize != itemsize || (n >= 0 && b->len != n * itemsize)) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes", what, n, itemsize);
        return NULL;
    }
    return b->buf;
}

static void free_views(Views *v) {
    for (int i = 0; i < v->count; i++) PyBuffer_Release(&v->views[i]);
    v->count = 0;
}

static int read_double(PyObject *seq, Py_ssize_t i, double *out) {
    PyObject *o = PyTuple_GET_ITEM(seq, i);
    *out = PyFloat_AsDouble(o);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int read_int(PyObject *seq, Py_ssize_t i, int64_t *out) {
    PyObject *o = PyTuple_GET_ITEM(seq, i);
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)v;
    return 0;
}

/* cost pack (planner/perf/simulator.py _native_cost):
 * (0, prefill_grid, decode_grid, lengths, p_other, p_rate, d_other, d_rate, has_link, kv_lat, kv_bpt, kv_link)
 * (1, (pa, pb, pc), (sa, sb, sc), (la, lb, lc), threshold, pp, pp_over, has_link, kv_lat, kv_bpt, kv_link) */
static int parse_cost(PyObject *pack, Cost *c, Views *v) {
    int64_t kind, has_link;
    if (!PyTuple_Check(pack) || PyTuple_GET_SIZE(pack) < 1 || read_int(pack, 0, &kind) < 0) goto bad;
    memset(c, 0, sizeof(*c));
    c->kind = (int)kind;
    if (kind == COST_TABLE) {
        if (PyTuple_GET_SIZE(pack) != 12) goto bad;
        Py_buffer *b;
        if (!(c->nx = get_buffer(v, PyTuple_GET_ITEM(pack, 1), 8, -1, 0, "prefill grid"))) return -1;
        b = &v->views[v->count - 1]; c->nnx = b->len / 8;
        if (!(c->bx = get_buffer(v, PyTuple_GET_ITEM(pack, 2), 8, -1, 0, "decode grid"))) return -1;
        b = &v->views[v->count - 1]; c->nbx = b->len / 8;
        if (!(c->len = get_buffer(v, PyTuple_GET_ITEM(pack, 3), 8, -1, 0, "lengths"))) return -1;
        b = &v->views[v->count - 1]; c->nlen = b->len / 8;
        if (c->nnx < 2 || c->nbx < 2 || c->nlen < 2) goto bad;
        if (!(c->p_other = get_buffer(v, PyTuple_GET_ITEM(pack, 4), 8, c->nnx * c->nlen, 0, "p_other"))) return -1;
        if (!(c->p_rate = get_buffer(v, PyTuple_GET_ITEM(pack, 5), 8, c->nnx * c->nlen, 0, "p_rate"))) return -1;
        if (!(c->d_other = get_buffer(v, PyTuple_GET_ITEM(pack, 6), 8, c->nbx * c->nlen, 0, "d_other"))) return -1;
        if (!(c->d_rate = get_buffer(v, PyTuple_GET_ITEM(pack, 7), 8, c->nbx * c->nlen, 0, "d_rate"))) return -1;
        int_segment(c->bx, c->nbx, 1, &c->w_one);
        if (read_int(pack, 8, &has_link) < 0 || read_double(pack, 9, &c->kv_lat) < 0
            || read_double(pack, 10, &c->kv_bpt) < 0 || read_double(pack, 11, &c->kv_link) < 0) return -1;
    } else if (kind == COST_DISTSERVE) {
        if (PyTuple_GET_SIZE(pack) != 11) goto bad;
        double *dst[3][3] = {{&c->pa, &c->pb, &c->pc}, {&c->sa, &c->sb, &c->sc}, {&c->la, &c->lb, &c->lc}};
        for (int q = 0; q < 3; q++) {
            PyObject *tri = PyTuple_GET_ITEM(pack, 1 + q);
            if (!PyTuple_Check(tri) || PyTuple_GET_SIZE(tri) != 3) goto bad;
            for (int r = 0; r < 3; r++)
                if (read_double(tri, r, dst[q][r]) < 0) return -1;
        }
        if (read_int(pack, 4, &c->thr) < 0 || read_int(pack, 5, &c->pp) < 0 || read_double(pack, 6, &c->pp_over) < 0
            || read_int(pack, 7, &has_link) < 0 || read_double(pack, 8, &c->kv_lat) < 0
            || read_double(pack, 9, &c->kv_bpt) < 0 || read_double(pack, 10, &c->kv_link) < 0) return -1;
        if (c->pp < 1) goto bad;
    } else {
        goto bad;
    }
    c->has_link = (int)has_link;
    return 0;
bad:
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "malformed cost pack");
    return -1;
}

static void free_sim(Sim *s) {
    if (s->engines) {
        for (int g = 0; g < s->nengines; g++) {
            Engine *e = &s->engines[g];
            free(e->waiting.a);
            free(e->pending.a);
            if (e->lanes) {
                for (int l = 0; l < e->pp; l++) {
                    free(e->lanes[l].heap);
                    free(e->lanes[l].prefilling.a);
                }
            }
            free(e->lanes);
            free(e->stage_free);
        }
    }
    for (size_t q = 0; q < s->hlen; q++) free(s->heap[q].chunks);
    free(s->heap);
    free(s->engines);
    free(s->dirty);
    free(s->is_dirty);
    free(s->prefill_engine_of);
    free(s->w.flag);
    free(s->w.due);
}

PyDoc_STRVAR(run_doc,
"run(inp, out, arrival, first, finish, rejected, prefill_inst, decode_inst, pools, watch, next_send, think_s)\n"
"\n"
"Run the simulation (planner.perf.simulator._Sim.run) in C. inp, out: int64 arrays; arrival, first,\n"
"finish: float64 arrays (arrival is written by a closed loop, first/finish start as NaN); rejected: uint8;\n"
"prefill_inst, decode_inst: int64 (start as -1). pools: tuples (instances, phase, budget or -1, chunked,\n"
"max_batch, kv_cap, pp, routing, cost pack). watch: None or (ttft_limit, tpot_limit, ttft_wait_s,\n"
"next_check, percentile_rule, check_ttft, check_tpot, ttft_needed, tpot_needed, any_needed). next_send:\n"
"-1 for an open loop, else the closed loop's next request to send. Returns (sim_end_s, tokens, stopped,\n"
"kv_peak, busy_s, steps), the last three tuples of tuples per pool and instance.");

static PyObject *simcore_run(PyObject *self, PyObject *args) {
    PyObject *o_inp, *o_out, *o_arr, *o_first, *o_finish, *o_rej, *o_pi, *o_di, *pools, *watch;
    Py_ssize_t next_send;
    double think_s;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOnd", &o_inp, &o_out, &o_arr, &o_first, &o_finish, &o_rej, &o_pi, &o_di,
                          &pools, &watch, &next_send, &think_s))
        return NULL;
    Views v;
    v.count = 0;
    Sim *s = calloc(1, sizeof(Sim));
    if (!s) return PyErr_NoMemory();
    PyObject *result = NULL;
    if (!(s->inp = get_buffer(&v, o_inp, 8, -1, 0, "inp"))) goto done;
    s->n = v.views[0].len / 8;
    Py_ssize_t n = s->n;
    if (!(s->out = get_buffer(&v, o_out, 8, n, 0, "out"))
        || !(s->arrival = get_buffer(&v, o_arr, 8, n, 1, "arrival"))
        || !(s->first = get_buffer(&v, o_first, 8, n, 1, "first"))
        || !(s->finish = get_buffer(&v, o_finish, 8, n, 1, "finish"))
        || !(s->rejected = get_buffer(&v, o_rej, 1, n, 1, "rejected"))
        || !(s->prefill_inst = get_buffer(&v, o_pi, 8, n, 1, "prefill_inst"))
        || !(s->decode_inst = get_buffer(&v, o_di, 8, n, 1, "decode_inst")))
        goto done;
    if (!PyTuple_Check(pools) || PyTuple_GET_SIZE(pools) < 1 || PyTuple_GET_SIZE(pools) > 2) {
        PyErr_SetString(PyExc_ValueError, "pools: a tuple of one or two pools");
        goto done;
    }
    s->npools = (int)PyTuple_GET_SIZE(pools);
    int64_t spec[2][8];
    for (int p = 0; p < s->npools; p++) {
        PyObject *pool = PyTuple_GET_ITEM(pools, p);
        if (!PyTuple_Check(pool) || PyTuple_GET_SIZE(pool) != 9) {
            PyErr_SetString(PyExc_ValueError, "pool: a tuple of 9 items");
            goto done;
        }
        for (int q = 0; q < 8; q++)
            if (read_int(pool, q, &spec[p][q]) < 0) goto done;
        if (spec[p][0] < 1 || spec[p][6] < 1 || spec[p][1] < 0 || spec[p][1] > 2) {
            PyErr_SetString(PyExc_ValueError, "pool: bad instances, phase or stages");
            goto done;
        }
        if (parse_cost(PyTuple_GET_ITEM(pool, 8), &s->costs[p], &v) < 0) goto done;
        s->pool_first[p] = s->nengines;
        s->pool_count[p] = (int)spec[p][0];
        s->pool_routing[p] = (int)spec[p][7];
        s->nengines += (int)spec[p][0];
    }
    s->decode_pool = s->npools == 2 ? 1 : -1;
    s->closed = next_send >= 0;
    s->next_send = next_send;
    s->think_s = think_s;
    if (watch != Py_None) {
        Watch *w = &s->w;
        int64_t flags[3], counts[3];
        if (!PyTuple_Check(watch) || PyTuple_GET_SIZE(watch) != 10) {
            PyErr_SetString(PyExc_ValueError, "watch: a tuple of 10 items");
            goto done;
        }
        if (read_double(watch, 0, &w->ttft_limit) < 0 || read_double(watch, 1, &w->tpot_limit) < 0
            || read_double(watch, 2, &w->ttft_wait_s) < 0 || read_double(watch, 3, &w->next_check) < 0)
            goto done;
        for (int q = 0; q < 3; q++)
            if (read_int(watch, 4 + q, &flags[q]) < 0 || read_int(watch, 7 + q, &counts[q]) < 0) goto done;
        w->percentile_rule = (int)flags[0];
        w->check_ttft = (int)flags[1];
        w->check_tpot = (int)flags[2];
        w->ttft_needed = counts[0];
        w->tpot_needed = counts[1];
        w->any_needed = counts[2];
        s->has_watch = 1;
    }
    if (setjmp(s->oom)) {
        PyErr_NoMemory();
        goto done;
    }
    s->engines = calloc((size_t)s->nengines, sizeof(Engine));
    s->dirty = malloc(sizeof(int) * (size_t)s->nengines);
    s->is_dirty = calloc((size_t)s->nengines, 1);
    s->prefill_engine_of = malloc(sizeof(int) * (size_t)(n ? n : 1));
    if (s->has_watch) s->w.flag = calloc((size_t)(n ? n : 1), 1);
    if (!s->engines || !s->dirty || !s->is_dirty || !s->prefill_engine_of || (s->has_watch && !s->w.flag))
        longjmp(s->oom, 1);
    for (Py_ssize_t r = 0; r < n; r++) s->prefill_engine_of[r] = -1;
    for (int p = 0; p < s->npools; p++) {
        for (int j = 0; j < s->pool_count[p]; j++) {
            Engine *e = &s->engines[s->pool_first[p] + j];
            e->pool = p;
            e->index = j;
            e->phase = (int)spec[p][1];
            e->budget = spec[p][2] < 0 ? NO_LIMIT : spec[p][2];
            e->chunked = (int)spec[p][3];
            e->max_batch = spec[p][4];
            e->kv_cap = spec[p][5];
            e->pp = (int)spec[p][6];
            e->cost = &s->costs[p];
            e->wake_at = -1.0;
            e->lanes = calloc((size_t)e->pp, sizeof(Lane));
            e->stage_free = calloc((size_t)e->pp, sizeof(double));
            if (!e->lanes || !e->stage_free) longjmp(s->oom, 1);
        }
    }
    double end = 0.0;
    int failed;
    Py_BEGIN_ALLOW_THREADS  /* run_loop touches no Python object: other threads may run meanwhile */
    failed = run_guarded(s, &end);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    {
        PyObject *peaks = PyTuple_New(s->npools), *busy = PyTuple_New(s->npools), *steps = PyTuple_New(s->npools);
        if (!peaks || !busy || !steps) {
            Py_XDECREF(peaks); Py_XDECREF(busy); Py_XDECREF(steps);
            goto done;
        }
        for (int p = 0; p < s->npools; p++) {
            PyObject *a = PyTuple_New(s->pool_count[p]), *b = PyTuple_New(s->pool_count[p]),
                     *c = PyTuple_New(s->pool_count[p]);
            if (a) PyTuple_SET_ITEM(peaks, p, a);
            if (b) PyTuple_SET_ITEM(busy, p, b);
            if (c) PyTuple_SET_ITEM(steps, p, c);
            if (!a || !b || !c) {
                Py_DECREF(peaks); Py_DECREF(busy); Py_DECREF(steps);
                goto done;
            }
            for (int j = 0; j < s->pool_count[p]; j++) {
                Engine *e = &s->engines[s->pool_first[p] + j];
                PyObject *x = PyLong_FromLongLong(e->kv_peak), *y = PyFloat_FromDouble(e->busy_s),
                         *z = PyLong_FromLongLong(e->steps);
                if (x) PyTuple_SET_ITEM(a, j, x);
                if (y) PyTuple_SET_ITEM(b, j, y);
                if (z) PyTuple_SET_ITEM(c, j, z);
                if (!x || !y || !z) {
                    Py_DECREF(peaks); Py_DECREF(busy); Py_DECREF(steps);
                    goto done;
                }
            }
        }
        result = Py_BuildValue("(dLiNNN)", end, (long long)s->tokens, s->stopped, peaks, busy, steps);
    }
done:
    free_sim(s);
    free(s);
    free_views(&v);
    return result;
}

static PyMethodDef simcore_methods[] = {
    {"run", simcore_run, METH_VARARGS, run_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef simcore_module = {
    PyModuleDef_HEAD_INIT, "_simcore",
    "The serving simulator's event loop in C, equal float for float to planner.perf.simulator's Python loop.",
    -1, simcore_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__simcore(void) { return PyModule_Create(&simcore_module); }
