/* ips_samples.h: the pure functions of ips-samples that tests check on their own. */
#ifndef EDDY_IPS_SAMPLES_H
#define EDDY_IPS_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

/**
 * @brief The sampling hash of an impression: FNV-1a 64 over request_id, one 0 byte and
 *        item_id, then the splitmix64 finalizer (docs/ips-samples.md gives it exactly).
 */
uint64_t eddy__ips_hash(const char *rid, size_t rlen, const char *iid, size_t ilen);

/** @returns non-zero if a negative with hash @p h is kept at rate @p rate:
 *           (h >> 11) * 2^-53 < rate. */
int eddy__ips_keep(uint64_t h, double rate);

/**
 * @brief The examination propensity of a position from exploration counts:
 *        ctr(k) = (clicks_k + s) / (imps_k + 2 s), estimate = min(1, ctr(k) / ctr(1)).
 * @returns the estimate, or -1 when imps_k or imps_1 is below @p min_count (use the prior).
 */
double eddy__ips_estimate(int64_t imps_k, int64_t clicks_k, int64_t imps_1, int64_t clicks_1,
                          double s, int64_t min_count);

#endif
