/* sparsecheck-fused: the compare of one tensor pair in one pass per chunk.
 *
 * Mirrors sparsecheck.metrics._equality.compare_arrays (the numpy reference) entry for entry:
 * the same chunks of CHUNK entries, the same sparse/dense choice per chunk, the same sampled
 * |delta| histogram, the same counts.  Same-dtype bfloat16, float16, float32 and float64 pairs
 * only; sparsecheck uses numpy for every other pair.  The GIL is released during the pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#define CHUNK 65536
/* x86-64: an AVX2 build of the hot loops beside the baseline one, chosen when loaded. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define TARGETS __attribute__((target_clones("avx2", "default")))
#else
#define TARGETS
#endif
#define BLOCK 2048
#define DROP_SPAN (16 * CHUNK)
#define SPARSE 32
#define HIST_SAMPLES 256
#define HIST_SHIFT 21
#define HIST_BINS 1024
#define HIST_NONFINITE (0x7F800000u >> HIST_SHIFT)

enum { KIND_BF16 = 0, KIND_F16 = 1, KIND_F32 = 2, KIND_F64 = 3 };
enum { POLICY_EXACT = 0, POLICY_ATOL = 1, POLICY_RTOL = 2 };

static inline float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t bits_of_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* IEEE half to float, exactly (subnormals, inf, NaN). */
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1F) return f32_from_bits(sign | 0x7F800000u | (man << 13));
    if (exp != 0) return f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return f32_from_bits(sign);
    float value = (float)man * (1.0f / 16777216.0f); /* man * 2^-24, exact */
    return (h & 0x8000u) ? -value : value;
}

/* A float64 value as float32 rounded to odd (the neighbour with an odd last bit when inexact;
 * beyond float32's range inf): rounding that to bfloat16 is rounding the float64 directly
 * (sparsecheck._dtypes._float32_round_to_odd). */
static inline float f32_round_to_odd(double x) {
    float f = (float)x;
    uint32_t u = bits_of_f32(f);
    if (isfinite(f) && (double)f != x && (u & 1u) == 0) {
        u = fabs((double)f) > fabs(x) ? u - 1 : u + 1;
        f = f32_from_bits(u);
    }
    return f;
}

