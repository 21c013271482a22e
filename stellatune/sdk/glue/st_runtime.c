/*
 * st_runtime.c: the SDK's freestanding runtime: math, a flat-JSON reader and writer, and the
 * mem* functions clang may emit calls to. Compiled into every build (core module, component,
 * native .so) so that all three compute with the same code.
 */
#include "stellatune_sdk.h"
#include "st_glue.h"

/* --- memory -------------------------------------------------------------------------------- */

#if defined(__wasm__)
/* The native build uses libc's. Loops are written so clang cannot turn them back into calls to
 * these very functions (bulk-memory gives it memory.copy/memory.fill instead). */
void *memcpy(void *dst, const void *src, size_t n) {
    return __builtin_memmove(dst, src, n);
}
void *memmove(void *dst, const void *src, size_t n) {
    return __builtin_memmove(dst, src, n);
}
void *memset(void *dst, int c, size_t n) {
    return __builtin_memset(dst, c, n);
}
#endif

/* --- math ------------------------------------------------------------------------------------
 * Range reduction plus Taylor series, all in double: slower than libm and more than accurate
 * enough for coefficients computed between blocks. */

typedef union {
    double d;
    uint64_t u;
} st_bits64;

static const double LN2_HI = 6.93147180369123816490e-01;
static const double LN2_LO = 1.90821492927058770002e-10;
static const double INV_LN2 = 1.44269504088896338700e+00;

static double scale_by_pow2(double x, int k) {
    st_bits64 b;
    while (k > 1023) {
        x *= 8.98846567431157953865e+307; /* 2^1023 */
        k -= 1023;
    }
    while (k < -1022) {
        x *= 2.22507385850720138309e-308; /* 2^-1022 */
        k += 1022;
    }
    b.u = (uint64_t)(k + 1023) << 52;
    return x * b.d;
}

