//! The statistics `cmdqv diff` reports: the Mann-Whitney U test computed from two latency
//! histograms (ties by bucket, tie-corrected normal approximation with continuity correction,
//! two-sided), Welch's t-test on per-interval rates, and streaming moments, all in O(buckets)
//! or O(1) memory.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Count, mean and sum of squared deviations, updated one value (or a run of equal values) at a
/// time (Welford; Chan et al. for merging), so a series of any length takes O(1) memory.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.merge(Moments {
            n: 1,
            mean: x,
            m2: 0.0,
        });
    }

    /// `k` values equal to `x` at once.
    pub fn push_n(&mut self, x: f64, k: u64) {
        self.merge(Moments {
            n: k,
            mean: x,
            m2: 0.0,
        });
    }

    pub fn merge(&mut self, o: Moments) {
        if o.n == 0 {
            return;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        let (na, nb) = (self.n as f64, o.n as f64);
        self.mean += d * nb / n as f64;
        self.m2 += o.m2 + d * d * na * nb / n as f64;
        self.n = n;
    }

    /// From a count, a sum and a sum of squares.
    pub fn from_sums(n: u64, sum: f64, sum_sq: f64) -> Self {
        if n == 0 {
            return Self::default();
        }
        let mean = sum / n as f64;
        Self {
            n,
            mean,
            m2: (sum_sq - sum * mean).max(0.0),
        }
    }

    /// Sample variance (n − 1).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }
}

/// A two-sided test's result.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct TestResult {
    /// `mann-whitney-u` or `welch-t`.
    pub test: &'static str,
    /// U of the first sample (Mann-Whitney) or t (Welch).
    pub statistic: f64,
    /// The normal deviate (Mann-Whitney) or the Welch–Satterthwaite degrees of freedom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub df: Option<f64>,
    pub p_value: f64,
}

/// Two-sided normal tail: P(|Z| ≥ |z|).
pub fn normal_two_sided(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |relative error| < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Mann-Whitney U over two samples given as tie groups in increasing value order: each item is
/// (how many of sample A, how many of sample B) share one value. Ranks are mid-ranks; the
/// variance is tie-corrected, the normal approximation continuity-corrected, the p-value
/// two-sided (as `scipy.stats.mannwhitneyu(method="asymptotic")`). `None` when a sample is empty.
pub fn mann_whitney_groups(groups: impl IntoIterator<Item = (u64, u64)>) -> Option<TestResult> {
    let (mut na, mut nb, mut below, mut rank_sum_a, mut ties) = (0u64, 0u64, 0u64, 0f64, 0f64);
    for (a, b) in groups {
        let t = a + b;
        if t == 0 {
            continue;
        }
        // Mid-rank of the group: ranks below+1 ..= below+t.
        let mid = below as f64 + (t as f64 + 1.0) / 2.0;
        rank_sum_a += a as f64 * mid;
        let tf = t as f64;
        ties += tf * tf * tf - tf;
        below += t;
        na += a;
        nb += b;
    }
    if na == 0 || nb == 0 {
        return None;
    }
    let (fa, fb, n) = (na as f64, nb as f64, (na + nb) as f64);
    let u = rank_sum_a - fa * (fa + 1.0) / 2.0;
    let mean = fa * fb / 2.0;
    let var = fa * fb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)).max(1.0));
    if var <= 0.0 {
        // Every value tied: no evidence of a shift.
        return Some(TestResult {
            test: "mann-whitney-u",
            statistic: u,
            z: Some(0.0),
            df: None,
            p_value: 1.0,
        });
    }
    let d = u - mean;
    let z = (d.abs() - 0.5).max(0.0) / var.sqrt() * d.signum();
    Some(TestResult {
        test: "mann-whitney-u",
        statistic: u,
        z: Some(z),
        df: None,
        p_value: normal_two_sided(z),
    })
}

/// Mann-Whitney U from two histograms with the same bucket layout (values in one bucket are
/// ties).
pub fn mann_whitney(a: &Histogram<u64>, b: &Histogram<u64>) -> Option<TestResult> {
    let bucket = |v: hdrhistogram::iterators::IterationValue<u64>| {
        (v.value_iterated_to(), v.count_at_value())
    };
    let mut ia = a.iter_recorded().map(bucket).peekable();
    let mut ib = b.iter_recorded().map(bucket).peekable();
    let groups = std::iter::from_fn(move || match (ia.peek().copied(), ib.peek().copied()) {
        (Some((va, ca)), Some((vb, cb))) => Some(if va == vb {
            ia.next();
            ib.next();
            (ca, cb)
        } else if va < vb {
            ia.next();
            (ca, 0)
        } else {
            ib.next();
            (0, cb)
        }),
        (Some((_, ca)), None) => ia.next().map(|_| (ca, 0)),
        (None, Some((_, cb))) => ib.next().map(|_| (0, cb)),
        (None, None) => None,
    });
    mann_whitney_groups(groups)
}

/// Welch's unequal-variance t-test of two means (two-sided, Student's t with the
/// Welch–Satterthwaite degrees of freedom). `None` with fewer than two values on a side.
pub fn welch(a: &Moments, b: &Moments) -> Option<TestResult> {
    if a.n < 2 || b.n < 2 {
        return None;
    }
    let (va, vb) = (a.variance() / a.n as f64, b.variance() / b.n as f64);
    let se2 = va + vb;
    let diff = a.mean - b.mean;
    if se2 <= 0.0 {
        // Both series constant: equal means are the same, different ones certainly differ.
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some(TestResult {
            test: "welch-t",
            statistic: if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::MAX
            },
            z: None,
            df: Some((a.n + b.n - 2) as f64),
            p_value: p,
        });
    }
    let t = diff / se2.sqrt();
    let df = se2 * se2
        / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64).max(f64::MIN_POSITIVE);
    Some(TestResult {
        test: "welch-t",
        statistic: t,
        z: None,
        df: Some(df),
        p_value: student_t_two_sided(t, df),
    })
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    let x = df / (df + t * t);
    incomplete_beta(df / 2.0, 0.5, x).clamp(0.0, 1.0)
}