/* sparsecheck._dtypes.round_to_bfloat16_bits of one float32 value. */
static inline uint16_t bf16_round(float f) {
    if (f != f) return 0x7FC0;
    uint32_t u = bits_of_f32(f);
    return (uint16_t)((u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16);
}

/* The same for one float64 value, rounded directly: to float32 rounding to odd first (float32
   keeps 16 more bits than bfloat16), so float32's ties are never rounded a second time. */
static inline uint16_t bf16_round_f64(double d) {
    if (d != d) return 0x7FC0;
    float f = (float)d;
    if (isfinite(f) && (double)f != d) {
        uint32_t u = bits_of_f32(f);
        if (!(u & 1u)) u = fabs((double)f) > fabs(d) ? u - 1u : u + 1u;
        f = f32_from_bits(u);
    }
    return bf16_round(f);
}

#define BF16_ROUND(x) _Generic((x), double: bf16_round_f64, default: bf16_round)(x)
/* The same for finite values, without the NaN branch (float32: vectorizable). */
static inline uint16_t bf16_round_finite(float f) {
    uint32_t u = bits_of_f32(f);
    return (uint16_t)((u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16);
}
#define FINITE_BF16_ROUND(x) _Generic((x), double: bf16_round_f64, default: bf16_round_finite)(x)


static float f16_table[65536];
static uint8_t popcount8[256];

typedef struct {
    int policy, bf16_check;
    double tol;
    long long changed, moved, changed_if_bf16;
    double max_abs_delta;
    int64_t *histogram;
    int dense;
    /* chunk scratch, CHUNK entries each */
    uint32_t *where;
    void *gathered; /* 2 x S */
    uint8_t *hit; /* BLOCK flag bytes */
    uint8_t *hitbits, *nanbits, *differbits; /* CHUNK bits each */
    uint8_t *cand; /* CHUNK bytes: where bits differ */
} State;

/* Bytes (0/1) to little-order bits (out[n/8] is overwritten; a partial last byte is zeroed first). */
static void pack(const uint8_t *hit, size_t n, uint8_t *out) {
    size_t whole = n / 8;
    for (size_t j = 0; j < whole; j++) {
        uint64_t x;
        memcpy(&x, hit + 8 * j, 8);
        out[j] = (uint8_t)((x * 0x0102040810204080ull) >> 56);
    }
    if (n % 8) out[whole] = 0;
    for (size_t k = whole * 8; k < n; k++) out[whole] |= (uint8_t)(hit[k] << (k & 7));
}

/* Bit `bit` of each flag byte to little-order bits (as pack, for the flags judge writes). */
static void pack_flag(const uint8_t *flags, size_t n, int bit, uint8_t *out) {
    size_t whole = n / 8;
    for (size_t j = 0; j < whole; j++) {
        uint64_t x;
        memcpy(&x, flags + 8 * j, 8);
        x = (x >> bit) & 0x0101010101010101ull;
        out[j] = (uint8_t)((x * 0x0102040810204080ull) >> 56);
    }
    if (n % 8) out[whole] = 0;
    for (size_t k = whole * 8; k < n; k++) out[whole] |= (uint8_t)(((flags[k] >> bit) & 1u) << (k & 7));
}

/* Judge n aligned entries (a whole chunk, or the gathered entries of it whose bits differ) in
 * blocks of BLOCK that stay in the L1 cache, one fused loop per block writing a flag byte per
 * entry: bit 0 the entry moved, bit 1 changed under the reference's rule for a chunk without a
 * NaN |Δ|, bit 2 under its rule for a chunk with one (chosen at the chunk's end into
 * s->hitbits).  Returns the entries that moved; adds to the counts in s.  S the stored type, U
 * its bits, W the compute type (float32; float64 for float64), UW W's bits, INF +inf's bits,
 * WIDEN(x) the stored value as W, TO_F32(w) w as the float32 that rounds to w's bfloat16.
 * block_##NAME is inlined with constant policy and bf16_check, so each variant's loop is
 * branch-free and the compiler vectorizes it. */
#define DEFINE_KIND(NAME, S, U, W, UW, INF, EXP, WIDEN, ABS, TO_F32)                                     \
    /* A block without NaN or ±inf on either side (the common case), in one lean loop: there     \
     * |Δ| is never NaN, an entry moved iff |Δ| != 0 (bits that differ with |Δ| == 0 are ±0),   \
     * both rules agree, and a change beyond the bound implies a move.  The check for such a    \
     * value rides in the same loop; where there is one it returns 0, having changed only the   \
     * flags, and block_##NAME judges the block again in full. */                              \
    static inline __attribute__((always_inline)) int finite_block_##NAME(                        \
        const S *restrict A, const S *restrict B, size_t len, uint8_t *restrict flags, const int policy, \
        const int bf16_check, const W tol, unsigned *count, UW *top, long long *bf16) {           \
        const U *restrict UA = (const U *)A, *restrict UB = (const U *)B;                        \
        U special = 0;                                                                           \
        unsigned moved = 0;                                                                      \
        UW blocktop = 0;                                                                         \
        long long rounded = 0;                                                                   \
        for (size_t k = 0; k < len; k++) {                                                       \
            special |= (U)(((UA[k] & (U)EXP) == (U)EXP) | ((UB[k] & (U)EXP) == (U)EXP));         \
            W x = WIDEN(A[k]), y = WIDEN(B[k]);                                                  \
            W d = ABS(x - y);                                                                    \
            UW db;                                                                               \
            memcpy(&db, &d, sizeof db); /* |Δ| >= 0: bits order as values */                     \
            W bound = tol;                                                                       \
            if (policy == POLICY_RTOL) {                                                         \
                W ax = ABS(x), ay = ABS(y);                                                      \
                bound = tol * (ax > ay ? ax : ay);                                               \
            }                                                                                    \
            uint8_t differ = (uint8_t)(d != 0);                                                  \
            uint8_t hit = policy == POLICY_EXACT ? differ : (uint8_t)(d > bound);                \
            moved += differ;                                                                     \
            blocktop = db > blocktop ? db : blocktop;                                            \
            flags[k] = (uint8_t)(differ | (hit << 1) | (hit << 2));                              \
            if (bf16_check) {                                                                    \
                uint16_t ra = FINITE_BF16_ROUND(x), rb = FINITE_BF16_ROUND(y);                   \
                rounded += (ra != rb) & (((ra | rb) & 0x7FFFu) != 0);                            \
            }                                                                                    \
        }                                                                                        \
        if (special) return 0;                                                                   \
        *count += moved;                                                                         \
        *top = blocktop > *top ? blocktop : *top;                                                  \
        *bf16 += rounded;                                                                        \
        return 1;                                                                                \
    }                                                                                            \
    /* Returns 1 where the block had no NaN or ±inf (then bit 2 of each flag equals bit 1). */ \
    static inline __attribute__((always_inline)) int block_##NAME(                              \
        const S *restrict A, const S *restrict B, size_t len, uint8_t *restrict flags, const int policy, \
        const int bf16_check, const W tol, unsigned *count, UW *top, UW *nans, long long *bf16) {  \
        if (finite_block_##NAME(A, B, len, flags, policy, bf16_check, tol, count, top, bf16)) return 1; \
        const U *restrict UA = (const U *)A, *restrict UB = (const U *)B;                        \
        unsigned moved = 0;                                                                      \
        UW blocktop = 0, blocknan = 0;                                                           \
        long long rounded = 0;                                                                   \
        for (size_t k = 0; k < len; k++) {                                                       \
            W x = WIDEN(A[k]), y = WIDEN(B[k]);                                                  \
            W d = ABS(x - y);                                                                    \
            UW db;                                                                               \
            memcpy(&db, &d, sizeof db); /* |Δ| >= 0: bits order as values */                     \
            uint8_t differ = (uint8_t)((UA[k] != UB[k]) & (db != 0));                            \
            moved += differ;                                                                     \
            blocknan |= (UW)(db > (UW)INF);                                                      \
            /* the largest moved |Δ|; a NaN one counts as inf */                                  \
            UW v = differ ? (db < (UW)INF ? db : (UW)INF) : 0;                                   \
            blocktop = v > blocktop ? v : blocktop;                                              \
            uint8_t plain = differ, nanrule = differ;                                            \
            if (policy != POLICY_EXACT) {                                                        \
                /* a change to or from NaN or ±inf is changed under every policy */              \
                uint8_t wild = (uint8_t)(differ & !((x - x == 0) & (y - y == 0)));               \
                W bound = tol;                                                                   \
                if (policy == POLICY_RTOL) {                                                     \
                    W ax = ABS(x), ay = ABS(y);                                                  \
                    bound = (ax != ax || ay != ay) ? (W)NAN : tol * (ax > ay ? ax : ay);         \
                }                                                                                \
                plain = (uint8_t)((d > bound) | wild);                                           \
                nanrule = (uint8_t)((differ & !(d <= bound)) | wild);                            \
            }                                                                                    \
            flags[k] = (uint8_t)(differ | (plain << 1) | (nanrule << 2));                        \
            if (bf16_check) {                                                                    \
                uint16_t ra = BF16_ROUND(x), rb = BF16_ROUND(y);                                 \
                rounded += (ra != rb) & (((ra | rb) & 0x7FFFu) != 0);                            \
            }                                                                                    \
        }                                                                                        \
        *count += moved;                                                                         \
        *top = blocktop > *top ? blocktop : *top;                                                \
        *nans |= blocknan;                                                                       \
        *bf16 += rounded;                                                                        \
        return 0;                                                                                \
    }                                                                                            \
    TARGETS static long long judge_##NAME(State *s, const S *restrict a, const S *restrict b, size_t n) { \
        uint8_t *restrict flags = s->hit;                                                        \
        const W tol = (W)s->tol;                                                                 \
        UW top = 0, nans = 0;                                                                    \
        long long bf16 = 0;                                                                      \
        unsigned moved = 0;                                                                      \
        for (size_t s0 = 0; s0 < n; s0 += BLOCK) {                                               \
            size_t len = n - s0 < BLOCK ? n - s0 : BLOCK;                                        \
            const S *A = a + s0, *B = b + s0;                                                    \
            int finite;                                                                          \
            switch (s->policy * 2 + (s->bf16_check != 0)) {                                      \
            case 0: finite = block_##NAME(A, B, len, flags, POLICY_EXACT, 0, tol, &moved, &top, &nans, &bf16); break; \
            case 1: finite = block_##NAME(A, B, len, flags, POLICY_EXACT, 1, tol, &moved, &top, &nans, &bf16); break; \
            case 2: finite = block_##NAME(A, B, len, flags, POLICY_ATOL, 0, tol, &moved, &top, &nans, &bf16); break; \
            case 3: finite = block_##NAME(A, B, len, flags, POLICY_ATOL, 1, tol, &moved, &top, &nans, &bf16); break; \
            case 4: finite = block_##NAME(A, B, len, flags, POLICY_RTOL, 0, tol, &moved, &top, &nans, &bf16); break; \
            default: finite = block_##NAME(A, B, len, flags, POLICY_RTOL, 1, tol, &moved, &top, &nans, &bf16); break; \
            }                                                                                    \
            pack_flag(flags, len, 1, s->hitbits + s0 / 8);                                      \
            if (finite)                                                                          \
                memcpy(s->nanbits + s0 / 8, s->hitbits + s0 / 8, (len + 7) / 8);                 \
            else                                                                                 \
                pack_flag(flags, len, 2, s->nanbits + s0 / 8);                                   \
            if (moved < 2 * HIST_SAMPLES) /* else the histogram samples with a stride > 1 */    \
                pack_flag(flags, len, 0, s->differbits + s0 / 8);                                \
        }                                                                                        \
        if (moved == 0) return 0;                                                                \
        size_t nbytes = (n + 7) / 8;                                                             \
        if (nans) memcpy(s->hitbits, s->nanbits, nbytes);                                        \
        long long changed = 0;                                                                   \
        for (size_t j = 0; j < nbytes; j++) changed += popcount8[s->hitbits[j]];        \
        W largest;                                                                               \
        memcpy(&largest, &top, sizeof largest);                                                  \
        s->changed += changed;                                                                   \
        s->moved += moved;                                                                       \
        s->changed_if_bf16 += bf16;                                                              \
        if ((double)largest > s->max_abs_delta) s->max_abs_delta = (double)largest;              \
        size_t stride = 1;                                                                       \
        if (moved > HIST_SAMPLES) stride = (size_t)((moved / HIST_SAMPLES) | 1);                 \
        for (size_t k = 0; k < n; k += stride) {                                                 \
            if (stride == 1 && !((s->differbits[k >> 3] >> (k & 7)) & 1u)) continue;             \
            W d = ABS(WIDEN(a[k]) - WIDEN(b[k]));                                                \
            uint32_t bin = (bits_of_f32((float)d) >> HIST_SHIFT) & (HIST_BINS - 1);              \
            if (bin != 0 && bin < HIST_NONFINITE) s->histogram[bin] += (int64_t)stride;          \
        }                                                                                        \
        return (long long)moved;                                                                 \
    }                                                                                            \
    TARGETS static void compare_##NAME(State *s, const S *a, const S *b, size_t size, uint8_t *packed) { \
        const U *ua = (const U *)a, *ub = (const U *)b;                                          \
        S *ga = (S *)s->gathered, *gb = ga + CHUNK;                                              \
        uint8_t *restrict cand = s->cand;                                                        \
        for (size_t start = 0; start < size; start += CHUNK) {                                   \
            size_t m = size - start < CHUNK ? size - start : CHUNK;                              \
            if (!s->dense) {                                                                     \
                const U *restrict UA = ua + start, *restrict UB = ub + start;                    \
                for (size_t i = 0; i < m; i++) cand[i] = UA[i] != UB[i];                         \
                unsigned candidates = 0;                                                         \
                for (size_t i = 0; i < m; i++) candidates += cand[i];                            \
                if (candidates == 0) continue;                                                   \
                if (candidates <= m / SPARSE) {                                                  \
                    size_t c = 0;                                                                \
                    pack(cand, m, s->differbits);                                                \
                    for (size_t w = 0; w < (m + 63) / 64; w++) {                                 \
                        uint64_t x = 0;                                                          \
                        memcpy(&x, s->differbits + 8 * w, (m - 64 * w) >= 64 ? 8 : (m - 64 * w + 7) / 8); \
                        while (x) {                                                              \
                            size_t i = start + 64 * w + (size_t)__builtin_ctzll(x);              \
                            s->where[c] = (uint32_t)i; ga[c] = a[i]; gb[c] = b[i]; c++;          \
                            x &= x - 1;                                                          \
                        }                                                                        \
                    }                                                                            \
                    if (judge_##NAME(s, ga, gb, c))                                              \
                        for (size_t k = 0; k < c; k++)                                           \
                            packed[s->where[k] >> 3] |=                                          \
                                (uint8_t)(((s->hitbits[k >> 3] >> (k & 7)) & 1u) << (s->where[k] & 7)); \
                    continue;                                                                    \
                }                                                                                \
            }                                                                                    \
            long long moved = judge_##NAME(s, a + start, b + start, m);                          \
            s->dense = moved > (long long)(m / SPARSE);                                          \
            if (moved) memcpy(packed + start / 8, s->hitbits, (m + 7) / 8);                    \
        }                                                                                        \
    }

