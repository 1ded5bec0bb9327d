/* The change of an attention pattern when one query or key neuron is zeroed, for every row and
 * neuron at once (workbench/pattern_change.py holds the same computation in PyTorch and says
 * what each input is).
 *
 * For row r (one query position of one head), neuron c and visible key first[r] <= j < n_keys[r]:
 *
 *     X_j  = (f[r,c] + E[g,c,j]) * S[r,j] - p[r,c] * U[g,c,j] - q[r,c] * V[g,c,j]
 *            (with a soft cap: X_j = cap * tanh((S[r,j] + X_j) / cap) - Sc[r,j])
 *     P'_j = P_j exp(X_j) / sum_i P_i exp(X_i)
 *     out[r,c] = sum_j (P'_j - P_j)^2
 *
 * g = group[r]. f or E may be NULL (zero). L[r,j] = log P[r,j], or -1e30 where P is 0 (a masked
 * key). The softmax is shifted by max_j (X_j + L_j), so every exponential is at most 1 and the
 * normaliser at least 1: no overflow, no fallback. One (inlined) exponential per entry; the row's
 * numerators live in a buffer of n_keys floats (in L1 cache) between the passes.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 16

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

/* out for one row and neuron: the three passes over the row's n visible keys. */
static inline float row_change(const float *Pr, const float *Lr, const float *Sr, const float *Scr,
                               const float fr, const float pr, const float qr,
                               const float *E, const float *U, const float *V, int64_t base,
                               int64_t n, const float cap, float *buf)
{
    if (n <= 0) return 0.0f;
    const float *Uc = U + base, *Vc = V + base;
    float m = -FLT_MAX;
    if (cap > 0.0f) {
        for (int64_t j = 0; j < n; j++) {
            const float x = ((fr + (E ? E[base + j] : 0.0f)) * Sr[j] - pr * Uc[j] - qr * Vc[j]);
            buf[j] = cap * tanhf((Sr[j] + x) / cap) - Scr[j] + Lr[j];
            m = buf[j] > m ? buf[j] : m;
        }
    } else if (E) {
        const float *Ec = E + base;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < n; j++) {
            buf[j] = (fr + Ec[j]) * Sr[j] - pr * Uc[j] - qr * Vc[j] + Lr[j];
            m = buf[j] > m ? buf[j] : m;
        }
    } else {
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < n; j++) {
            buf[j] = fr * Sr[j] - pr * Uc[j] - qr * Vc[j] + Lr[j];
            m = buf[j] > m ? buf[j] : m;
        }
    }
    float z = 0.0f;
#pragma omp simd reduction(+ : z)
    for (int64_t j = 0; j < n; j++) {
        buf[j] = exp_nonpositive(buf[j] - m);
        z += buf[j];
    }
    const float inv = 1.0f / z;
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t j = 0; j < n; j++) {
        const float d = buf[j] * inv - Pr[j];
        acc += d * d;
    }
    return acc;
}

void pattern_change(const float *P, const float *L, const float *S, const float *Sc,
                    const float *f, const float *p, const float *q,
                    const float *E, const float *U, const float *V,
                    const int64_t *group, const int64_t *first, const int64_t *n_keys,
                    float cap, int64_t R, int64_t C, int64_t J, int threads, float *out)
{
#pragma omp parallel num_threads(threads)
    {
        float *buf = (float *)malloc((size_t)(J > 0 ? J : 1) * sizeof(float));
        /* Rows in blocks of ROWS: a neuron's key factors (U, V, E rows) are read once per block
         * from L2/L1 instead of once per row from memory. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t start = 0; start < R; start += ROWS) {
            const int64_t stop = start + ROWS < R ? start + ROWS : R;
            for (int64_t c = 0; c < C; c++) {
                for (int64_t r = start; r < stop; r++) {
                    const int64_t j0 = first[r]; /* keys before it are masked (a sliding window) */
                    out[r * C + c] = row_change(P + r * J + j0, L + r * J + j0, S + r * J + j0, Sc + r * J + j0,
                                                f ? f[r * C + c] : 0.0f, p[r * C + c], q[r * C + c],
                                                E, U, V, (group[r] * C + c) * J + j0, n_keys[r] - j0, cap, buf);
                }
            }
        }
        free(buf);
    }
}