double st_exp(double x) {
    if (x != x) return x;
    if (x > 709.8) return 1.0 / 0.0;
    if (x < -745.2) return 0.0;
    double kf = x * INV_LN2;
    int k = (int)(kf + (kf >= 0 ? 0.5 : -0.5));
    double r = (x - k * LN2_HI) - k * LN2_LO; /* |r| <= ln2/2 */
    /* Horner form of sum r^n/n!, n <= 13: the next term is below 1e-17 relative. */
    double p = 1.0 / 6227020800.0;
    static const double inv_fact[13] = {
        1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
        1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    for (int i = 0; i < 13; i++) p = p * r + inv_fact[i];
    return scale_by_pow2(p, k);
}

double st_log(double x) {
    if (!(x > 0)) return x == 0 ? -1.0 / 0.0 : 0.0 / 0.0;
    if (x == 1.0 / 0.0) return x;
    int e = 0;
    if (x < 2.2250738585072014e-308) { /* subnormal: scale into the normal range first */
        x *= 18014398509481984.0;        /* 2^54 */
        e = -54;
    }
    st_bits64 b = {x};
    e += (int)((b.u >> 52) & 0x7ff) - 1023;
    b.u = (b.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* m in [1, 2) */
    double m = b.d;
    if (m > 1.41421356237309504880) {
        m *= 0.5;
        e += 1;
    }
    /* log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: odd powers up to s^23. */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, sum = 0.0;
    for (int n = 23; n >= 3; n -= 2) sum = (sum + 1.0 / n) * s2;
    double log_m = 2.0 * s * (1.0 + sum);
    return e * LN2_HI + (e * LN2_LO + log_m);
}

/* sin and cos of |r| <= pi/4 by Taylor series to r^17 / r^18. */
static double sin_kernel(double r) {
    double r2 = r * r, p = 0.0;
    for (int n = 17; n >= 3; n -= 2) p = (p + 1.0) * -r2 / (double)(n * (n - 1));
    return r * (1.0 + p);
}

static double cos_kernel(double r) {
    double r2 = r * r, p = 0.0;
    for (int n = 18; n >= 2; n -= 2) p = (p + 1.0) * -r2 / (double)(n * (n - 1));
    return 1.0 + p;
}

static const double PIO2_HI = 1.57079632673412561417e+00;
static const double PIO2_LO = 6.07710050650619224932e-11;

/* x = q*(pi/2) + r; returns r, stores q mod 4. */
static double reduce_quadrant(double x, int *q) {
    double qf = x * 6.36619772367581382433e-01; /* 2/pi */
    long long k = (long long)(qf + (qf >= 0 ? 0.5 : -0.5));
    *q = (int)(k & 3);
    return (x - k * PIO2_HI) - k * PIO2_LO;
}

double st_sin(double x) {
    int q;
    double r = reduce_quadrant(x, &q);
    switch (q) {
    case 0: return sin_kernel(r);
    case 1: return cos_kernel(r);
    case 2: return -sin_kernel(r);
    default: return -cos_kernel(r);
    }
}

double st_cos(double x) {
    int q;
    double r = reduce_quadrant(x, &q);
    switch (q) {
    case 0: return cos_kernel(r);
    case 1: return -sin_kernel(r);
    case 2: return -cos_kernel(r);
    default: return sin_kernel(r);
    }
}

double st_sqrt(double x) {
    return __builtin_sqrt(x); /* f64.sqrt / sqrtsd: IEEE, correctly rounded */
}

float st_db_to_gain(float db) {
    return (float)st_exp((double)db * 0.11512925464970228420); /* ln(10)/20 */
}

/* One lane of the vector versions in stellatune_sdk.h, so scalar and vector callers agree. */
float st_fast_log2f(float x) {
    return st_fast_log2f4(st_splat4(x))[0];
}

float st_fast_exp2f(float x) {
    return st_fast_exp2f4(st_splat4(x))[0];
}

/* --- flat JSON --------------------------------------------------------------------------- */

typedef struct json_cursor {
    const char *p, *end;
} json_cursor;

static void skip_ws(json_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Past a string starting at the opening quote; the raw (escaped) body is [*s, *s + *n). */
static int skip_string(json_cursor *c, const char **s, uint32_t *n) {
    if (c->p >= c->end || *c->p != '"') return -1;
    const char *start = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        if ((unsigned char)*c->p < 0x20) return -1;
        if (*c->p == '\\') c->p++;
        c->p++;
    }
    if (c->p >= c->end) return -1;
    if (s) *s = start;
    if (n) *n = (uint32_t)(c->p - start);
    c->p++;
    return 0;
}

/* Parse a JSON number. A mantissa below 2^53 (15 digits always fit) with |exp10| <= 22 takes one
 * correctly rounded operation; the rest is within a few ulp of double, far below float
 * resolution. */
static int parse_number(json_cursor *c, double *out) {
    const char *p = c->p;
    int neg = 0, digits = 0, exp10 = 0;
    uint64_t mant = 0;
    if (p < c->end && *p == '-') neg = 1, p++;
    if (p >= c->end || *p < '0' || *p > '9') return -1;
    if (*p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9') return -1;
    for (; p < c->end && *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits < 19) mant = mant * 10 + (uint64_t)(*p - '0');
        else exp10++;
    }
    if (p < c->end && *p == '.') {
        p++;
        if (p >= c->end || *p < '0' || *p > '9') return -1;
        for (; p < c->end && *p >= '0' && *p <= '9'; p++) {
            if (digits < 19) mant = mant * 10 + (uint64_t)(*p - '0'), exp10--, digits++;
        }
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        int eneg = 0, e = 0;
        p++;
        if (p < c->end && (*p == '+' || *p == '-')) eneg = (*p == '-'), p++;
        if (p >= c->end || *p < '0' || *p > '9') return -1;
        for (; p < c->end && *p >= '0' && *p <= '9'; p++)
            if (e < 10000) e = e * 10 + (*p - '0');
        exp10 += eneg ? -e : e;
    }
    static const double pow10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                     1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                     1e20, 1e21, 1e22};
    double v = (double)mant;
    /* Beyond 1e22, steps of exact powers of ten: one rounding each, a few ulp in all. */
    while (exp10 > 22 && v != 0 && v < 1e300) v *= pow10[22], exp10 -= 22;
    while (exp10 < -22 && v != 0) v /= pow10[22], exp10 += 22;
    if (exp10 > 22) v = v == 0 ? 0.0 : 1.0 / 0.0;
    else if (exp10 < -22) v = 0.0;
    else v = exp10 >= 0 ? v * pow10[exp10] : v / pow10[-exp10];
    *out = neg ? -v : v;
    c->p = p;
    return 0;
}

/* Past any JSON value (nested objects and arrays by depth, strings honoured). */
static int skip_value(json_cursor *c) {
    double ignored;
    skip_ws(c);
    if (c->p >= c->end) return -1;
    char ch = *c->p;
    if (ch == '"') return skip_string(c, 0, 0);
    if (ch == '-' || (ch >= '0' && ch <= '9')) return parse_number(c, &ignored);
    if (ch == '{' || ch == '[') {
        int depth = 0;
        while (c->p < c->end) {
            ch = *c->p;
            if (ch == '"') {
                if (skip_string(c, 0, 0)) return -1;
                continue;
            }
            if (ch == '{' || ch == '[') depth++;
            if (ch == '}' || ch == ']') depth--;
            c->p++;
            if (depth == 0) return 0;
        }
        return -1;
    }
    static const char *const words[3] = {"true", "false", "null"};
    for (int w = 0; w < 3; w++) {
        uint32_t n = 0;
        while (words[w][n] && c->p + n < c->end && c->p[n] == words[w][n]) n++;
        if (words[w][n] == 0) {
            c->p += n;
            return 0;
        }
    }
    return -1;
}

int st_json_scan(const char *json, uint32_t len, st_json_member_fn fn, void *ctx) {
    json_cursor c = {json, json + len};
    skip_ws(&c);
    if (c.p >= c.end || *c.p != '{') return -1;
    c.p++;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            const char *key;
            uint32_t key_len;
            skip_ws(&c);
            if (skip_string(&c, &key, &key_len)) return -1;
            skip_ws(&c);
            if (c.p >= c.end || *c.p != ':') return -1;
            c.p++;
            skip_ws(&c);
            const char *value = c.p;
            double number = 0;
            int is_number = 0;
            if (c.p < c.end && (*c.p == '-' || (*c.p >= '0' && *c.p <= '9'))) {
                if (parse_number(&c, &number)) return -1;
                is_number = 1;
            } else if (skip_value(&c)) {
                return -1;
            }
            int stop = fn(ctx, key, key_len, is_number, number, value);
            if (stop) return stop;
            skip_ws(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            return -1;
        }
    }
    skip_ws(&c);
    return c.p == c.end ? 0 : -1;
}