#define WIDEN_BF16(x) f32_from_bits((uint32_t)(x) << 16)
#define WIDEN_F16(x) f16_table[x]
#define WIDEN_SAME(x) (x)
DEFINE_KIND(bf16, uint16_t, uint16_t, float, int32_t, 0x7F800000, 0x7F80u, WIDEN_BF16, fabsf, (float))
DEFINE_KIND(f16, uint16_t, uint16_t, float, int32_t, 0x7F800000, 0x7C00u, WIDEN_F16, fabsf, (float))
DEFINE_KIND(f32, float, uint32_t, float, int32_t, 0x7F800000, 0x7F800000u, WIDEN_SAME, fabsf, (float))
DEFINE_KIND(f64, double, uint64_t, double, int64_t, 0x7FF0000000000000ll, 0x7FF0000000000000ull, WIDEN_SAME, fabs, f32_round_to_odd)

static void compare_span(State *s, int kind, const char *a, const char *b, size_t size, uint8_t *packed) {
    switch (kind) {
    case KIND_BF16: compare_bf16(s, (const uint16_t *)a, (const uint16_t *)b, size, packed); break;
    case KIND_F16: compare_f16(s, (const uint16_t *)a, (const uint16_t *)b, size, packed); break;
    case KIND_F32: compare_f32(s, (const float *)a, (const float *)b, size, packed); break;
    default: compare_f64(s, (const double *)a, (const double *)b, size, packed); break;
    }
}

