//! Zone files that a person maintains and musterd writes back: the version stamp on the
//! first line, and write-backs that change only the lines of records that changed.
//!
//! The stamp names the version the file holds (SOA serial and [`ZoneData::digest`]) and
//! carries a CRC-32C of the rest of the file, so musterd can tell its own output from an
//! edit, and an edit from a file replaced wholesale (no stamp). See
//! [`crate::update::ZoneData::merge_edit`] for what happens to an edit.
//!
//! A write-back keeps the operator's text: comments, `$ORIGIN`, `$TTL`, `$INCLUDE`, order
//! and layout. Records that are no longer served lose their lines (an owner name that
//! later lines inherit moves down to the next of them); the SOA's lines are replaced by
//! one line with the new serial; records that are new go at the end of the file, under a
//! marker comment, with absolute names and explicit TTLs so that no directive above
//! changes their meaning. The result is parsed again and must hold exactly the served
//! records; when it does not (a removal inside an `$INCLUDE`d file, or TTL inheritance
//! the edit would change), the file is written in musterd's own layout instead and the
//! reason is returned for the log.

use std::path::Path;

use crate::proto::name::Name;
use crate::proto::rr::{Record, Rtype};
use crate::update::ZoneData;
use crate::zone::zonefile::{format_record, parse_str};

/// The first line of a stamped file, up to the version.
const STAMP: &str = "; musterd zone version: serial ";
/// The stamp of earlier musterd versions: a checksum, no version.
const OLD_STAMP: &str =
    "; written by musterd; edits are merged with dynamic updates as a difference; crc32c ";
/// The comment above records that dynamic updates added.
const ADDED_MARKER: &str = "; records added by dynamic update (musterd); move or edit them freely";

/// The version a zone file holds, as its stamp names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub serial: u32,
    pub digest: u64,
}

impl Version {
    /// The version of `data`.
    pub fn of(data: &ZoneData) -> Version {
        Version {
            serial: data.serial(),
            digest: data.digest(),
        }
    }
}

/// What a zone file is, relative to what musterd wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Exactly as musterd wrote it (its checksum matches).
    Unedited,
    /// Edited by hand from the version its stamp names.
    Edited(Version),
    /// No stamp (a new file, or one replaced wholesale, e.g. by config management).
    Unstamped,
}