int st_key_equals(const char *key, uint32_t key_len, const char *name) {
    uint32_t i = 0;
    for (; i < key_len; i++)
        if (name[i] != key[i]) return 0; /* also stops at name's NUL */
    return name[i] == 0;
}

typedef struct number_lookup {
    const char *key;
    double value;
    int found; /* 1 number, -1 not a number */
} number_lookup;

static int lookup_member(void *ctx, const char *key, uint32_t key_len, int is_number,
                         double number, const char *value) {
    (void)value;
    number_lookup *l = ctx;
    if (st_key_equals(key, key_len, l->key)) {
        l->found = is_number ? 1 : -1;
        l->value = number;
    }
    return 0;
}

int st_json_number(const char *json, uint32_t len, const char *key, double *out) {
    number_lookup l = {key, 0, 0};
    if (st_json_scan(json, len, lookup_member, &l)) return -1;
    if (l.found == 1) *out = l.value;
    return l.found;
}

typedef struct key_check {
    const st_param *params;
    uint32_t count, first_unknown;
    uint32_t seen;
} key_check;

static int check_member(void *ctx, const char *key, uint32_t key_len, int is_number,
                        double number, const char *value) {
    (void)is_number, (void)number, (void)value;
    key_check *k = ctx;
    uint32_t index = k->seen++;
    for (uint32_t i = 0; i < k->count; i++)
        if (st_key_equals(key, key_len, k->params[i].name)) return 0;
    if (k->first_unknown == k->count) k->first_unknown = index;
    return 0;
}

