//! How long certificates last and when they are renewed: the consortium's `certificates`
//! settings parsed, and for each identity the validity window the plan issues it with — the one
//! it already holds while that is not due, a fresh one from the renewal time once it is.
//!
//! Pure like the rest of the planner: the caller says what each identity holds (read from its
//! files or Secrets) and, if it wants renewals decided, what time it is.

use std::collections::BTreeMap;

/// Validity when the consortium does not say.
pub const DEFAULT_VALIDITY_S: i64 = 365 * 86_400;
/// The shortest validity accepted: renewals must not come faster than nodes can restart.
pub const MIN_VALIDITY_S: i64 = 60;

/// A certificate's window, Unix seconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub not_before: i64,
    pub not_after: i64,
}

/// Certificate lifetimes, parsed from `spec.certificates`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub validity_s: i64,
    pub renew_before_s: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            validity_s: DEFAULT_VALIDITY_S,
            renew_before_s: DEFAULT_VALIDITY_S / 3,
        }
    }
}

/// The key under which an identity's held window is passed in and renewals are reported:
/// `org/role/name`, e.g. `bank/node/bank-peer-0` or `bank/admin/admin`.
pub fn identity_key(org: &str, role: &str, name: &str) -> String {
    format!("{org}/{role}/{name}")
}

impl Lifetimes {
    /// Parses the two settings (Kubernetes duration strings such as `8760h` or `90m`, plus `d`
    /// for days); the error names the field at fault.
    pub fn parse(
        validity: Option<&str>,
        renew_before: Option<&str>,
    ) -> Result<Lifetimes, (&'static str, String)> {
        let validity_s = match validity {
            None => DEFAULT_VALIDITY_S,
            Some(v) => parse_duration(v).map_err(|e| ("validity", e))?,
        };
        if validity_s < MIN_VALIDITY_S {
            return Err((
                "validity",
                format!("validity {validity_s}s is shorter than the minimum of {MIN_VALIDITY_S}s"),
            ));
        }
        let renew_before_s = match renew_before {
            None => validity_s / 3,
            Some(v) => parse_duration(v).map_err(|e| ("renewBefore", e))?,
        };
        if renew_before_s <= 0 || renew_before_s >= validity_s {
            return Err((
                "renewBefore",
                format!(
                    "renewBefore ({renew_before_s}s) must be more than 0 and less than validity ({validity_s}s)"
                ),
            ));
        }
        Ok(Lifetimes {
            validity_s,
            renew_before_s,
        })
    }

    /// How far a fresh certificate starts in the past, so that a clock a little behind still
    /// accepts it; a tenth of the validity at most, so short lifetimes are not eaten up.
    fn backdate(&self) -> i64 {
        (self.validity_s / 10).min(300)
    }

    /// The window to issue an identity with: what it holds (or, when it holds nothing yet, the
    /// consortium's first issue time) unless `now` is given and that is due for renewal, then
    /// a fresh window from `now`. Returns whether it renewed.
    pub fn window(
        &self,
        held: Option<Window>,
        first_issue: i64,
        now: Option<i64>,
    ) -> (Window, bool) {
        let current = held.unwrap_or(Window {
            not_before: first_issue,
            not_after: first_issue + self.validity_s,
        });
        match now {
            Some(now) if now >= current.not_after - self.renew_before_s => (
                Window {
                    not_before: now - self.backdate(),
                    not_after: now + self.validity_s,
                },
                true,
            ),
            _ => (current, false),
        }
    }

    /// When an identity holding `w` falls due.
    pub fn renew_at(&self, w: Window) -> i64 {
        w.not_after - self.renew_before_s
    }
}

/// What the caller knows about identities already issued, by [`identity_key`].
pub type Held = BTreeMap<String, Window>;

/// For callers that keep no record of issued identities: every identity is planned from the
/// consortium's first issue time.
pub static NOTHING_HELD: Held = BTreeMap::new();

/// `90s`, `15m`, `1h30m`, `8760h`, `365d`: a sequence of numbers with units d, h, m or s.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration like 90s, 15m, 1h30m, 8760h or 365d");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: i64 = number.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Windows handed out while planning, and what that decided.
pub(crate) struct Issuing<'a> {
    lifetimes: Lifetimes,
    held: &'a Held,
    first_issue: i64,
    now: Option<i64>,
    /// Identities given a fresh window, by key.
    pub renewed: Vec<String>,
    /// The earliest time an identity of the plan falls due.
    pub next_due: Option<i64>,
}

impl<'a> Issuing<'a> {
    pub fn new(lifetimes: Lifetimes, held: &'a Held, first_issue: i64, now: Option<i64>) -> Self {
        Issuing {
            lifetimes,
            held,
            first_issue,
            now,
            renewed: Vec::new(),
            next_due: None,
        }
    }

    pub fn window(&mut self, org: &str, role: &str, name: &str) -> Window {
        let key = identity_key(org, role, name);
        let (w, renewed) =
            self.lifetimes
                .window(self.held.get(&key).copied(), self.first_issue, self.now);
        if renewed {
            self.renewed.push(key);
        }
        let due = self.lifetimes.renew_at(w);
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kubernetes_writes_them() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("8760h"), Ok(DEFAULT_VALIDITY_S));
        assert_eq!(parse_duration("365d"), Ok(DEFAULT_VALIDITY_S));
        for bad in ["", "90", "1x", "h", "-5m", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn settings_are_checked_with_the_field_named() {
        assert_eq!(Lifetimes::parse(None, None), Ok(Lifetimes::default()));
        assert_eq!(
            Lifetimes::parse(Some("90m"), None),
            Ok(Lifetimes {
                validity_s: 5_400,
                renew_before_s: 1_800
            })
        );
        assert_eq!(
            Lifetimes::parse(Some("30s"), None).unwrap_err().0,
            "validity"
        );
        assert_eq!(
            Lifetimes::parse(Some("1y"), None).unwrap_err().0,
            "validity"
        );
        assert_eq!(
            Lifetimes::parse(Some("10m"), Some("10m")).unwrap_err().0,
            "renewBefore"
        );
    }

    #[test]
    fn an_identity_keeps_its_window_until_due_then_gets_a_fresh_one() {
        let l = Lifetimes::parse(Some("100m"), Some("30m")).unwrap();
        let first = 1_000_000;
        // Never issued: the consortium's first issue time, whatever the clock says.
        let (w, renewed) = l.window(None, first, None);
        assert_eq!(
            (w.not_before, w.not_after, renewed),
            (first, first + 6_000, false)
        );
        // Held and not due: kept, byte for byte the same certificate.
        let held = Window {
            not_before: first + 50,
            not_after: first + 6_050,
        };
        assert_eq!(
            l.window(Some(held), first, Some(first + 4_000)),
            (held, false)
        );
        // Due (30 minutes before the end): a fresh window from now, a little in the past.
        let now = first + 4_250;
        let (w, renewed) = l.window(Some(held), first, Some(now));
        assert!(renewed);
        assert_eq!(w.not_after, now + 6_000);
        assert!(w.not_before < now && w.not_before >= now - 600);
        // Renewing again right away is not due.
        assert_eq!(l.window(Some(w), first, Some(now + 1)), (w, false));
        // Long expired (a laptop closed for a year): renewed, not refused.
        assert!(l.window(Some(held), first, Some(first + 10_000_000)).1);
        assert_eq!(l.renew_at(held), first + 6_050 - 1_800);
    }
}