/// Reads the stamp of zone file text.
pub fn file_state(text: &str) -> FileState {
    let (first, body) = text.split_once('\n').unwrap_or((text, ""));
    let crc_ok = |hex: &str| {
        u32::from_str_radix(hex, 16).is_ok_and(|c| c == crc32c::crc32c(body.as_bytes()))
    };
    if let Some(rest) = first.strip_prefix(OLD_STAMP) {
        return if crc_ok(rest.trim()) {
            FileState::Unedited
        } else {
            FileState::Unstamped
        };
    }
    let Some(rest) = first.strip_prefix(STAMP) else {
        return FileState::Unstamped;
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let parsed = match words.as_slice() {
        [serial, "digest", digest, "crc32c", crc, ..] => serial
            .parse()
            .ok()
            .zip(u64::from_str_radix(digest, 16).ok())
            .map(|(serial, digest)| (Version { serial, digest }, *crc)),
        _ => None,
    };
    match parsed {
        Some((_, crc)) if crc_ok(crc) => FileState::Unedited,
        Some((v, _)) => FileState::Edited(v),
        None => FileState::Unstamped,
    }
}

/// `body` with the stamp line for `version` in front.
fn stamped(version: Version, body: &str) -> String {
    format!(
        "{STAMP}{} digest {:016x} crc32c {:08x} (edit freely: saved edits are merged with dynamic updates)\n{body}",
        version.serial,
        version.digest,
        crc32c::crc32c(body.as_bytes())
    )
}

/// The text without its stamp line, if it has one.
fn body_of(text: &str) -> &str {
    if text.starts_with(STAMP) || text.starts_with(OLD_STAMP) {
        text.split_once('\n').map_or("", |(_, b)| b)
    } else {
        text
    }
}

/// The file musterd writes for `target`, stamped.
#[derive(Debug)]
pub struct Rendered {
    pub text: String,
    /// Why the operator's layout could not be kept (the file is then in musterd's own).
    pub layout_lost: Option<String>,
}

/// `text` (a file that holds exactly `target`'s records) with `target`'s stamp as its first
/// line and nothing else changed.
pub fn stamp(text: &str, target: &ZoneData) -> String {
    stamped(Version::of(target), body_of(text))
}

/// musterd's own layout of `target`, stamped: for its base copy, and as the fallback.
pub fn canonical(target: &ZoneData) -> String {
    stamped(Version::of(target), &target.to_zone_file())
}

/// The zone file for `target`, written over `current` (the file's text now, read from
/// `path`) with the operator's layout kept where possible (see the module docs).
/// `Err` when `current` does not parse: a broken file is never written over.
pub fn render(current: &str, path: &Path, target: &ZoneData) -> Result<Rendered, String> {
    let origin = target.origin().clone();
    let body = body_of(current);
    let records = parse_str(body, path, &origin).map_err(|e| e.to_string())?;
    let kept = patch(body, path, &records, target).and_then(|text| {
        let back = parse_str(&text, path, &origin).map_err(|e| e.to_string())?;
        let back = ZoneData::from_records(&origin, back).map_err(|e| e.to_string())?;
        if back.digest() == target.digest() {
            Ok(text)
        } else {
            Err("the patched file would not hold exactly the served records".into())
        }
    });
    Ok(match kept {
        Ok(text) => Rendered {
            text: stamped(Version::of(target), &text),
            layout_lost: None,
        },
        Err(why) => Rendered {
            text: canonical(target),
            layout_lost: Some(why),
        },
    })
}

/// One entry of the file: the lines (0-based, inclusive) of a record or directive.
#[derive(Debug, Clone, Copy)]
struct Entry {
    first: usize,
    last: usize,
    blank_owner: bool,
    directive: bool,
}

/// The entries of master-file text: lines joined by parentheses (RFC 1035 §5.1), quoted
/// strings and comments skipped.
fn entries(lines: &[&str]) -> Vec<Entry> {
    let mut out = Vec::new();
    let (mut depth, mut quoted) = (0u32, false);
    let mut open: Option<Entry> = None;
    for (i, line) in lines.iter().enumerate() {
        if open.is_none() {
            let content = line.trim_start();
            if content.is_empty() || content.starts_with(';') {
                continue;
            }
            open = Some(Entry {
                first: i,
                last: i,
                blank_owner: line.starts_with([' ', '\t']),
                directive: content.starts_with('$'),
            });
        }
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => quoted = !quoted,
                ';' if !quoted => break,
                '(' if !quoted => depth += 1,
                ')' if !quoted => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if let Some(e) = open.as_mut() {
            e.last = i;
            if depth == 0 && !quoted {
                out.push(*e);
                open = None;
            }
        }
    }
    out.extend(open);
    out
}

/// What becomes of an entry's lines.
#[derive(Clone, PartialEq)]
enum Fate {
    Keep,
    Delete,
    Replace(String),
}

/// The operator's text with records that `target` does not hold taken out, the SOA
/// replaced and the new records appended. `Err` when that cannot be done in place.
fn patch(body: &str, path: &Path, records: &[Record], target: &ZoneData) -> Result<String, String> {
    let lines: Vec<&str> = body.lines().collect();
    let entries = entries(&lines);
    let by_line: std::collections::HashMap<usize, usize> = entries
        .iter()
        .enumerate()
        .map(|(k, e)| (e.first, k))
        .collect();
    let mut fate = vec![Fate::Keep; entries.len()];
    let origin = target.origin();
    let soa = target.soa_record().ok_or("the zone has no SOA")?;
    let file_data =
        ZoneData::from_records(origin, records.iter().cloned()).map_err(|e| e.to_string())?;
    for r in records {
        let apex_soa = r.rtype == Rtype::SOA && r.owner.eq_ignore_case(origin);
        if target.holds_record(r) {
            continue;
        }
        let src = r.source.as_ref().ok_or("a record without a source line")?;
        if src.file.as_path() != path {
            return Err(format!(
                "{} {} changed in the included file {}",
                r.owner,
                r.rtype,
                src.file.display()
            ));
        }
        let k = *by_line
            .get(&(src.line as usize - 1))
            .ok_or_else(|| format!("no entry at line {}", src.line))?;
        fate[k] = if apex_soa {
            Fate::Replace(format_record(&soa, None))
        } else {
            Fate::Delete
        };
    }
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_string()).collect();
    let mut gone = vec![false; lines.len()];
    for (k, e) in entries.iter().enumerate() {
        match &fate[k] {
            Fate::Keep => {}
            Fate::Replace(text) => {
                // The new line names its owner itself.
                out[e.first] = text.clone();
                (e.first + 1..=e.last).for_each(|i| gone[i] = true);
            }
            Fate::Delete => {
                (e.first..=e.last).for_each(|i| gone[i] = true);
                hand_owner_down(&lines, &entries, &fate, k, &mut out);
            }
        }
    }
    let mut text = String::with_capacity(body.len() + 256);
    for (i, l) in out.iter().enumerate() {
        if !gone[i] {
            text.push_str(l);
            text.push('\n');
        }
    }
    let added = target.records_missing_from(&file_data, usize::MAX);
    if !added.is_empty() {
        if !lines.iter().any(|l| l.trim() == ADDED_MARKER) {
            text.push_str(&format!("\n{ADDED_MARKER}\n"));
        }
        for r in added {
            text.push_str(&format_record(&r, None));
            text.push('\n');
        }
    }
    Ok(text)
}