int st_json_check_keys(const char *json, uint32_t len, const st_param *params, uint32_t count) {
    key_check k = {params, count, count, 0};
    if (st_json_scan(json, len, check_member, &k)) return -1;
    return (int)k.first_unknown;
}

/* --- text output (no libc printf) --------------------------------------------------------- */

uint32_t st_put_str(char *buf, uint32_t pos, uint32_t cap, const char *s) {
    while (*s && pos + 1 < cap) buf[pos++] = *s++;
    buf[pos < cap ? pos : cap - 1] = 0;
    return pos;
}

static uint32_t put_digits(char *buf, uint32_t pos, uint32_t cap, uint64_t v, int min_width) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < min_width);
    while (n && pos + 1 < cap) buf[pos++] = tmp[--n];
    buf[pos < cap ? pos : cap - 1] = 0;
    return pos;
}

/* `digits` significant digits of |x| (finite, non-zero): mantissa and decimal exponent. */
static void decimal_digits(double x, int digits, uint64_t *mant, int *exp10) {
    static const double pow10[18] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8,
                                     1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
    int e = 0;
    while (x >= 10.0) x /= 10.0, e++;
    while (x < 1.0) x *= 10.0, e--;
    uint64_t m = (uint64_t)(x * pow10[digits - 1] + 0.5);
    if (m >= (uint64_t)pow10[digits]) m /= 10, e++;
    *mant = m;
    *exp10 = e;
}

/* The shortest decimal (6..9 significant digits) that reads back as the same float. */
uint32_t st_put_float(char *buf, uint32_t pos, uint32_t cap, float value) {
    if (value != value) return st_put_str(buf, pos, cap, "null");
    if (value == 0.0f) return st_put_str(buf, pos, cap, "0");
    if (value < 0) pos = st_put_str(buf, pos, cap, "-"), value = -value;
    uint64_t mant = 0;
    int exp10 = 0, digits = 6;
    for (; digits <= 9; digits++) {
        decimal_digits((double)value, digits, &mant, &exp10);
        char probe[40];
        uint32_t n = put_digits(probe, 0, sizeof probe, mant, 0);
        n = st_put_str(probe, n, sizeof probe, "e");
        int pe = exp10 - (digits - 1);
        if (pe < 0) n = st_put_str(probe, n, sizeof probe, "-"), pe = -pe;
        n = put_digits(probe, n, sizeof probe, (uint64_t)pe, 0);
        json_cursor c = {probe, probe + n};
        double back;
        if (parse_number(&c, &back) == 0 && (float)back == value) break;
    }
    if (digits > 9) digits = 9;
    while (digits > 1 && mant % 10 == 0) mant /= 10, digits--;
    /* Plain notation for the ranges parameters live in, exponent notation beyond. */
    if (exp10 >= -6 && exp10 < 15) {
        char d[24];
        uint32_t n = put_digits(d, 0, sizeof d, mant, 0);
        int point = exp10 + 1; /* digits before the decimal point */
        if (point <= 0) {
            pos = st_put_str(buf, pos, cap, "0.");
            for (int i = 0; i < -point; i++) pos = st_put_str(buf, pos, cap, "0");
            return st_put_str(buf, pos, cap, d);
        }
        for (int i = 0; i < point; i++) {
            char one[2] = {i < (int)n ? d[i] : '0', 0};
            pos = st_put_str(buf, pos, cap, one);
        }
        if ((uint32_t)point < n) {
            pos = st_put_str(buf, pos, cap, ".");
            pos = st_put_str(buf, pos, cap, d + point);
        }
        return pos;
    }
    pos = put_digits(buf, pos, cap, mant, 0);
    pos = st_put_str(buf, pos, cap, "e");
    int pe = exp10 - (digits - 1);
    if (pe < 0) pos = st_put_str(buf, pos, cap, "-"), pe = -pe;
    return put_digits(buf, pos, cap, (uint64_t)pe, 0);
}
