//! Who an event is about.

/// The person an event belongs to: an identified user or an anonymous
/// visitor (SPEC §1: analyses key on `user_id` when present, else on
/// `anonymous_id`).
///
/// A `&str`, `&String` or `String` converts into [`Person::User`], so the
/// common case reads `client.track("user-42", "signed_up")`.
///
/// ```
/// use tally_sdk::Person;
///
/// assert_eq!(Person::from("u1"), Person::user("u1"));
/// assert!(Person::anonymous("device-9").is_anonymous());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Person {
    /// An identified user, sent as `user_id`.
    User(String),
    /// An anonymous visitor (a device or cookie id), sent as `anonymous_id`.
    Anonymous(String),
}

impl Person {
    /// An identified user.
    pub fn user(id: impl Into<String>) -> Self {
        Person::User(id.into())
    }

    /// An anonymous visitor.
    pub fn anonymous(id: impl Into<String>) -> Self {
        Person::Anonymous(id.into())
    }

    /// The key itself.
    pub fn key(&self) -> &str {
        match self {
            Person::User(k) | Person::Anonymous(k) => k,
        }
    }

    /// Whether this is an anonymous visitor.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Person::Anonymous(_))
    }
}

impl From<&str> for Person {
    fn from(id: &str) -> Self {
        Person::User(id.to_owned())
    }
}

impl From<&String> for Person {
    fn from(id: &String) -> Self {
        Person::User(id.clone())
    }
}

impl From<String> for Person {
    fn from(id: String) -> Self {
        Person::User(id)
    }
}
