//! A log-linear latency histogram with HdrHistogram's bucket layout over a
//! fixed range: one bucket per microsecond below 256 µs, then 128 buckets per
//! power of two up to 60 s. Any recorded value is therefore known to within
//! 1/128 (0.8 %) of itself, in 2533 counters (20 KiB) whatever the run length.

use std::time::Duration;

/// Buckets per power of two (as a power of two itself): 2^7 = 128 sets the
/// precision at 1/128.
const SUB_BUCKET_BITS: u32 = 7;
const SUB_BUCKET_COUNT: u64 = 1 << SUB_BUCKET_BITS;

/// Larger values are recorded as this (the exact maximum is kept apart).
pub const VALUE_MAX_MICROSECONDS: u64 = 60_000_000;

pub const BUCKET_COUNT: usize = bucket_index(VALUE_MAX_MICROSECONDS) + 1;

const _: () = assert!(BUCKET_COUNT == 2533);
const _: () = assert!(bucket_lowest(BUCKET_COUNT - 1) <= VALUE_MAX_MICROSECONDS);

/// Values below 2 * SUB_BUCKET_COUNT get a bucket each; above, a value with
/// its highest bit at `magnitude` lands in bucket group `magnitude - 7`,
/// split 128 ways (HdrHistogram's layout with a sub-bucket count of 256).
pub const fn bucket_index(value: u64) -> usize {
    if value < SUB_BUCKET_COUNT {
        return value as usize;
    }
    let magnitude = 63 - value.leading_zeros();
    let shift = magnitude - SUB_BUCKET_BITS;
    let sub_bucket = (value >> shift) - SUB_BUCKET_COUNT;
    (SUB_BUCKET_COUNT * (shift as u64 + 1) + sub_bucket) as usize
}

/// The smallest value that lands in bucket `index`.
pub const fn bucket_lowest(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKET_COUNT {
        return index;
    }
    let shift = index / SUB_BUCKET_COUNT - 1;
    let sub_bucket = index % SUB_BUCKET_COUNT;
    (SUB_BUCKET_COUNT + sub_bucket) << shift
}

/// The largest value that lands in bucket `index`.
pub const fn bucket_highest(index: usize) -> u64 {
    bucket_lowest(index + 1) - 1
}

#[derive(Clone, Debug)]
pub struct Histogram {
    /// Invariant: counts.len() == BUCKET_COUNT and the counts sum to `count`.
    counts: Vec<u64>,
    count: u64,
    /// Exact extremes, in microseconds (meaningless while `count` is 0).
    value_min: u64,
    value_max: u64,
    /// Recorded values above VALUE_MAX_MICROSECONDS, counted in the top bucket.
    saturated_count: u64,
    sum_microseconds: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKET_COUNT],
            count: 0,
            value_min: u64::MAX,
            value_max: 0,
            saturated_count: 0,
            sum_microseconds: 0,
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let microseconds = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_microseconds(microseconds);
    }

    pub fn record_microseconds(&mut self, value: u64) {
        if value > VALUE_MAX_MICROSECONDS {
            self.saturated_count += 1;
        }
        self.counts[bucket_index(value.min(VALUE_MAX_MICROSECONDS))] += 1;
        self.count += 1;
        self.value_min = self.value_min.min(value);
        self.value_max = self.value_max.max(value);
        self.sum_microseconds += u128::from(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn saturated_count(&self) -> u64 {
        self.saturated_count
    }

    pub fn max_microseconds(&self) -> Option<u64> {
        (self.count > 0).then_some(self.value_max)
    }

    pub fn mean_microseconds(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_microseconds as f64 / self.count as f64)
    }

    /// The value at `quantile` (0 to 1): the highest value equivalent to the
    /// recorded value of rank ceil(quantile * count), so a percentile is never
    /// understated, and clamped to the exact extremes (quantile 1 is the max).
    pub fn value_at_quantile(&self, quantile: f64) -> Option<u64> {
        assert!((0.0..=1.0).contains(&quantile));
        if self.count == 0 {
            return None;
        }
        let rank = ((quantile * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == self.count {
            return Some(self.value_max); // known exactly, even when saturated
        }
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_highest(index).clamp(self.value_min, self.value_max));
            }
        }
        unreachable!("counts sum to count, and rank <= count");
    }

    /// Non-empty buckets as (lowest value, highest value, count), in order.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(index, count)| (bucket_lowest(index), bucket_highest(index), *count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite::core::rng::Rng;

    /// Log-uniform from 1 µs to 60 s, like latencies across a failover.
    fn latency(random: &mut Rng) -> u64 {
        let exponent = random.below(1_000_000) as f64 / 1_000_000.0;
        (VALUE_MAX_MICROSECONDS as f64).powf(exponent) as u64
    }

    #[test]
    fn buckets_tile_the_range_without_gaps() {
        assert_eq!(bucket_lowest(0), 0);
        for index in 1..BUCKET_COUNT {
            assert_eq!(bucket_lowest(index), bucket_highest(index - 1) + 1);
            assert_eq!(bucket_index(bucket_lowest(index)), index);
            assert_eq!(bucket_index(bucket_highest(index)), index);
            let width = bucket_highest(index) - bucket_lowest(index) + 1;
            // The precision promise: a bucket is at most 1/128 of its values.
            assert!(width == 1 || width * 128 <= bucket_lowest(index), "{index}");
        }
    }

    #[test]
    fn percentiles_match_a_sorted_vector_within_the_precision() {
        let mut random = Rng::new(0x9e37_79b9_7f4a_7c15);
        for size in [1, 2, 3, 10, 1000, 100_000] {
            let mut histogram = Histogram::new();
            let mut values: Vec<u64> = (0..size).map(|_| latency(&mut random)).collect();
            for value in &values {
                histogram.record_microseconds(*value);
            }
            values.sort_unstable();
            for quantile in [0.0, 0.001, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
                let rank = ((quantile * size as f64).ceil() as usize).clamp(1, size);
                let exact = values[rank - 1];
                let estimate = histogram.value_at_quantile(quantile).expect("values");
                assert!(
                    estimate >= exact,
                    "q{quantile} n{size}: {estimate} < {exact}"
                );
                assert!(
                    (estimate - exact) * 128 <= exact,
                    "q{quantile} n{size}: {estimate} vs {exact}"
                );
            }
            assert_eq!(histogram.value_at_quantile(1.0), values.last().copied());
            assert_eq!(histogram.count(), size as u64);
        }
    }

    #[test]
    fn small_values_are_exact_and_large_ones_saturate() {
        let mut histogram = Histogram::new();
        assert_eq!(histogram.value_at_quantile(0.5), None);
        assert_eq!(histogram.max_microseconds(), None);
        for value in [0, 1, 2, 255] {
            histogram.record_microseconds(value);
        }
        assert_eq!(histogram.value_at_quantile(0.25), Some(0));
        assert_eq!(histogram.value_at_quantile(0.5), Some(1));
        assert_eq!(histogram.value_at_quantile(0.75), Some(2));
        histogram.record(Duration::from_secs(100));
        assert_eq!(histogram.saturated_count(), 1);
        assert_eq!(histogram.max_microseconds(), Some(100_000_000));
        assert_eq!(histogram.value_at_quantile(1.0), Some(100_000_000));
        assert_eq!(histogram.buckets().map(|bucket| bucket.2).sum::<u64>(), 5);
    }
}
