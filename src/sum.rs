//! A float sum with Neumaier's compensation: the error of each addition is kept aside and added
//! back at the end, so a mean of many values (or of large ones) stays exact to the last digit
//! where a plain `+=` loop drifts. minute-stats' means and reprice's price average use it.

/// A running compensated sum; [`Sum::total`] is the sum.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    pub fn add(&mut self, v: f64) {
        let t = self.sum + v;
        self.compensation += if self.sum.abs() >= v.abs() {
            (self.sum - t) + v
        } else {
            (v - t) + self.sum
        };
        self.sum = t;
    }

    pub fn total(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_a_plain_sum_loses() {
        let values = [1.0, 1e100, 1.0, -1e100];
        let mut sum = Sum::default();
        values.iter().for_each(|&v| sum.add(v));
        assert_eq!(sum.total(), 2.0);
        assert_eq!(
            values.iter().sum::<f64>(),
            0.0,
            "the plain sum loses both ones"
        );
    }

    #[test]
    fn an_empty_sum_is_zero() {
        assert_eq!(Sum::default().total(), 0.0);
    }
}
