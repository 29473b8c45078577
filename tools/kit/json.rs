//! What serde does not do by itself for the tools' JSON: numbers with a
//! fixed count of decimals. serde_json writes a float as its shortest
//! round-trip form (`2.0`, `0.1234567`); the tools' files keep the
//! precision they always had (`2.000` seconds, `0.149` ms), which says
//! how exact a figure is.

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A number written with `DECIMALS` places, or null when absent or not
/// finite (JSON has no NaN or infinity).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fixed<const DECIMALS: usize>(pub Option<f64>);

impl<const DECIMALS: usize> Serialize for Fixed<DECIMALS> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(value) if value.is_finite() => {
                // A finite float in decimal notation is a JSON number.
                let number = RawValue::from_string(format!("{value:.*}", DECIMALS))
                    .map_err(S::Error::custom)?;
                number.serialize(serializer)
            }
            _ => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: T) -> String {
        serde_json::to_string(&value).expect("serializes")
    }

    #[test]
    fn fixed_numbers_keep_their_decimals_and_non_finite_ones_are_null() {
        assert_eq!(json(Fixed::<3>(Some(2.0))), "2.000");
        assert_eq!(json(Fixed::<1>(Some(94_542.5))), "94542.5");
        assert_eq!(json(Fixed::<4>(Some(0.123_456))), "0.1235");
        assert_eq!(json(Fixed::<2>(Some(-0.001))), "-0.00");
        assert_eq!(json(Fixed::<0>(Some(7.6))), "8");
        assert_eq!(json(Fixed::<3>(None)), "null");
        assert_eq!(json(Fixed::<3>(Some(f64::NAN))), "null");
        assert_eq!(json(Fixed::<3>(Some(f64::NEG_INFINITY))), "null");
        let text = json([Fixed::<3>(Some(1e300)), Fixed(None)]);
        let back: Vec<Option<f64>> = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, [Some(1e300), None]);
    }
}
