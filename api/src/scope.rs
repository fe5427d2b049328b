//! Where, until when and from which generation on a signed config may be
//! applied. The generation guard lives in STATE, so after a reset (or on a
//! fresh install) it starts again at 0; these limits do not:
//!
//! - `[scope]` in the signed bytes: `not_after` (an instant) and a node
//!   selector (SMBIOS system UUID, serial, or a link's MAC address);
//! - the image's own floor ([`ImagePolicy`], `/etc/basalt/image-policy.toml`):
//!   the lowest generation it accepts, and its build time.
//!
//! Time is never taken on faith. A node may not know the time (no RTC, no
//! network yet) and an unsynchronized clock can say anything, so
//! `not_after` is checked against a *lower bound* of the real time
//! ([`TrustedTime`]): the wall clock when the kernel reports it
//! synchronized (`adjtimex(2)`: not `TIME_ERROR`), else the image's build
//! time, which the real time can only be past. An expired config is thus
//! refused by any image built after it expired, whatever the clock says.

use crate::config::MacAddr;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `[scope]` of a machine config. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// A TOML offset date-time (`2027-03-01T00:00:00Z`): refused once the
    /// node's trusted time is past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<toml::value::Datetime>,
    /// SMBIOS system UUIDs (`/sys/class/dmi/id/product_uuid`, what
    /// `dmidecode -s system-uuid` prints): a bare-metal machine's id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_uuids: Vec<String>,
    /// SMBIOS system serial numbers (`/sys/class/dmi/id/product_serial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serials: Vec<String>,
    /// Hardware addresses of physical links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<MacAddr>,
}

impl Scope {
    /// Whether the config names the nodes it is for.
    pub fn has_selector(&self) -> bool {
        !(self.system_uuids.is_empty() && self.serials.is_empty() && self.macs.is_empty())
    }

    /// A node matches when any one of its identifiers is listed (a
    /// config written for a rack may list machines by whichever id the
    /// operator has). Without a selector every node matches.
    pub fn selects(&self, node: &NodeIdentity) -> bool {
        if !self.has_selector() {
            return true;
        }
        let uuid = node.system_uuid.as_deref().is_some_and(|u| {
            self.system_uuids
                .iter()
                .any(|want| want.eq_ignore_ascii_case(u))
        });
        let serial = node
            .serial
            .as_deref()
            .is_some_and(|s| self.serials.iter().any(|want| want == s));
        let mac = node.macs.iter().any(|m| self.macs.contains(m));
        uuid || serial || mac
    }

    /// What the selector lists, for a refusal.
    pub fn describe_selector(&self) -> String {
        let mut parts = Vec::new();
        if !self.system_uuids.is_empty() {
            parts.push(format!("system_uuids {:?}", self.system_uuids));
        }
        if !self.serials.is_empty() {
            parts.push(format!("serials {:?}", self.serials));
        }
        if !self.macs.is_empty() {
            let macs: Vec<String> = self.macs.iter().map(|m| m.to_string()).collect();
            parts.push(format!("macs {macs:?}"));
        }
        parts.join(", ")
    }

    /// `not_after` as Unix seconds; `None` when absent or not a complete
    /// offset date-time (validation refuses that).
    pub fn not_after_unix(&self) -> Option<i64> {
        self.not_after.as_ref().and_then(|d| unix_seconds(d).ok())
    }
}

/// Problems of a `[scope]` table: (key, message), keys relative to `scope`.
pub fn validate(scope: &Scope) -> Vec<(&'static str, Option<usize>, String)> {
    let mut out = Vec::new();
    if let Some(d) = &scope.not_after
        && let Err(e) = unix_seconds(d)
    {
        out.push(("not_after", None, e));
    }
    for (i, u) in scope.system_uuids.iter().enumerate() {
        if !is_uuid(u) {
            out.push((
                "system_uuids",
                Some(i),
                format!("`{u}` is not a UUID like 4c4c4544-0042-3510-8052-b4c04f4e4232"),
            ));
        } else if is_placeholder_uuid(u) {
            out.push((
                "system_uuids",
                Some(i),
                format!("`{u}` is a firmware placeholder, not a machine's id"),
            ));
        }
    }
    for (i, s) in scope.serials.iter().enumerate() {
        if let Err(e) = serial(s) {
            out.push(("serials", Some(i), e));
        }
    }
    out
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// All zeros or all ones: what firmware reports when it has no UUID.
fn is_placeholder_uuid(s: &str) -> bool {
    let hex: Vec<u8> = s.bytes().filter(|c| *c != b'-').collect();
    hex.iter().all(|c| *c == b'0') || hex.iter().all(|c| c.eq_ignore_ascii_case(&b'f'))
}

/// Serials firmware vendors ship when nobody set one; never an identity.
const PLACEHOLDER_SERIALS: &[&str] = &[
    "",
    "0",
    "None",
    "Not Specified",
    "Not Applicable",
    "System Serial Number",
    "To Be Filled By O.E.M.",
    "Default string",
    "0123456789",
];

fn serial(s: &str) -> Result<(), String> {
    if s.len() > 64 || !s.bytes().all(|c| (b' '..=b'~').contains(&c)) {
        return Err(format!(
            "`{}` is not a serial number (1–64 printable ASCII characters)",
            s.escape_debug()
        ));
    }
    if s.trim() != s {
        return Err(format!("`{s}` has leading or trailing spaces"));
    }
    if PLACEHOLDER_SERIALS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(s))
    {
        return Err(format!(
            "`{s}` is a firmware placeholder, not a serial number"
        ));
    }
    Ok(())
}