/* Drop the whole pages of [from, to) from this process's mappings (file-backed, read-only maps
 * only: the pages come back from the file if touched again). */
static void drop_pages(const char *from, const char *to) {
#ifdef MADV_DONTNEED
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)from + page - 1) / page * page, end = (uintptr_t)to / page * page;
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
#else
    (void)from; (void)to;
#endif
}

/* Compare in spans of DROP_SPAN entries (whole chunks, so the chunk-by-chunk results are the
 * same); with drop_behind, the pages of both maps behind each span are dropped, so a tensor of
 * any size keeps at most a span of each side mapped. */
static void compare_all(State *s, int kind, const void *a, const void *b, size_t size, uint8_t *packed,
                        int drop_behind, size_t width) {
    const char *ca = a, *cb = b;
    for (size_t start = 0; start < size; start += DROP_SPAN) {
        size_t n = size - start < DROP_SPAN ? size - start : DROP_SPAN;
        compare_span(s, kind, ca + start * width, cb + start * width, n, packed + start / 8);
        if (drop_behind) {
            drop_pages(ca + start * width, ca + (start + n) * width);
            drop_pages(cb + start * width, cb + (start + n) * width);
        }
    }
}

static PyObject *py_compare(PyObject *self, PyObject *args) {
    Py_buffer a, b, packed, hist;
    int kind, policy, bf16_check, drop_behind = 0;
    double tol;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*iidpw*w*|p", &a, &b, &kind, &policy, &tol, &bf16_check, &packed, &hist,
                          &drop_behind))
        return NULL;
    PyObject *result = NULL;
    static const Py_ssize_t width[] = {2, 2, 4, 8};
    if (kind < 0 || kind > 3 || policy < 0 || policy > 2) {
        PyErr_SetString(PyExc_ValueError, "unknown kind or policy");
        goto done;
    }
    Py_ssize_t size = a.len / width[kind];
    if (b.len != a.len || packed.len != (size + 7) / 8 || hist.len != HIST_BINS * 8) {
        PyErr_SetString(PyExc_ValueError, "buffer sizes do not match");
        goto done;
    }
    State s = {policy, bf16_check, tol, 0, 0, 0, 0.0, (int64_t *)hist.buf, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    s.where = malloc(CHUNK * sizeof(uint32_t));
    s.gathered = malloc(2 * CHUNK * sizeof(double));
    s.hit = malloc(BLOCK);
    s.cand = malloc(CHUNK);
    s.hitbits = malloc(CHUNK / 8);
    s.nanbits = malloc(CHUNK / 8);
    s.differbits = malloc(CHUNK / 8);
    if (!s.where || !s.gathered || !s.hit || !s.hitbits || !s.nanbits || !s.differbits || !s.cand) {
        PyErr_NoMemory();
    } else {
        Py_BEGIN_ALLOW_THREADS
        memset(packed.buf, 0, (size_t)packed.len);
        compare_all(&s, kind, a.buf, b.buf, (size_t)size, (uint8_t *)packed.buf, drop_behind, (size_t)width[kind]);
        Py_END_ALLOW_THREADS
        result = Py_BuildValue("LLLd", s.changed, s.moved, s.changed_if_bf16, s.max_abs_delta);
    }
    free(s.where); free(s.gathered); free(s.hit); free(s.hitbits); free(s.nanbits); free(s.differbits); free(s.cand);
done:
    PyBuffer_Release(&a); PyBuffer_Release(&b); PyBuffer_Release(&packed); PyBuffer_Release(&hist);
    return result;
}

static PyMethodDef methods[] = {
    {"compare", py_compare, METH_VARARGS,
     "compare(a, b, kind, policy, tol, bf16_check, packed, histogram, drop_behind=False) -> (changed, "
     "moved, changed_if_bf16, max_abs_delta); adds to histogram, fills packed; drop_behind: a and b "
     "are read-only file maps whose pages may be dropped behind the pass."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sparsecheck_fused", NULL, -1, methods};

PyMODINIT_FUNC PyInit_sparsecheck_fused(void) {
    for (uint32_t h = 0; h < 65536; h++) f16_table[h] = f16_to_f32((uint16_t)h);
    for (unsigned v = 0; v < 256; v++) popcount8[v] = (uint8_t)((v & 1) + popcount8[v >> 1]);
    return PyModule_Create(&module);
}