/// Entry `k` is deleted: when it named its owner and the entries
/// after it inherit that owner (blank owner field), the first of them that stays gets
/// the owner written out.
fn hand_owner_down(lines: &[&str], entries: &[Entry], fate: &[Fate], k: usize, out: &mut [String]) {
    let e = entries[k];
    if e.blank_owner || e.directive {
        return;
    }
    let owner = lines[e.first].split([' ', '\t']).next().unwrap_or("");
    for (j, next) in entries.iter().enumerate().skip(k + 1) {
        if !next.blank_owner || next.directive {
            return;
        }
        if fate[j] == Fate::Keep {
            out[next.first] = format!("{owner}{}", out[next.first]);
            return;
        }
    }
}

/// Reads `path`, or `None` when it does not exist.
pub fn read(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `records` in master-file form, relative to `origin`, for log messages.
pub fn describe(records: &[Record], origin: &Name) -> String {
    records
        .iter()
        .map(|r| format_record(r, Some(origin)))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const FILE: &str = "; the cluster zone, maintained by hand
$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster ( 10 ; serial
      3600 600 86400 60 )
    IN NS ns1 ; our server
ns1 IN A 127.0.0.1
; members
m0  IN A 10.1.0.1
    IN AAAA fd00::1
m1  IN A 10.1.0.2
";

    fn origin() -> Name {
        Name::parse("d.test.", None).unwrap()
    }

    fn data(text: &str) -> ZoneData {
        let o = origin();
        ZoneData::from_records(&o, parse_str(text, Path::new("d.zone"), &o).unwrap()).unwrap()
    }

    #[test]
    fn unchanged_records_keep_the_file_byte_for_byte() {
        let target = data(FILE);
        let r = render(FILE, Path::new("d.zone"), &target).unwrap();
        assert_eq!(r.layout_lost, None);
        assert_eq!(body_of(&r.text), FILE);
        assert_eq!(file_state(&r.text), FileState::Unedited);
    }

    #[test]
    fn changes_touch_only_their_lines() {
        // m0's A record removed (its AAAA inherits the owner), a record added, the serial
        // raised.
        let want = FILE
            .replace(
                "m0  IN A 10.1.0.1\n    IN AAAA fd00::1\n",
                "m0 IN AAAA fd00::1\n",
            )
            .replace("( 10 ;", "( 11 ;")
            + "m2 30 IN A 10.1.0.3\n";
        let target = data(&want);
        let r = render(FILE, Path::new("d.zone"), &target).unwrap();
        assert_eq!(r.layout_lost, None, "{}", r.text);
        let body = body_of(&r.text);
        assert!(
            body.starts_with("; the cluster zone, maintained by hand\n$ORIGIN d.test.\n$TTL 30\n"),
            "{body}"
        );
        assert!(body.contains("    IN NS ns1 ; our server\n"), "{body}");
        assert!(
            body.contains("; members\nm0    IN AAAA fd00::1\n"),
            "{body}"
        );
        assert!(
            body.contains(
                "d.test. 300 IN SOA ns1.d.test. hostmaster.d.test. 11 3600 600 86400 60\n"
            ),
            "{body}"
        );
        assert!(
            body.ends_with(&format!("{ADDED_MARKER}\nm2.d.test. 30 IN A 10.1.0.3\n")),
            "{body}"
        );
        assert_eq!(data(body).digest(), target.digest());
        // A second write-back adds under the same marker.
        let more = data(&(want.clone() + "m3 30 IN A 10.1.0.4\n"));
        let r2 = render(&r.text, Path::new("d.zone"), &more).unwrap();
        assert_eq!(body_of(&r2.text).matches(ADDED_MARKER).count(), 1);
        assert_eq!(data(body_of(&r2.text)).digest(), more.digest());
    }

    #[test]
    fn the_stamp_names_the_version_and_detects_edits() {
        let target = data(FILE);
        let text = canonical(&target);
        assert_eq!(file_state(&text), FileState::Unedited);
        let edited = format!("{text}x IN A 10.9.9.9\n");
        assert_eq!(file_state(&edited), FileState::Edited(Version::of(&target)));
        assert_eq!(file_state(FILE), FileState::Unstamped);
        // The stamp of earlier versions: its checksum still tells musterd's own output.
        let old = format!("{OLD_STAMP}{:08x}\n{FILE}", crc32c::crc32c(FILE.as_bytes()));
        assert_eq!(file_state(&old), FileState::Unedited);
    }

    #[test]
    fn a_broken_file_is_not_written_over() {
        let target = data(FILE);
        let broken = format!("{FILE}broken IN A 300.1.1.1\n");
        assert!(render(&broken, Path::new("d.zone"), &target).is_err());
    }

    #[test]
    fn a_removal_in_an_included_file_falls_back_to_musterds_layout() {
        let dir = std::env::temp_dir().join(format!("muster-wb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("members.inc"), "m5 IN A 10.1.0.5\n").unwrap();
        let main = format!("{FILE}$INCLUDE members.inc\n");
        let path = dir.join("d.zone");
        let target = data(FILE);
        let r = render(&main, &path, &target).unwrap();
        assert!(r.layout_lost.unwrap().contains("members.inc"));
        assert_eq!(data(body_of(&r.text)).digest(), target.digest());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