/// What a node reports about itself, to match a selector against (and to
/// show in `status`, so an operator can write one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Lower-case; absent when the firmware has none (or a placeholder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Physical links' permanent hardware addresses, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub macs: Vec<MacAddr>,
}

impl NodeIdentity {
    /// From the raw SMBIOS strings (trailing newlines and placeholders
    /// dropped) and the links' addresses.
    pub fn from_firmware(
        uuid: Option<&str>,
        serial_number: Option<&str>,
        macs: Vec<MacAddr>,
    ) -> Self {
        let uuid = uuid
            .map(|u| u.trim().to_ascii_lowercase())
            .filter(|u| is_uuid(u) && !is_placeholder_uuid(u));
        let serial_number = serial_number
            .map(|s| s.trim().to_string())
            .filter(|s| serial(s).is_ok());
        let mut macs = macs;
        macs.sort_by_key(|m| m.0);
        macs.dedup();
        Self {
            system_uuid: uuid,
            serial: serial_number,
            macs,
        }
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let macs: Vec<String> = self.macs.iter().map(|m| m.to_string()).collect();
        write!(
            f,
            "system_uuid {}, serial {}, macs {macs:?}",
            self.system_uuid.as_deref().unwrap_or("(none)"),
            self.serial.as_deref().unwrap_or("(none)")
        )
    }
}

/// Where a node's lower bound of the time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The kernel reports the wall clock synchronized (an NTP/PTP client
    /// disciplines it).
    SynchronizedClock,
    /// The image's build time (`SOURCE_DATE_EPOCH`): the clock is not
    /// synchronized, or is behind the image.
    ImageBuild,
}

impl fmt::Display for TimeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeSource::SynchronizedClock => "its synchronized clock",
            TimeSource::ImageBuild => "its image's build time; its clock is not synchronized",
        })
    }
}

/// A time the real time is known to be at or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedTime {
    /// Unix seconds.
    pub at_least: i64,
    pub source: TimeSource,
}

impl TrustedTime {
    /// The wall clock counts only when the kernel says it is synchronized
    /// and it is not behind the image (a clock behind its own image is wrong).
    pub fn new(image_built_at: i64, clock: i64, synchronized: bool) -> Self {
        if synchronized && clock >= image_built_at {
            Self {
                at_least: clock,
                source: TimeSource::SynchronizedClock,
            }
        } else {
            Self {
                at_least: image_built_at,
                source: TimeSource::ImageBuild,
            }
        }
    }
}

/// `/etc/basalt/image-policy.toml`: what an image says about the configs
/// it accepts, written by image-builder, read by machined at boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePolicy {
    /// Configs with a lower generation are refused, even on a node whose
    /// STATE is empty (profile `[trust] min_generation`).
    pub min_generation: u64,
    /// Unix seconds: the image's `SOURCE_DATE_EPOCH`.
    pub built_at: i64,
}

impl ImagePolicy {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# Written by image-builder: configs below min_generation are refused even\n\
             # on an empty STATE; built_at (SOURCE_DATE_EPOCH) is a lower bound of the time.\n\
             min_generation = {}\nbuilt_at = {}\n",
            self.min_generation, self.built_at
        )
    }
}

/// A complete TOML offset date-time → Unix seconds (fractions dropped).
pub fn unix_seconds(d: &toml::value::Datetime) -> Result<i64, String> {
    let (Some(date), Some(time), Some(offset)) = (d.date, d.time, d.offset) else {
        return Err(format!(
            "`{d}` is not an instant: write a date, a time and a zone, like 2027-03-01T00:00:00Z"
        ));
    };
    if date.year < 1970 {
        return Err(format!("`{d}` is before 1970"));
    }
    let (y, m, day) = (
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    );
    let days = days_from_civil(y, m, day);
    if civil_from_days(days) != (y, m, day) {
        return Err(format!("`{d}` is not a calendar date"));
    }
    let local = days * 86_400
        + i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    Ok(local - offset_minutes * 60)
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// Howard Hinnant's `days_from_civil` / `civil_from_days` (proleptic
// Gregorian, day 0 = 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests;
