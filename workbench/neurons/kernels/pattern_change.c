/* The change of an attention pattern when one query or key neuron is zeroed, for every row and
 * neuron at once (workbench/neurons/pattern_change.py holds the same computation in PyTorch and says
 * what each input is).
 *
 * For row r (one query position of one head), neuron c and visible key first[r] <= j < n_keys[r]:
 *
 *     X_j  = (f[r,c] + E[g,j,c]) * S[r,j] - p[r,c] * U[g,j,c] - q[r,c] * V[g,j,c]
 *            (with a soft cap: X_j = cap * tanh((S[r,j] + X_j) / cap) - Sc[r,j])
 *     P'_j = P_j exp(X_j) / sum_i P_i exp(X_i)
 *     out[r,c] = sum_j (P'_j - P_j)^2
 *
 * g = group[r]. f or E may be NULL (zero). L[r,j] = log P[r,j], or -1e30 where P is 0 (a masked
 * key). The softmax is shifted by max_j (X_j + L_j), so every exponential is at most 1 and the
 * normaliser at least 1: no overflow, no fallback. One (inlined) exponential per entry; the
 * numerators of a row and CB neurons live in a buffer of n_keys * CB floats between the passes.
 *
 * The inner loops run over CB neurons of one row (the key factors are laid out [group, key,
 * neuron], as the hooks give them), so rows of any length vectorise fully and no per-(row,
 * neuron) reductions are paid; a row's sums run in tiles of TILE keys, so their rounding grows
 * with TILE + n / TILE rather than n (the subtraction P'_j - P_j amplifies any error in the sum).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CB 32   /* neurons per block: the inner loops run over them (C is padded to a multiple) */
#define ROWS 8  /* rows per task: a neuron block's key factors are reused from cache across them */
#define TILE 32 /* keys per partial sum */

/* e^x for x <= 0, inlined so the loop vectorises whole: x = k ln2 + r (Cody-Waite), e^r by the
 * Cephes polynomial, 2^k from the exponent bits. Relative error under 1e-7 (measured against
 * double exp over [-87, 0]); below -87 (a masked key) it returns e^-87 ~ 1.6e-38, not 0. */
static inline float exp_nonpositive(float x)
{
    x = x < -87.0f ? -87.0f : x;
    const float k = rintf(x * 1.44269504088896341f);
    const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float e = 1.9875691500e-4f;
    e = e * r + 1.3981999507e-3f;
    e = e * r + 8.3334519073e-3f;
    e = e * r + 4.1665795894e-2f;
    e = e * r + 1.6666665459e-1f;
    e = e * r + 5.0000001201e-1f;
    e = e * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

/* out for one row and CB neurons, three passes over the row's n visible keys: f, p, q point at
 * the row's CB factors, E, U, V at its first visible key's (stride C between keys). */
static inline void block_change(const float *Pr, const float *Lr, const float *Sr, const float *Scr,
                                const float *f, const float *p, const float *q,
                                const float *E, const float *U, const float *V, int64_t C,
                                int64_t n, float cap, float *buf, float *out)
{
    float m[CB], z[CB], acc[CB], fr[CB], pr[CB], qr[CB];
    for (int c = 0; c < CB; c++) {
        m[c] = -FLT_MAX; z[c] = 0.0f; acc[c] = 0.0f;
        fr[c] = f ? f[c] : 0.0f; pr[c] = p[c]; qr[c] = q[c];
    }
    if (n <= 0) { for (int c = 0; c < CB; c++) out[c] = 0.0f; return; }
    for (int64_t j = 0; j < n; j++) {
        const float s = Sr[j], l = Lr[j];
        const float *Uj = U + j * C, *Vj = V + j * C;
        float *bj = buf + j * CB;
        if (cap > 0.0f) {
            const float sc = Scr[j];
            for (int c = 0; c < CB; c++) {
                const float x = (fr[c] + (E ? E[j * C + c] : 0.0f)) * s - pr[c] * Uj[c] - qr[c] * Vj[c];
                bj[c] = cap * tanhf((s + x) / cap) - sc + l;
            }
        } else if (E) {
            const float *Ej = E + j * C;
#pragma omp simd
            for (int c = 0; c < CB; c++) bj[c] = (fr[c] + Ej[c]) * s - pr[c] * Uj[c] - qr[c] * Vj[c] + l;
        } else {
#pragma omp simd
            for (int c = 0; c < CB; c++) bj[c] = fr[c] * s - pr[c] * Uj[c] - qr[c] * Vj[c] + l;
        }
#pragma omp simd
        for (int c = 0; c < CB; c++) m[c] = bj[c] > m[c] ? bj[c] : m[c];
    }
    for (int64_t j0 = 0; j0 < n; j0 += TILE) { /* sums in tiles: rounding grows with TILE + n/TILE, not n */
        float part[CB] = {0};
        for (int64_t j = j0; j < n && j < j0 + TILE; j++) {
            float *bj = buf + j * CB;
#pragma omp simd
            for (int c = 0; c < CB; c++) { bj[c] = exp_nonpositive(bj[c] - m[c]); part[c] += bj[c]; }
        }
        for (int c = 0; c < CB; c++) z[c] += part[c];
    }
    for (int c = 0; c < CB; c++) z[c] = 1.0f / z[c];
    for (int64_t j0 = 0; j0 < n; j0 += TILE) {
        float part[CB] = {0};
        for (int64_t j = j0; j < n && j < j0 + TILE; j++) {
            const float P = Pr[j];
            const float *bj = buf + j * CB;
#pragma omp simd
            for (int c = 0; c < CB; c++) { const float d = bj[c] * z[c] - P; part[c] += d * d; }
        }
        for (int c = 0; c < CB; c++) acc[c] += part[c];
    }
    for (int c = 0; c < CB; c++) out[c] = acc[c];
}

/* P, L, S, Sc [R, J]; f, p, q [R, C]; E, U, V [G, J, C]; C a multiple of CB. */
void pattern_change(const float *P, const float *L, const float *S, const float *Sc,
                    const float *f, const float *p, const float *q,
                    const float *E, const float *U, const float *V,
                    const int64_t *group, const int64_t *first, const int64_t *n_keys,
                    float cap, int64_t R, int64_t C, int64_t J, int threads, float *out)
{
    const int64_t blocks = C / CB, row_blocks = (R + ROWS - 1) / ROWS;
#pragma omp parallel num_threads(threads)
    {
        float *buf = (float *)aligned_alloc(64, (size_t)(J > 0 ? J : 1) * CB * sizeof(float));
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int64_t cb = 0; cb < blocks; cb++) {
            for (int64_t rb = 0; rb < row_blocks; rb++) {
                const int64_t c0 = cb * CB;
                for (int64_t r = rb * ROWS; r < R && r < (rb + 1) * ROWS; r++) {
                    const int64_t j0 = first[r], base = (group[r] * J + j0) * C + c0;
                    block_change(P + r * J + j0, L + r * J + j0, S + r * J + j0, Sc + r * J + j0,
                                 f ? f + r * C + c0 : NULL, p + r * C + c0, q + r * C + c0,
                                 E ? E + base : NULL, U + base, V + base, C, n_keys[r] - j0, cap, buf,
                                 out + r * C + c0);
                }
            }
        }
        free(buf);
    }
}