/// Regularized incomplete beta I_x(a, b) (continued fraction, Numerical Recipes' betacf).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-14 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut s = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        s += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
        let mut v: Vec<u64> = a.iter().chain(b).copied().collect();
        v.sort_unstable();
        v.dedup();
        let count = |s: &[u64], x| s.iter().filter(|&&y| y == x).count() as u64;
        v.iter().map(|&x| (count(a, x), count(b, x))).collect()
    }

    fn close(x: f64, want: f64, tol: f64) -> bool {
        (x - want).abs() <= tol
    }

    #[test]
    fn mann_whitney_matches_scipy_on_its_documented_example() {
        // scipy.stats.mannwhitneyu(males, females, method="asymptotic") from SciPy's
        // documentation (Conover's example): U1 = 17, p = 0.11134688653314041.
        let males = [19, 22, 16, 29, 24];
        let females = [20, 11, 17, 12];
        let r = mann_whitney_groups(groups(&males, &females)).unwrap();
        assert_eq!(r.statistic, 17.0);
        assert!(close(r.p_value, 0.111_346_886_533_140_41, 1e-6), "{r:?}");
    }

    #[test]
    fn mann_whitney_corrects_for_ties() {
        // a = [1,2,2,3,3,3], b = [2,3,3,4,4,5]: mid-ranks 1, 3, 7 give R_a = 28, U1 = 7; tie
        // groups of 3, 5 and 2 give Σ(t³−t) = 150, sigma = sqrt(36/12 · (13 − 150/132)) =
        // 5.96581; z = (7 − 18 + 0.5)/sigma = −1.760029, p = erfc(|z|/√2) = 0.0784029.
        let r = mann_whitney_groups(groups(&[1, 2, 2, 3, 3, 3], &[2, 3, 3, 4, 4, 5])).unwrap();
        assert_eq!(r.statistic, 7.0);
        assert!(close(r.z.unwrap(), -1.760_029, 1e-5), "{r:?}");
        assert!(close(r.p_value, 0.078_403, 1e-5), "{r:?}");
        // Identical samples: no shift at all.
        let same = mann_whitney_groups(groups(&[5, 6, 7], &[5, 6, 7])).unwrap();
        assert!(same.p_value > 0.99, "{same:?}");
        assert!(mann_whitney_groups(groups(&[1, 2], &[])).is_none());
    }

    #[test]
    fn mann_whitney_from_histograms_equals_the_exact_ranks_of_the_same_buckets() {
        let (mut ha, mut hb) = (
            crate::analysis::phases::latency_histogram(),
            crate::analysis::phases::latency_histogram(),
        );
        let (a, b) = ([19u64, 22, 16, 29, 24], [20u64, 11, 17, 12]);
        a.iter().for_each(|&v| ha.record(v).unwrap());
        b.iter().for_each(|&v| hb.record(v).unwrap());
        let r = mann_whitney(&ha, &hb).unwrap();
        assert_eq!(r.statistic, 17.0);
        assert!(close(r.p_value, 0.111_346_886_533_140_41, 1e-6));
        // Swapping the samples mirrors U and keeps p.
        let s = mann_whitney(&hb, &ha).unwrap();
        assert_eq!(s.statistic, 20.0 - 17.0);
        assert!(close(s.p_value, r.p_value, 1e-12));
    }

    #[test]
    fn student_t_tails_match_the_tables() {
        // Two-sided 5 % and 1 % critical values of Student's t.
        assert!(close(student_t_two_sided(2.228_138_85, 10.0), 0.05, 1e-6));
        assert!(close(student_t_two_sided(2.570_581_84, 5.0), 0.05, 1e-6));
        assert!(close(student_t_two_sided(3.169_272_67, 10.0), 0.01, 1e-6));
        assert!(close(student_t_two_sided(1.959_963_98, 1e7), 0.05, 1e-5));
        assert!(close(student_t_two_sided(0.0, 3.0), 1.0, 1e-12));
        assert!(close(normal_two_sided(1.959_963_98), 0.05, 1e-6));
    }

    #[test]
    fn welch_matches_a_hand_computed_example() {
        // a = 1..=5 (mean 3, var 2.5), b = 3,5,7,9,11 (mean 7, var 10): t = -4/sqrt(2.5) =
        // -2.5298, df = 6.25/(0.5²/4 + 2²/4) = 5.88235; p = 0.0454646 (the t density integrated
        // numerically over both tails).
        let mut a = Moments::default();
        let mut b = Moments::default();
        (1..=5).for_each(|x| a.push(f64::from(x)));
        [3, 5, 7, 9, 11].iter().for_each(|&x| b.push(f64::from(x)));
        let r = welch(&a, &b).unwrap();
        assert!(close(r.statistic, -2.529_822_128, 1e-9), "{r:?}");
        assert!(close(r.df.unwrap(), 5.882_352_9, 1e-6), "{r:?}");
        assert!(close(r.p_value, 0.045_464_6, 1e-6), "{r:?}");
        let mut z = Moments::default();
        z.push_n(0.0, 3);
        z.merge(Moments::from_sums(2, 4.0, 8.0));
        assert_eq!(z.n, 5);
        assert!(close(z.mean, 0.8, 1e-12) && close(z.variance(), 1.2, 1e-12));
    }
}
