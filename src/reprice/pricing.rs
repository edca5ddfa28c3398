//! The pricing rule of the seed, pure: average the competitor's last prices, then raise the
//! price by 10 % after a sale and cut it by 10 % otherwise.

use crate::sum::Sum;

/// Factor applied to the average competitor price after a sale.
pub const AFTER_SALE: f64 = 1.1;
/// Factor applied when there was no sale.
pub const NO_SALE: f64 = 0.9;

/// The mean of the competitor's prices (`avg_comp_price`), or `None` for no prices.
pub fn average(prices: &[f64]) -> Option<f64> {
    if prices.is_empty() {
        return None;
    }
    // A compensated sum: a window of large prices stays exact to the last digit.
    let mut sum = Sum::default();
    prices.iter().for_each(|&p| sum.add(p));
    Some(sum.total() / prices.len() as f64)
}

/// Our new price given the average competitor price and whether the book sold.
pub fn new_price(avg_comp_price: f64, sold: bool) -> f64 {
    avg_comp_price * if sold { AFTER_SALE } else { NO_SALE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seed_rule() {
        let avg = average(&[6217.85, 6201.85, 6160.95, 6241.1, 6230.0]).unwrap();
        assert!((avg - 6210.35).abs() < 1e-9, "{avg}");
        assert!((new_price(avg, true) - 6831.385).abs() < 1e-9);
        assert!((new_price(avg, false) - 5589.315).abs() < 1e-9);
        assert_eq!(average(&[]), None);
    }

    proptest! {
        #[test]
        fn average_lies_between_min_and_max(prices in prop::collection::vec(0.01f64..1e7, 1..20), sold: bool) {
            let avg = average(&prices).unwrap();
            let min = prices.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = prices.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(min * (1.0 - 1e-12) <= avg && avg <= max * (1.0 + 1e-12));
            let naive = prices.iter().sum::<f64>() / prices.len() as f64;
            prop_assert!((avg - naive).abs() <= naive * 1e-12);
            let price = new_price(avg, sold);
            if sold { prop_assert!(price > avg) } else { prop_assert!(price < avg) }
        }
    }
}
