//! The seven AARRR lifecycle stages.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A lifecycle stage an event can be tagged with, in funnel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// A visitor finds the product (landing page, ad click).
    Discovery,
    /// The visitor signs up.
    Acquisition,
    /// The user reaches the first moment of value.
    Activation,
    /// Ongoing use.
    Engagement,
    /// Coming back after a while.
    Retention,
    /// Paying.
    Revenue,
    /// Bringing others in.
    Referral,
}

impl Stage {
    /// Every stage, in lifecycle order.
    pub const ALL: [Stage; 7] = [
        Stage::Discovery,
        Stage::Acquisition,
        Stage::Activation,
        Stage::Engagement,
        Stage::Retention,
        Stage::Revenue,
        Stage::Referral,
    ];

    /// The wire name, e.g. `"discovery"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Discovery => "discovery",
            Stage::Acquisition => "acquisition",
            Stage::Activation => "activation",
            Stage::Engagement => "engagement",
            Stage::Retention => "retention",
            Stage::Revenue => "revenue",
            Stage::Referral => "referral",
        }
    }

    /// Compact code used by storage: 1..=7 (0 means "no stage").
    pub fn code(self) -> u8 {
        self as u8 + 1
    }

    /// Inverse of [`Stage::code`]; `None` for 0 and unknown codes.
    pub fn from_code(code: u8) -> Option<Stage> {
        Stage::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Stage::ALL.into_iter().find(|st| st.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_zero_is_none() {
        for st in Stage::ALL {
            assert_eq!(Stage::from_code(st.code()), Some(st));
            assert_eq!(st.as_str().parse::<Stage>(), Ok(st));
        }
        assert_eq!(Stage::from_code(0), None);
        assert_eq!(Stage::from_code(8), None);
        assert!("Discovery".parse::<Stage>().is_err());
    }
}
